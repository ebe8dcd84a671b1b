"""BT.601 full-range YCbCr in [0, 1] (JPEG convention): fuse luminance, keep the visible chroma."""

from __future__ import annotations

import torch
from torch import Tensor

_KR, _KG, _KB = 0.299, 0.587, 0.114


def rgb_to_ycbcr(rgb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(B,3,H,W) RGB in [0,1] -> Y, Cb, Cr, each (B,1,H,W); Cb/Cr centred at 0.5."""
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    y = _KR * r + _KG * g + _KB * b
    cb = (b - y) / (2.0 * (1.0 - _KB)) + 0.5
    cr = (r - y) / (2.0 * (1.0 - _KR)) + 0.5
    return y, cb, cr


def ycbcr_to_rgb(y: Tensor, cb: Tensor, cr: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_ycbcr`, clamped to [0, 1] (clipping only where the gamut is left)."""
    cbc, crc = cb - 0.5, cr - 0.5
    r = y + 2.0 * (1.0 - _KR) * crc
    b = y + 2.0 * (1.0 - _KB) * cbc
    g = (y - _KR * r - _KB * b) / _KG
    return torch.cat([r, g, b], dim=1).clamp(0.0, 1.0)
