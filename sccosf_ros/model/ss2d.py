"""2D selective scan (VMamba SS2D, Mamba-2/SSD form) and the VSS block built on it.

SS2D: in_proj → depthwise 3×3 → SiLU → cross-scan (rows, columns, both reversed) → x_proj to (dt, B, C)
per direction → :func:`sccosf_ros.scan.ssd_scan` → cross-merge (sum, un-flipped, un-transposed) →
LayerNorm → gate with SiLU(z) → out_proj.

The four directions run in *one* scan call. They are stacked as head groups (head k·nh + j belongs to
direction k, group k carries that direction's B/C) rather than as extra batch rows: the scan treats heads
independently along L, so the cost and the single kernel launch are the same as batching, and A, D and
the dt bias may differ per direction as in VMamba (a batch-folded layout would force them to be shared).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sccosf_ros.scan import ssd_scan

__all__ = ["SS2D", "VSSBlock"]

_K = 4  # scan directions


class SS2D(nn.Module):
    """Four-direction selective scan over a channels-last (B, H, W, C) map."""

    def __init__(
        self,
        dim: int,
        expand: float = 1.0,
        headdim: int = 16,
        d_state: int = 16,
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
    ) -> None:
        super().__init__()
        inner = int(dim * expand)
        if inner % headdim:
            raise ValueError(f"inner width {inner} is not a multiple of headdim {headdim}")
        self.inner, self.headdim, self.d_state = inner, headdim, d_state
        self.nheads = inner // headdim
        nh_all = _K * self.nheads
        self.in_proj = nn.Linear(dim, 2 * inner, bias=False)
        self.dwconv = nn.Conv2d(inner, inner, 3, padding=1, groups=inner, bias=True)
        # One (inner → nheads + 2·d_state) projection per direction, applied as a single batched matmul.
        bound = 1.0 / math.sqrt(inner)
        proj = torch.empty(_K, inner, self.nheads + 2 * d_state).uniform_(-bound, bound)
        self.x_proj_weight = nn.Parameter(proj)
        # Mamba's dt initialisation: softplus(dt_bias) log-uniform in [dt_min, dt_max].
        dt = torch.exp(torch.rand(nh_all) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.empty(nh_all).uniform_(1.0, 16.0)))
        self.D = nn.Parameter(torch.ones(nh_all))
        self.out_norm = nn.LayerNorm(inner)
        self.out_proj = nn.Linear(inner, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, _ = x.shape
        length = h * w
        xs, z = self.in_proj(x).chunk(2, dim=-1)
        xs = F.silu(self.dwconv(xs.permute(0, 3, 1, 2)))  # (b, e, h, w)
        row = xs.flatten(2)  # row-major order: l = i·w + j
        col = xs.transpose(2, 3).flatten(2)  # column-major order: l = j·h + i
        stacked = torch.stack([row, col, row.flip(-1), col.flip(-1)], dim=1)  # (b, K, e, l)
        # x_proj as one product batched over the directions, on the channels-first sequences: as an einsum on
        # (b, l, K, e) the exported graph transposed the sequences once more (6 ms of 40 in ONNX Runtime).
        proj = torch.matmul(self.x_proj_weight.transpose(1, 2), stacked).permute(0, 3, 1, 2)  # (b, l, K, r)
        seq = stacked.permute(0, 3, 1, 2)  # (b, l, K, e)
        dt, Bm, Cm = proj.split([self.nheads, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(dt.reshape(b, length, _K * self.nheads) + self.dt_bias)
        A = -torch.exp(self.A_log)
        y = ssd_scan(
            seq.reshape(b, length, _K * self.nheads, self.headdim),
            dt,
            A,
            Bm.contiguous(),
            Cm.contiguous(),
            self.D,
        )
        y = y.reshape(b, length, _K, self.inner)
        # Cross-merge: undo the reversal, then bring column-major sequences back to row-major.
        y_row = y[:, :, 0] + y[:, :, 2].flip(1)
        y_col = y[:, :, 1] + y[:, :, 3].flip(1)
        merged = y_row.reshape(b, h, w, self.inner) + y_col.reshape(b, w, h, self.inner).transpose(1, 2)
        return self.out_proj(self.out_norm(merged) * F.silu(z))


class VSSBlock(nn.Module):
    """Pre-norm residual SS2D (+ optional MLP); channels-first in and out to sit among convolutions."""

    def __init__(self, dim: int, expand: float, headdim: int, d_state: int, mlp_ratio: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.ss2d = SS2D(dim, expand, headdim, d_state)
        hidden = int(dim * mlp_ratio)
        self.mlp = (
            nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
            if hidden > 0
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        t = x.permute(0, 2, 3, 1)
        t = t + self.ss2d(self.norm(t))
        if self.mlp is not None:
            t = t + self.mlp(t)
        return t.permute(0, 3, 1, 2)
