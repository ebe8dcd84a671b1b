"""Selective state-space scan (Mamba-2 / SSD parametrisation) with interchangeable backends.

``ssd_scan(x, dt, A, B, C, D)`` is the one entry point. Backends: ``sequential`` (reference),
``chunked`` (pure PyTorch, default everywhere), and on CUDA ``triton`` (mamba-ssm kernels) or
``compile`` (chunked under torch.compile). See ``reference.py`` for the exact semantics.
"""

from __future__ import annotations

from torch import Tensor

from sccosf_ros.scan.chunked import ssd_scan_chunked
from sccosf_ros.scan.reference import ssd_scan_sequential

__all__ = ["ssd_scan", "ssd_scan_chunked", "ssd_scan_sequential"]


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

    Interim dispatch: ``backend="sequential"`` runs the reference, everything else the chunked scan.
    """
    if backend == "sequential":
        return ssd_scan_sequential(x, dt, A, B, C, D)
    return ssd_scan_chunked(x, dt, A, B, C, D, chunk_size=chunk_size)
