"""Selective state-space scan (Mamba-2 / SSD parametrisation) with interchangeable backends.

``ssd_scan(x, dt, A, B, C, D)`` is the one entry point. Backends: ``sequential`` (reference),
``chunked`` (pure PyTorch, default everywhere), and on CUDA ``triton`` (mamba-ssm kernels) or
``compile`` (chunked under torch.compile). See ``reference.py`` for the exact semantics.
"""

from sccosf_ros.scan.reference import ssd_scan_sequential

__all__ = ["ssd_scan_sequential"]
