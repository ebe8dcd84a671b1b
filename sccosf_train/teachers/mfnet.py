"""MFNet (Ha, Watanabe, Karasawa, Ushiku, Harada, IROS 2017), rebuilt in our code for its trained weights.

Why: a real RGB-thermal segmenter with the 9 MSRS classes is the only source of real pixel-level signal
in this environment (``../shared/teachers/mfnet/README.md``). It is a *training tool*: the runtime package
``sccosf_ros`` never imports this module and the product ships no MFNet weights.

The architecture follows the README's description word for word (module names are the checkpoint's keys,
so ``load_state_dict(strict=True)`` proves the layout): blocks of 3x3 conv (with bias) + BatchNorm +
leaky ReLU 0.2; "mini-inception" blocks of three steps, each a plain and a dilation-2 block side by side;
two encoders (RGB widths 16-48-48-96-96, thermal 16-16-16-36-36); decoder by nearest x2 upsampling, adding
the concatenated RGB+thermal skips, then one block. Input (N, 4, H, W): R, G, B, thermal in [0, 1] (value /
255, no mean/std); H and W divisible by 16. Output (N, 9, H, W) logits.

Agreement with the original implementation is checked against the six reference masks in
``../shared/teachers/mfnet/reference/`` (test_teacher_mfnet.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sccosf_ros.errors import CheckpointError
from sccosf_ros.imaging.palette import MSRS_CLASSES

NUM_CLASSES = 9
RGB_WIDTHS = (16, 48, 48, 96, 96)
THERMAL_WIDTHS = (16, 16, 16, 36, 36)
LEAKY_SLOPE = 0.2
DIVISOR = 16  # four 2x poolings

# The checkout's sibling ``shared/`` folder (read-only data of this environment); an option everywhere.
DEFAULT_WEIGHTS = (
    Path(__file__).resolve().parents[2].parent / "shared" / "teachers" / "mfnet" / "mfnet_final.pth"
)


class TeacherError(CheckpointError):
    """The teacher's weights cannot be used (missing file, wrong keys or shapes); the message says why."""


class Block(nn.Module):
    """3x3 conv (bias) -> BatchNorm -> leaky ReLU 0.2; padding = dilation keeps the size."""

    def __init__(self, cin: int, cout: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=True)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.bn(self.conv(x)), LEAKY_SLOPE)


class MiniInception(nn.Module):
    """Three steps of [plain block | dilation-2 block] concatenated (left first), each ``cout`` wide."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        half = cout // 2
        for step, c in ((1, cin), (2, cout), (3, cout)):
            setattr(self, f"conv{step}_left", Block(c, half))
            setattr(self, f"conv{step}_right", Block(c, half, dilation=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for step in (1, 2, 3):
            left, right = getattr(self, f"conv{step}_left"), getattr(self, f"conv{step}_right")
            x = torch.cat((left(x), right(x)), dim=1)
        return x


class _Encoder:
    """Builds one modality's layers on the parent module under the checkpoint's names (``conv1_rgb`` ...)."""

    @staticmethod
    def build(parent: nn.Module, suffix: str, cin: int, w: Sequence[int]) -> None:
        setattr(parent, f"conv1_{suffix}", Block(cin, w[0]))
        setattr(parent, f"conv2_1_{suffix}", Block(w[0], w[1]))
        setattr(parent, f"conv2_2_{suffix}", Block(w[1], w[1]))
        setattr(parent, f"conv3_1_{suffix}", Block(w[1], w[2]))
        setattr(parent, f"conv3_2_{suffix}", Block(w[2], w[2]))
        setattr(parent, f"conv4_{suffix}", MiniInception(w[2], w[3]))
        setattr(parent, f"conv5_{suffix}", MiniInception(w[3], w[4]))

    @staticmethod
    def run(parent: nn.Module, suffix: str, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Returns (skip p2 at 1/2, p3 at 1/4, p4 at 1/8, bottleneck at 1/16)."""

        def layer(name: str) -> nn.Module:
            return getattr(parent, f"{name}_{suffix}")

        x = F.max_pool2d(layer("conv1")(x), 2)
        p2 = layer("conv2_2")(layer("conv2_1")(x))
        p3 = layer("conv3_2")(layer("conv3_1")(F.max_pool2d(p2, 2)))
        p4 = layer("conv4")(F.max_pool2d(p3, 2))
        return p2, p3, p4, layer("conv5")(F.max_pool2d(p4, 2))


