"""Inference backends behind :class:`sccosf_ros.engine.FusionEngine`, chosen by name from a registry.

The engine owns everything that must behave identically whatever runs the network: input checks, thermal
registration onto the RGB grid, batching rules, the result type, timings. A backend owns "prepared NumPy
frames in, compact NumPy results out", and with it its own device and precision checks and its optional
imports (nothing here imports torch or onnxruntime):

* ``torch`` (:mod:`.torch_backend`): the PyTorch model on CPU or CUDA, fp32/fp16/bf16;
* ``onnxruntime`` (:mod:`.ort_backend`): the same network exported to ONNX (:mod:`.onnx_exporter`; the file
  format and export cache: :mod:`.onnx_format`) and run by ONNX Runtime with the TensorRT / CUDA / CPU
  execution providers, fp32, or INT8 from a file quantised by :mod:`.onnx_int8`;
* ``auto`` (:func:`resolve_backend`): ONNX Runtime for fp32 on a CPU where it and the exporter are
  installed, PyTorch everywhere else.

**Adding a backend** is one module with a class that satisfies :class:`BackendClass` and one
:func:`register` line (below, or in the code that brings the backend). The engine, the node's
``backend`` parameter, the CLIs' ``--backend`` choices and the benchmarks read the registry.

The on-device conversions either side of the network (uint8 → float, clamp, ×255 and round to uint8,
argmax to a uint8 mask) are one pair of torch functions, :func:`.torch_backend.frames_to_tensors` and
:func:`.torch_backend.outputs_to_frames`: the torch backend calls them, and the ONNX export traces them
into the graph, so both backends apply literally the same pre- and post-processing.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from sccosf_ros.errors import BackendUnavailableError, ConfigError

if TYPE_CHECKING:
    from sccosf_ros.checkpoint import CheckpointMeta

__all__ = [
    "Backend",
    "BackendClass",
    "BackendOptions",
    "BackendOutput",
    "BackendUnavailableError",
    "Device",
    "backend_class",
    "backend_names",
    "backend_options",
    "register",
    "resolve_backend",
]

AUTO = "auto"
DEFAULT = "torch"
"""The engine's default backend (the node's and the replay's default is ``auto``)."""
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
"""Every precision some backend runs; each backend's ``check`` says which of them it can (torch: fp32, fp16,
bf16; onnxruntime: fp32 and int8, the latter from an INT8 ``.onnx`` file)."""

_REGISTRY: dict[str, tuple[str | type, tuple[str, ...]]] = {}
"""name → (the class, or ``"module:Class"`` imported on first use; the keyword options it reads)."""


def register(name: str, target: str | type, options: tuple[str, ...] = ()) -> None:
    """Make backend ``name`` available: ``target`` is its class (see :class:`BackendClass`) or the string
    ``"package.module:Class"`` (imported only when the backend is chosen, so its heavy imports stay
    optional); ``options`` names the extra keyword arguments of ``FusionEngine`` it reads."""
    name = name.strip().lower()
    if not name or name == AUTO:
        raise ConfigError(f"backend name {name!r} is reserved or empty")
    _REGISTRY[name] = (target, tuple(options))


def unregister(name: str) -> None:
    """Remove a backend added with :func:`register` (tests; a plug-in that is unloaded)."""
    _REGISTRY.pop(name, None)


register("torch", "sccosf_ros.backends.torch_backend:TorchBackend")
register(
    "onnxruntime",
    "sccosf_ros.backends.ort_backend:OrtBackend",
    ("onnx_cache", "ort_providers", "ort_session", "ort_provider_options"),
)


def backend_names() -> tuple[str, ...]:
    """``auto`` and every registered backend, as the parameter and ``--backend`` choices list them."""
    return (AUTO, *_REGISTRY)


def backend_options() -> frozenset[str]:
    """The extra keyword options any registered backend reads (the engine rejects others)."""
    return frozenset(o for _, options in _REGISTRY.values() for o in options)


def backend_class(name: str) -> BackendClass:
    """The class registered as ``name`` (imported now if it was registered by its module path)."""
    if name not in _REGISTRY:
        raise ConfigError(f"backend must be one of {backend_names()}, got {name!r}")
    target, _ = _REGISTRY[name]
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        target = getattr(importlib.import_module(module), attr)
    return target  # type: ignore[return-value]


