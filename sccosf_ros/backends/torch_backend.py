"""The PyTorch backend, and the on-device pre/post-processing that the ONNX export traces too.

Per-call overhead matters at camera rate: frames travel to the device as uint8 (a quarter of the bytes of
float32) and are converted there; the uint8 conversion of the fused image and the argmax also run on the
device, so only compact results come back.
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sccosf_ros.backends import BackendOptions, BackendOutput, Device, check_precision
from sccosf_ros.checkpoint import CheckpointMeta, build_from_checkpoint
from sccosf_ros.errors import ConfigError
from sccosf_ros.model import fold_batchnorm_

_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def _writable(array: np.ndarray) -> np.ndarray:
    """Contiguous and writable, copying only if needed: torch.from_numpy warns on read-only buffers
    (frames decoded from bags or DDS messages are), although the engine never writes to them."""
    array = np.ascontiguousarray(array)
    return array if array.flags.writeable else array.copy()


def frames_to_tensors(rgb: Tensor, thermal: Tensor, channels_last: bool = False) -> tuple[Tensor, Tensor]:
    """(B, H, W, 3) uint8 RGB and (B, H, W) uint8 or float thermal → the network's float inputs in [0, 1].

    uint8 thermal is divided by 255, float thermal is clamped to [0, 1]. Shared by the torch backend and
    the ONNX graph (:class:`EngineGraph`), so both convert identically.
    """
    # The NHWC -> NCHW permuted view already has channels_last strides (kept by .float()); for the
    # contiguous layout, reorder while still uint8 (a quarter of the bytes of the float copy).
    x = rgb.permute(0, 3, 1, 2)
    if not channels_last:
        x = x.contiguous()
    x = x.float().div_(255.0)
    th = thermal.unsqueeze(1).float()
    th = th.div_(255.0) if thermal.dtype == torch.uint8 else th.clamp_(0.0, 1.0)
    if channels_last:
        return x.contiguous(memory_format=torch.channels_last), th
    return x, th


def outputs_to_frames(out: dict[str, Tensor], height: int, width: int) -> tuple[Tensor, Tensor, Tensor]:
    """The network's outputs → (fused (B, H, W, 3) uint8, mask (B, H, W) uint8, logits (B, K, H, W) float).

    Shared by the torch backend and the ONNX graph.
    """
    logits = out["seg_logits"].float()
    if logits.shape[-2:] != (height, width):  # the contract says input resolution; be robust anyway
        logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
    fused = out["fused"].float().clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8).permute(0, 2, 3, 1)
    # max().indices: same first-maximum rule as argmax, several times faster on CPU (measured).
    mask = logits.max(dim=1).indices.to(torch.uint8)
    return fused, mask, logits


class EngineGraph(nn.Module):
    """What the ONNX file computes: uint8 frames in, the engine's compact outputs out.

    Inputs ``rgb`` (B, 3, H, W) uint8, planar, and ``thermal`` (B, H, W) float32 in [0, 1] (the ONNX
    Runtime backend divides uint8 thermal by 255 on the host, bit-identical to the torch backend's
    on-device division). Outputs ``fused`` (B, 3, H, W) uint8, planar, ``mask`` (B, H, W) uint8 and
    ``seg_logits`` (B, K, H, W) float32. ``refine`` is fixed when the graph is built (it is a Python branch
    in the model's forward).

    Why planar colour at the graph's edges (the host transposes, 0.3 ms in and 0.05 ms out at 480×640):
    with interleaved (B, H, W, 3) input and output, ONNX Runtime's layout optimiser pushes the two
    NHWC↔NCHW transposes into the colour conversions, whose elementwise ops then run on (1, H, W, 1)
    tensors, and its CPU broadcast kernels are ~60× slower with a trailing dimension of 1 (a Mul on
    1×480×640×1 took 2.9 ms, on 1×1×480×640 0.045 ms). The permutes below cancel in the exported graph.
    """

    INPUT_NAMES = ("rgb", "thermal")
    OUTPUT_NAMES = ("fused", "mask", "seg_logits")

    def __init__(self, model: nn.Module, refine: bool) -> None:
        super().__init__()
        self.model = model
        self.refine = bool(refine)

    def forward(self, rgb: Tensor, thermal: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x, th = frames_to_tensors(rgb.permute(0, 2, 3, 1), thermal)
        out = self.model(x, th, refine=self.refine)
        fused, mask, logits = outputs_to_frames(out, rgb.shape[2], rgb.shape[3])
        return fused.permute(0, 3, 1, 2), mask, logits


def has_refine(model: nn.Module) -> bool:
    """Whether an SCCoSF has the segmentation refinement (checkpoints written before it do not)."""
    return bool(getattr(getattr(model, "icrm", None), "has_refine", False))


def load_inference_model(checkpoint: str | Path) -> tuple[nn.Module, CheckpointMeta]:
    """The checkpoint's network in eval mode on CPU with BatchNorm folded (identical outputs, ~100
    kernels fewer per forward): what both backends run."""
    model, meta = build_from_checkpoint(checkpoint)
    return fold_batchnorm_(model.eval()), meta


def resolve_device(device: Device) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda[:N]`` only where that GPU is visible."""
    if device.type == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(str(device))
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                "device 'cuda' requested but CUDA is not available (use device='auto' or 'cpu')"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {dev} requested but only {torch.cuda.device_count()} GPU(s) are visible"
            )
    return dev


