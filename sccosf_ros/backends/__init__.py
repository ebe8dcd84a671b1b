"""Inference backends behind :class:`sccosf_ros.engine.FusionEngine`: the forward pass only.

The engine owns everything that must behave identically whatever runs the network: input checks, thermal
registration onto the RGB grid, batching rules, the result type, timings and the error messages. A backend
owns only "prepared NumPy frames in, compact NumPy results out":

* ``torch`` (:mod:`.torch_backend`): the PyTorch model on CPU or CUDA, fp32/fp16/bf16 (the default);
* ``onnxruntime`` (:mod:`.ort_backend`): the same network exported to ONNX (:mod:`sccosf_ros.onnx_export`)
  and run by ONNX Runtime with the TensorRT / CUDA / CPU execution providers, fp32;
* ``auto`` (:func:`resolve_backend`): ONNX Runtime for fp32 on a CPU where it and the exporter are
  installed, PyTorch everywhere else.

The on-device conversions either side of the network (uint8 → float, clamp, ×255 and round to uint8,
argmax to a uint8 mask) are one pair of torch functions, :func:`.torch_backend.frames_to_tensors` and
:func:`.torch_backend.outputs_to_frames`: the torch backend calls them, and the ONNX export traces them
into the graph, so both backends apply literally the same pre- and post-processing.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from sccosf_ros.checkpoint import CheckpointMeta

BACKENDS = ("auto", "torch", "onnxruntime")

ONNX_PACKAGES = ("onnxruntime", "onnx", "onnxscript")
"""What ``auto`` needs for ONNX Runtime with a ``.safetensors`` checkpoint: the runtime and the exporter."""


def resolve_backend(backend: str, on_cpu: bool, precision: str = "fp32", checkpoint: str = "") -> str:
    """``auto`` → ``onnxruntime`` or ``torch``; an explicit name is returned as it is.

    Why ONNX Runtime on a CPU: on the project's 2-core machine it ran the network 2.3× faster than PyTorch
    with one thread, and inside the node, beside 30 Hz camera traffic, it kept every 9 Hz pair where PyTorch
    kept 7 (docs/onnx.md, docs/node.md). PyTorch stays the choice on a GPU (its CUDA path and fp16/bf16 are
    the tested ones), for fp16/bf16, and wherever onnxruntime, onnx or onnxscript is missing; an ``.onnx``
    checkpoint always goes to ONNX Runtime.
    """
    if backend != "auto":
        return backend
    if str(checkpoint).lower().endswith(".onnx"):
        return "onnxruntime"
    if not on_cpu or precision != "fp32":
        return "torch"
    have = all(importlib.util.find_spec(name) is not None for name in ONNX_PACKAGES)
    return "onnxruntime" if have else "torch"


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run here (e.g. onnxruntime is not installed); the message says why."""


@dataclass
class BackendOutput:
    """A batch's results, NumPy on the host, plus the two clock stamps the engine's timings need."""

    fused: np.ndarray
    """(B, H, W, 3) uint8 RGB."""
    mask: np.ndarray
    """(B, H, W) uint8 class ids."""
    probs: np.ndarray | None
    """(B, K, H, W) float32 softmax probabilities when asked for, else None."""
    t_inputs_ready: float
    """``time.perf_counter()`` when the inputs were on the device, converted (end of preprocessing)."""
    t_forward_done: float
    """``time.perf_counter()`` when the network's forward had finished (start of postprocessing)."""


class Backend(Protocol):
    """What :class:`~sccosf_ros.engine.FusionEngine` calls; see the module docstring."""

    name: str
    meta: CheckpointMeta
    """Class names, palette and the network's configuration."""
    has_refine: bool
    """Whether the network has the segmentation refinement at all."""
    seg_refine: bool
    """Whether it runs (has it and it was not switched off)."""

    def run(self, rgb: np.ndarray, thermal: np.ndarray, want_probs: bool) -> BackendOutput:
        """``rgb`` (B, H, W, 3) uint8; ``thermal`` (B, H, W) uint8 or float32 in [0, 1], already checked
        and on the RGB grid."""
        ...

    def describe(self) -> dict[str, object]:
        """Backend name, device and what else a report should say about it (providers, model file)."""
        ...

    def close(self) -> None: ...


def softmax(logits: np.ndarray, axis: int = 1) -> np.ndarray:
    """Numerically stable float32 softmax (the ONNX Runtime backend's ``return_probs``)."""
    z = logits.astype(np.float32, copy=True)
    z -= z.max(axis=axis, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=axis, keepdims=True)
    return z