class MFNet(nn.Module):
    """The network; ``forward`` takes (N, 4, H, W) R, G, B, T in [0, 1] and returns (N, 9, H, W) logits."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        _Encoder.build(self, "rgb", 3, RGB_WIDTHS)
        _Encoder.build(self, "inf", 1, THERMAL_WIDTHS)
        fused = RGB_WIDTHS[4] + THERMAL_WIDTHS[4]  # 132
        self.decode4 = Block(fused, 64)  # skip p4: 96 + 36 = 132 channels
        self.decode3 = Block(64, 64)  # skip p3: 48 + 16 = 64
        self.decode2 = Block(64, 32)  # skip p2: 48 + 16 = 64
        self.decode1 = Block(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 4:
            raise ValueError(f"MFNet takes (N, 4, H, W) R, G, B, T; got {tuple(x.shape)}")
        if x.shape[2] % DIVISOR or x.shape[3] % DIVISOR:
            raise ValueError(f"MFNet needs H and W divisible by {DIVISOR}; got {tuple(x.shape[2:])}")
        r2, r3, r4, r = _Encoder.run(self, "rgb", x[:, :3])
        t2, t3, t4, t = _Encoder.run(self, "inf", x[:, 3:])
        y = torch.cat((r, t), dim=1)
        for decode, skip in ((self.decode4, (r4, t4)), (self.decode3, (r3, t3)), (self.decode2, (r2, t2))):
            y = decode(F.interpolate(y, scale_factor=2, mode="nearest") + torch.cat(skip, dim=1))
        return self.decode1(F.interpolate(y, scale_factor=2, mode="nearest"))


def load_mfnet(weights: str | Path | None = None, device: str | torch.device = "cpu") -> MFNet:
    """MFNet in eval mode with the published weights, loaded strictly and without pickle code execution.

    ``weights`` defaults to :data:`DEFAULT_WEIGHTS` (``../shared/teachers/mfnet/mfnet_final.pth`` next to
    the checkout). The checkpoint has no ``num_batches_tracked`` entries (it predates them): those buffers
    are not part of the layout and are left at their initial value, every other key must match exactly.
    """
    path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    if not path.is_file():
        raise TeacherError(f"MFNet weights not found: {path} (pass the path to mfnet_final.pth)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which
        raise TeacherError(f"{path}: not a loadable PyTorch state dict ({exc})") from exc
    if not isinstance(state, dict):
        raise TeacherError(f"{path}: expected a dict of tensors, got {type(state).__name__}")
    model = MFNet()
    expected = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    missing, unexpected = sorted(expected - state.keys()), sorted(state.keys() - expected)
    if missing or unexpected:
        raise TeacherError(
            f"{path}: {len(missing)} missing keys {missing[:3]}, {len(unexpected)} unexpected "
            f"{unexpected[:3]}"
        )
    own = model.state_dict()
    bad = [k for k in expected if tuple(state[k].shape) != tuple(own[k].shape)]
    if bad:
        raise TeacherError(f"{path}: shape mismatch for {bad[:3]}")
    # strict on every key the file can hold; num_batches_tracked are filled from the fresh model
    full = {**{k: v for k, v in own.items() if k.endswith("num_batches_tracked")}, **state}
    model.load_state_dict(full, strict=True)
    return model.eval().to(device)


def to_input(rgb: np.ndarray, thermal: np.ndarray) -> torch.Tensor:
    """uint8 RGB (H, W, 3) or (N, H, W, 3) and thermal (H, W) or (N, H, W) to (N, 4, H, W) float in [0, 1]."""
    rgb, thermal = np.asarray(rgb), np.asarray(thermal)
    if rgb.ndim == 3:
        rgb, thermal = rgb[None], thermal[None]
    if thermal.ndim == 4 and thermal.shape[-1] == 1:
        thermal = thermal[..., 0]
    if rgb.ndim != 4 or rgb.shape[-1] != 3 or thermal.shape != rgb.shape[:3]:
        raise ValueError(
            f"need RGB (N,H,W,3) and thermal (N,H,W) of one size; got {rgb.shape}, {thermal.shape}"
        )
    if rgb.dtype != np.uint8 or thermal.dtype != np.uint8:
        raise ValueError(f"need uint8 images, got {rgb.dtype} and {thermal.dtype}")
    x = np.concatenate([rgb, thermal[..., None]], axis=-1).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(x)).float().div_(255.0)


def _padded_logits(model: MFNet, x: torch.Tensor) -> torch.Tensor:
    """Logits at x's size: edge-replicated up to a multiple of 16, cropped back."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % DIVISOR, (-w) % DIVISOR
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return model(x)[..., :h, :w]


@torch.no_grad()
def scaled_logits(model: MFNet, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Logits (N, 9, H, W) of ``x`` (N, 4, H, W) in [0, 1] resized by ``scale`` (bilinear; to a multiple of 16
    by edge padding inside), the logits resized back to x's size: one test-time view."""
    device = next(model.parameters()).device
    x = x.to(device)
    h, w = x.shape[-2:]
    xs = x if scale == 1.0 else F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
    y = _padded_logits(model, xs)
    if y.shape[-2:] != (h, w):
        y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
    return y


class MFNetTeacher:
    """MFNet as a :class:`sccosf_train.teachers.Teacher` (registered as ``mfnet``)."""

    name = "mfnet"
    title = "MFNet"
    citation = "IROS 2017"
    class_names = MSRS_CLASSES

    def __init__(self, model: MFNet, weights: str = "") -> None:
        self.model = model
        self.weights = weights

    @classmethod
    def load(cls, weights: str | Path | None = None, device: str = "cpu") -> MFNetTeacher:
        return cls(load_mfnet(weights, device), str(weights or DEFAULT_WEIGHTS))

    def logits(self, rgb: np.ndarray, thermal: np.ndarray, scale: float = 1.0) -> torch.Tensor:
        return scaled_logits(self.model, to_input(rgb, thermal), scale).cpu()


__all__ = [
    "DEFAULT_WEIGHTS",
    "MFNet",
    "MFNetTeacher",
    "TeacherError",
    "load_mfnet",
    "scaled_logits",
    "to_input",
]
