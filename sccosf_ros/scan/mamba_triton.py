"""Loader for mamba-ssm's Triton SSD kernel (``mamba_chunk_scan_combined``), the fast path on CUDA.

Why this module exists: mamba-ssm 2.3.2.post1 is source-only on PyPI. Built without nvcc
(``MAMBA_SKIP_CUDA_BUILD=TRUE MAMBA_FORCE_BUILD=TRUE pip install --no-deps --no-build-isolation
mamba-ssm``) it installs as pure Python, and then ``import mamba_ssm`` fails, because
``mamba_ssm/__init__.py`` eagerly imports ``ops.selective_scan_interface``, which imports the compiled
``selective_scan_cuda`` extension. The SSD kernels themselves (``mamba_ssm/ops/triton/ssd_*.py``) only
need torch, triton, einops and packaging plus mamba_ssm's pure-Python ``ops.triton`` and ``utils``
modules — no compiled code. The empty ``ops/__init__.py`` and ``ops/triton/__init__.py`` are fine; only
the top-level ``__init__`` is in the way.

Loading order (:func:`load`):

1. The normal import, ``from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined``. With
   a complete mamba-ssm install (CUDA extension built) this is what runs, and nothing else happens.
2. Only if step 1 failed *inside mamba_ssm's own ``__init__``* (an ImportError whose traceback passes
   through ``mamba_ssm/__init__.py``), the Triton submodules are loaded "headless": for the duration of
   one import, ``sys.modules["mamba_ssm"]`` is a bare package object whose ``__path__`` is the installed
   package directory (found with :func:`importlib.util.find_spec`, which does not execute it), so that
   the submodules' absolute imports (``from mamba_ssm.ops.triton.ssd_bmm import ...``) resolve to the
   real files while the top-level ``__init__`` is never run. Afterwards every ``mamba_ssm*`` entry this
   added to ``sys.modules`` is removed again, so the rest of the process sees mamba_ssm exactly as
   before (``import mamba_ssm`` still fails the way it did); we keep a private reference to the
   function, whose module globals keep the kernels alive. The fallback is logged at INFO level.
   No file of mamba_ssm is modified, nothing is patched, and it happens lazily on the first request for
   the Triton backend, never at import time of this package.

Any other failure (no mamba_ssm, no triton, no CUDA, an error inside the Triton modules) makes the
backend unavailable, with the reason kept for :func:`unavailable_reason` and for error messages.
``SCCOSF_MAMBA_HEADLESS=0`` disables step 2 for users who want mamba-ssm only through its own import.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

log = logging.getLogger(__name__)

_TARGET = "mamba_ssm.ops.triton.ssd_combined"
_lock = threading.Lock()
_state: dict[str, Any] = {"loaded": False, "fn": None, "reason": None, "how": None}


def _failed_in_parent_init(exc: BaseException) -> bool:
    """True when the ImportError was raised while executing mamba_ssm's top-level ``__init__.py``."""
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        path = frame.f_code.co_filename.replace("\\", "/")
        if path.endswith("/mamba_ssm/__init__.py"):
            return True
    return False


@contextmanager
def _headless_parent(package_dir: list[str]) -> Iterator[None]:
    """Temporarily register ``mamba_ssm`` as a bare package (no ``__init__`` run); undo it afterwards."""
    before = set(sys.modules)
    spec = importlib.machinery.ModuleSpec("mamba_ssm", loader=None, is_package=True)
    spec.submodule_search_locations = list(package_dir)
    sys.modules["mamba_ssm"] = importlib.util.module_from_spec(spec)
    try:
        yield
    finally:
        for name in [m for m in sys.modules if m == "mamba_ssm" or m.startswith("mamba_ssm.")]:
            if name not in before:
                del sys.modules[name]


def _import_normally() -> Callable[..., Any]:
    module = importlib.import_module(_TARGET)
    return module.mamba_chunk_scan_combined


def _import_headless() -> Callable[..., Any]:
    spec = importlib.util.find_spec("mamba_ssm")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("mamba_ssm package directory not found")
    with _headless_parent(list(spec.submodule_search_locations)):
        module = importlib.import_module(_TARGET)
    return module.mamba_chunk_scan_combined


def _try_load() -> None:
    if not torch.cuda.is_available():
        # Triton compiles for a GPU; without one there is nothing to run the kernels on. We do not
        # even import mamba_ssm then, so CPU machines pay nothing.
        _state["reason"] = "CUDA is not available (mamba-ssm's Triton kernels need a GPU)"
        return
    try:
        import triton  # noqa: F401
    except ImportError as exc:
        _state["reason"] = f"triton is not importable: {exc}"
        return
    try:
        _state["fn"], _state["how"] = _import_normally(), "import"
        return
    except ImportError as exc:
        if importlib.util.find_spec("mamba_ssm") is None:
            _state["reason"] = "mamba-ssm is not installed"
            return
        if not _failed_in_parent_init(exc) or os.environ.get("SCCOSF_MAMBA_HEADLESS", "1") == "0":
            _state["reason"] = f"importing {_TARGET} failed: {exc}"
            return
        parent_error = exc
    try:
        fn = _import_headless()
    except Exception as exc:  # any failure inside the Triton modules makes the backend unavailable
        _state["reason"] = (
            f"mamba_ssm's __init__ failed ({parent_error}); loading its Triton modules without it "
            f"also failed: {type(exc).__name__}: {exc}"
        )
        return
    log.info(
        "mamba_ssm's package __init__ failed (%s), typically because the CUDA extension was not "
        "built; loaded %s directly without running that __init__ (sys.modules restored afterwards).",
        parent_error,
        _TARGET,
    )
    _state["fn"], _state["how"] = fn, "headless"


def load() -> Callable[..., Any] | None:
    """Return ``mamba_chunk_scan_combined`` or None; tried once per process, thread-safe."""
    with _lock:
        if not _state["loaded"]:
            _state["loaded"] = True
            _try_load()
        return _state["fn"]


def is_available() -> bool:
    """Whether the Triton backend can run here (CUDA, triton and the mamba-ssm SSD modules)."""
    return load() is not None


def unavailable_reason() -> str | None:
    """Why the Triton backend is unavailable (None when it is available)."""
    load()
    return _state["reason"]


def load_mode() -> str | None:
    """``"import"`` (normal import worked), ``"headless"`` (fallback used) or None (unavailable)."""
    load()
    return _state["how"]


def _reset_for_tests() -> None:
    """Forget the cached outcome so tests can exercise the loader again."""
    with _lock:
        _state.update(loaded=False, fn=None, reason=None, how=None)


def ssd_scan_triton(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    *,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """SSD scan through mamba-ssm's Triton kernel; same contract as the other backends.

    ``dt_softplus=False`` because callers pass dt already positive; chunk 256 is mamba-ssm's default.
    """
    fn = load()
    if fn is None:
        raise RuntimeError(f"scan backend 'triton' is unavailable: {_state['reason']}")
    return fn(x, dt, A, B, C, int(chunk_size or 256), D=D, dt_softplus=False)