ONNX_PACKAGES = ("onnxruntime", "onnx", "onnxscript")
"""What ``auto`` needs for ONNX Runtime with a ``.safetensors`` checkpoint: the runtime and the exporter."""


def resolve_backend(backend: str, on_cpu: bool, precision: str = "fp32", checkpoint: str = "") -> str:
    """``auto`` → ``onnxruntime`` or ``torch``; an explicit name is returned as it is.

    Why ONNX Runtime on a CPU: on a 2-core machine it ran the network 2.3× faster than PyTorch with one
    thread, and inside the node, beside 30 Hz camera traffic, it kept every 9 Hz pair where PyTorch kept 7
    (docs/onnx.md, docs/node.md). PyTorch stays the choice on a GPU (its CUDA path and fp16/bf16 are the
    tested ones), for fp16/bf16, and wherever onnxruntime, onnx or onnxscript is missing; an ``.onnx``
    checkpoint and precision int8 always go to ONNX Runtime.
    """
    if backend != AUTO:
        return backend
    if str(checkpoint).lower().endswith(".onnx") or precision == "int8":
        return "onnxruntime"
    if not on_cpu or precision != "fp32":
        return "torch"
    have = all(importlib.util.find_spec(name) is not None for name in ONNX_PACKAGES)
    return "onnxruntime" if have else "torch"


def cuda_available() -> bool:
    """Whether torch sees a GPU (False where torch is not installed: an ONNX-Runtime-only install)."""
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


_DEVICE_RE = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")


@dataclass(frozen=True)
class Device:
    """A device name checked without torch: ``auto``, ``cpu`` or ``cuda[:N]`` (``type`` and ``index`` as
    ``torch.device`` has them, so code that reads ``engine.device.type`` works with every backend)."""

    type: str
    index: int | None = None

    @classmethod
    def parse(cls, device: object) -> Device:
        name = str(device).strip().lower()
        m = _DEVICE_RE.match(name)
        if m is None or (m.group(2) is not None and m.group(1) != "cuda"):
            raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
        return cls(m.group(1), None if m.group(2) is None else int(m.group(2)))

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"


def check_precision(precision: object) -> str:
    """``precision`` lowercased, or the ConfigError every backend gives for an unknown name."""
    p = str(precision).strip().lower()
    if p not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return p


@dataclass(frozen=True)
class BackendOptions:
    """What the engine passes to a backend; ``extra`` holds the backend-specific keyword options."""

    device: Device
    precision: str
    seg_refine: bool = True
    num_threads: int | None = None
    channels_last: bool | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


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
    """An open backend, as :class:`~sccosf_ros.engine.FusionEngine` calls it."""

    name: str
    meta: CheckpointMeta
    """Class names, palette and the network's configuration."""
    has_refine: bool
    """Whether the network has the segmentation refinement at all."""
    seg_refine: bool
    """Whether it runs (has it and it was not switched off)."""
    precision: str
    device: Any
    """Where the network runs (``.type`` 'cpu' or 'cuda', ``.index``; ``str()`` for reports)."""

    def run(self, rgb: np.ndarray, thermal: np.ndarray, want_probs: bool) -> BackendOutput:
        """``rgb`` (B, H, W, 3) uint8; ``thermal`` (B, H, W) uint8 or float32 in [0, 1], already checked
        and on the RGB grid."""
        ...

    def describe(self) -> dict[str, object]:
        """Backend name, device and what else a report should say about it (providers, model file)."""
        ...

    def close(self) -> None: ...


class BackendClass(Protocol):
    """What the registry holds: a class that checks its settings before anything loads, then opens."""

    name: str

    @classmethod
    def check(cls, options: BackendOptions) -> BackendOptions:
        """The options with the device and precision checked for this backend (ConfigError or
        BackendUnavailableError naming the problem); called before the checkpoint is looked for."""
        ...

    @classmethod
    def open(cls, checkpoint: Path, options: BackendOptions) -> Backend:
        """Load ``checkpoint`` (CheckpointError when it cannot be used) and return the open backend."""
        ...


def softmax(logits: np.ndarray, axis: int = 1) -> np.ndarray:
    """Numerically stable float32 softmax (for backends whose runtime returns logits only)."""
    z = logits.astype(np.float32, copy=True)
    z -= z.max(axis=axis, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=axis, keepdims=True)
    return z