def check_torch_precision(precision: str, device: torch.device) -> str:
    """fp32 anywhere; fp16 on CUDA only (CPU half precision is slow and inexact); bf16 where supported;
    int8 never (an INT8 model is an ONNX file for the onnxruntime backend)."""
    p = check_precision(precision)
    if p == "int8":
        raise ConfigError(
            "precision 'int8' is not available with backend 'torch': it runs an INT8 ONNX file with backend "
            "'onnxruntime' (sccosf-export --onnx OUT.onnx --int8 --calibration DIR, then checkpoint OUT.onnx)"
        )
    if p == "fp16" and device.type != "cuda":
        raise ConfigError(
            "precision 'fp16' needs a CUDA device (CPU half precision is slow and inexact): "
            "use 'bf16' or 'fp32' on CPU"
        )
    if p == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("precision 'bf16' is not supported by this GPU: use 'fp16' or 'fp32'")
    return p


class TorchBackend:
    """The network in PyTorch on ``device`` ('cpu' or 'cuda[:N]', already checked) at ``precision``."""

    name = "torch"

    @classmethod
    def check(cls, options: BackendOptions) -> BackendOptions:
        """The device resolved (``auto``: CUDA when available) and the precision checked for it."""
        device = resolve_device(options.device)
        precision = check_torch_precision(options.precision, device)
        return dataclasses.replace(options, device=Device(device.type, device.index), precision=precision)

    @classmethod
    def open(cls, checkpoint: Path, options: BackendOptions) -> TorchBackend:
        if options.num_threads is not None:
            torch.set_num_threads(options.num_threads)  # process-wide, as the option documents
        device = torch.device(str(options.device))
        cl = device.type == "cuda" if options.channels_last is None else bool(options.channels_last)
        return cls(checkpoint, device, options.precision, cl, options.seg_refine)

    def __init__(
        self,
        checkpoint: str | Path,
        device: torch.device,
        precision: str,
        channels_last: bool,
        seg_refine: bool,
    ) -> None:
        model, self.meta = load_inference_model(checkpoint)
        self.has_refine = has_refine(model)
        # The refinement is switched per call (a forward flag), never by removing the module.
        self.seg_refine = bool(seg_refine) and self.has_refine
        self.device, self.precision, self.channels_last = device, precision, channels_last
        model = model.to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model: nn.Module | None = model.eval()
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # frame sizes are fixed per stream

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _autocast(self) -> torch.autocast | nullcontext[None]:
        if self.precision == "fp32":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=_AUTOCAST_DTYPES[self.precision])

    def run(self, rgb: np.ndarray, thermal: np.ndarray, want_probs: bool) -> BackendOutput:
        if self.model is None:
            raise RuntimeError("FusionEngine is closed")
        nb = self.device.type == "cuda"
        h, w = rgb.shape[1:3]
        with torch.inference_mode():
            rgb_t = torch.from_numpy(_writable(rgb)).to(self.device, non_blocking=nb)
            th_t = torch.from_numpy(_writable(thermal)).to(self.device, non_blocking=nb)
            x, th = frames_to_tensors(rgb_t, th_t, self.channels_last)
            self._sync()
            t1 = time.perf_counter()
            with self._autocast():
                out = self.model(x, th, refine=self.seg_refine)
            self._sync()
            t2 = time.perf_counter()
            fused, mask, logits = outputs_to_frames(out, h, w)
            fused_np = fused.contiguous().cpu().numpy()
            mask_np = mask.cpu().numpy()
            probs = torch.softmax(logits, dim=1).cpu().numpy() if want_probs else None
        return BackendOutput(fused_np, mask_np, probs, t1, t2)

    def describe(self) -> dict[str, object]:
        return {"backend": self.name, "device": str(self.device), "precision": self.precision}

    def close(self) -> None:
        if self.model is None:
            return
        self.model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
