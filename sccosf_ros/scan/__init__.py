"""Selective state-space scan (Mamba-2 / SSD parametrisation) with interchangeable backends.

``ssd_scan(x, dt, A, B, C, D)`` is the one entry point; ``reference.py`` defines the semantics.

Backends (all checked against ``sequential`` in ``test/test_scan.py``):

* ``sequential`` — the reference loop over L. Slow; for tests.
* ``chunked``    — pure-PyTorch chunked SSD (``chunked.py``). Runs everywhere; the CPU default.
* ``compile``    — ``chunked`` under ``torch.compile``, compiled lazily on first use. CUDA only unless
  ``SCCOSF_SCAN_COMPILE_CPU=1`` (on the 2-core CPU machines compiling costs minutes for a small gain).
* ``triton``     — mamba-ssm's ``mamba_chunk_scan_combined`` (``mamba_triton.py``). CUDA only.

Selection: an explicit ``backend=`` argument wins; otherwise a :func:`forced_backend` context (the ONNX
export forces ``chunked``, the form that exports, whatever the environment says); otherwise the environment
variable ``SCCOSF_SCAN_BACKEND`` (if set and not ``auto``); otherwise ``auto``: ``triton`` for CUDA tensors in
float32/float16/bfloat16 when it loads, else ``chunked``. Forcing a backend that cannot run on the
tensors' device raises :class:`ScanBackendUnavailableError` with the reason, rather than silently falling
back, so a deployment that asks for the fast path knows when it does not get it.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from sccosf_ros.errors import BackendUnavailableError
from sccosf_ros.scan import mamba_triton
from sccosf_ros.scan.chunked import DEFAULT_CHUNK_SIZE, ssd_scan_chunked
from sccosf_ros.scan.reference import ssd_scan_sequential

__all__ = [
    "BACKENDS",
    "DEFAULT_CHUNK_SIZE",
    "ENV_VAR",
    "ScanBackendUnavailableError",
    "available_backends",
    "backend_unavailable_reason",
    "forced_backend",
    "resolve_backend",
    "ssd_scan",
    "ssd_scan_chunked",
    "ssd_scan_sequential",
]

BACKENDS = ("sequential", "chunked", "compile", "triton")
ENV_VAR = "SCCOSF_SCAN_BACKEND"
_COMPILE_CPU_ENV = "SCCOSF_SCAN_COMPILE_CPU"
_TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class ScanBackendUnavailableError(BackendUnavailableError):
    """A scan backend was requested that cannot run here; the message says why."""


_forced: contextvars.ContextVar[str | None] = contextvars.ContextVar("sccosf_scan_forced", default=None)


@contextlib.contextmanager
def forced_backend(name: str) -> Iterator[None]:
    """Within this block, every ``ssd_scan(backend="auto")`` call uses ``name`` (the env var is ignored).

    For tracing: the ONNX export must see the pure-PyTorch ``chunked`` scan even where the environment asks
    for ``triton``, ``compile`` or ``sequential`` (a Python loop that would unroll into L graph nodes).
    A context variable, so other threads keep their own selection.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown scan backend {name!r}; choose one of {', '.join(BACKENDS)}")
    token = _forced.set(name)
    try:
        yield
    finally:
        _forced.reset(token)


_compiled: dict[str, Callable[..., Tensor]] = {}
_compile_lock = threading.Lock()


def _compiled_chunked() -> Callable[..., Tensor]:
    """``torch.compile(ssd_scan_chunked)``, created once per process on first use (compiling is lazy)."""
    with _compile_lock:
        if "fn" not in _compiled:
            _compiled["fn"] = torch.compile(ssd_scan_chunked, dynamic=False)
        return _compiled["fn"]


def _device_type(device: torch.device | str | None) -> str:
    if device is None:
        return "cpu"
    return torch.device(device).type


def backend_unavailable_reason(name: str, device: torch.device | str | None = "cpu") -> str | None:
    """Why backend ``name`` cannot run on ``device`` here, or None when it can."""
    if name not in BACKENDS:
        return f"unknown scan backend {name!r}; choose one of {', '.join(BACKENDS)} or 'auto'"
    dev = _device_type(device)
    if name in ("sequential", "chunked"):
        return None
    if name == "compile":
        if dev == "cuda":
            return None if torch.cuda.is_available() else "CUDA is not available"
        if os.environ.get(_COMPILE_CPU_ENV) == "1":
            return None
        return (
            f"'compile' is CUDA-only by default (device {dev!r}); set {_COMPILE_CPU_ENV}=1 to allow it "
            "on CPU (compiling takes minutes there)"
        )
    # triton
    if dev != "cuda":
        return f"'triton' needs CUDA tensors (device {dev!r})"
    return mamba_triton.unavailable_reason()


def available_backends(device: torch.device | str | None = "cpu") -> list[str]:
    """Backends that can run on ``device`` on this machine, in :data:`BACKENDS` order."""
    return [b for b in BACKENDS if backend_unavailable_reason(b, device) is None]


def resolve_backend(backend: str = "auto", x: Tensor | None = None) -> str:
    """The backend ``ssd_scan`` would use for tensors like ``x`` (argument > forced > env var > auto)."""
    name = backend
    source = "argument backend="
    if name == "auto" and _forced.get() is not None:
        name, source = str(_forced.get()), "forced_backend("
    if name == "auto":
        name = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
        source = f"environment {ENV_VAR}="
    device = x.device if x is not None else torch.device("cpu")
    if name == "auto":
        dtype_ok = x is None or x.dtype in _TRITON_DTYPES
        if device.type == "cuda" and dtype_ok and backend_unavailable_reason("triton", device) is None:
            return "triton"
        return "chunked"
    reason = backend_unavailable_reason(name, device)
    if reason is not None:
        raise ScanBackendUnavailableError(
            f"scan backend {name!r} (from {source}{name!r}) unavailable: {reason}"
        )
    return name


def ssd_scan(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    *,
    chunk_size: int | None = None,
    backend: str = "auto",
) -> Tensor:
    """Scan with shapes x (b, l, h, p), dt (b, l, h) > 0, A (h,) < 0, B/C (b, l, g, n), D (h,).

    h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t,  y_t = C_t·h_t + D x_t; returns (b, l, h, p) in x's dtype.
    ``chunk_size`` is ignored by ``sequential``; None picks each backend's default.
    """
    name = resolve_backend(backend, x)
    if name == "sequential":
        return ssd_scan_sequential(x, dt, A, B, C, D)
    if name == "chunked":
        return ssd_scan_chunked(x, dt, A, B, C, D, chunk_size=chunk_size)
    if name == "compile":
        return _compiled_chunked()(x, dt, A, B, C, D, chunk_size=chunk_size)
    return mamba_triton.ssd_scan_triton(x, dt, A, B, C, D, chunk_size=chunk_size)
