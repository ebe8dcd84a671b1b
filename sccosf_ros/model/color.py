"""BT.601 full-range YCbCr of image *tensors* (B,3,H,W) in [0, 1], as separate planes (JPEG convention).

The network fuses luminance and keeps the visible chroma. This is the tensor form used inside the model and
the training losses; :mod:`sccosf_ros.imaging.color` has the NumPy form for (..., 3) arrays, with the same
coefficients.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sccosf_ros.imaging.color import BT601_LUMA

_KR, _KG, _KB = BT601_LUMA


def luma(rgb: Tensor) -> Tensor:
    """Y of (B,3,H,W) RGB in [0, 1], (B,1,H,W)."""
    return _KR * rgb[:, 0:1] + _KG * rgb[:, 1:2] + _KB * rgb[:, 2:3]


def rgb_to_ycbcr_planes(rgb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(B,3,H,W) RGB in [0,1] -> Y, Cb, Cr, each (B,1,H,W); Cb/Cr centred at 0.5."""
    r, b = rgb[:, 0:1], rgb[:, 2:3]
    y = luma(rgb)
    cb = (b - y) / (2.0 * (1.0 - _KB)) + 0.5
    cr = (r - y) / (2.0 * (1.0 - _KR)) + 0.5
    return y, cb, cr


def ycbcr_planes_to_rgb(y: Tensor, cb: Tensor, cr: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_ycbcr_planes`, clamped to [0, 1] (clipping only where the gamut is left)."""
    cbc, crc = cb - 0.5, cr - 0.5
    r = y + 2.0 * (1.0 - _KR) * crc
    b = y + 2.0 * (1.0 - _KB) * cbc
    g = (y - _KR * r - _KB * b) / _KG
    return torch.cat([r, g, b], dim=1).clamp(0.0, 1.0)
