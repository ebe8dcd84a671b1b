"""Sc-CFM: Self-correction and Collaboration Fusion Module (one per encoder stage).

Input: the shared encoder's stage output for both modalities, batched as (2B, C, h, w) = [visible; thermal].
Output: one fused (B, d, h, w) feature.

    shared 1×1 projection C → d (both modalities, same weights)
      ├─ Sc-LRB: pooled cross-modal attention (global context) → self-correction → L
      ├─ Sc-FGB: multi-scale dilated depthwise convs (local detail) → self-correction → F
      └─ DCR: L ← L·(1 + spatial gate from F),  F ← F·(1 + channel gate from L)
    fused = ConvBN(cat(L, F)) + ½(p_vis + p_th)

Self-correction (:class:`CrossCorrection`) lets each modality import the other where they disagree, before
the two are merged, so a feature ruined in one modality (glare, darkness, thermal crossover) is corrected
by the other rather than averaged with it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DCR", "CrossCorrection", "ScCFM", "ScFGB", "ScLRB", "conv_bn_act"]


def conv_bn_act(
    cin: int, cout: int, kernel: int = 1, groups: int = 1, dilation: int = 1, act: bool = True
) -> nn.Sequential:
    """Conv (no bias) + BatchNorm (+ ReLU): foldable into one conv at export time."""
    layers: list[nn.Module] = [
        nn.Conv2d(
            cin,
            cout,
            kernel,
            padding=dilation * (kernel - 1) // 2,
            dilation=dilation,
            groups=groups,
            bias=False,
        ),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class CrossCorrection(nn.Module):
    """Self-correction of two modality features by each other, gated by their discrepancy.

    g_v, g_t = σ(W · (a_v − a_t));  a_v' = a_v + g_v ⊙ a_t;  a_t' = a_t + g_t ⊙ a_v;
    out = ConvBN(cat(a_v', a_t')).
    The gate sees the difference, so the correction acts where the modalities disagree, per pixel and channel.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gate = nn.Conv2d(dim, 2 * dim, 1)
        self.merge = conv_bn_act(2 * dim, dim)

    def forward(self, a_v: Tensor, a_t: Tensor) -> Tensor:
        g_v, g_t = torch.sigmoid(self.gate(a_v - a_t)).chunk(2, dim=1)
        return self.merge(torch.cat([a_v + g_v * a_t, a_t + g_t * a_v], dim=1))


class ScLRB(nn.Module):
    """Long-range branch: every position of each modality attends to pooled tokens of *both* modalities.

    Pooling to at most ``pool``×``pool`` tokens keeps it linear in the number of pixels; the keys mix both
    modalities, so the added context is already cross-modal before the self-correction.
    """

    def __init__(self, dim: int, heads: int, pool: int, query_stride: int = 1) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} not divisible by heads {heads}")
        self.heads, self.pool, self.query_stride = heads, pool, query_stride
        self.q = nn.Conv2d(dim, dim, 1, bias=False)
        self.kv = nn.Linear(dim, 2 * dim, bias=False)
        self.proj = conv_bn_act(dim, dim, act=False)
        self.correct = CrossCorrection(dim)

    def forward(self, p: Tensor) -> Tensor:
        n2, d, h, w = p.shape
        n, hd = n2 // 2, d // self.heads
        ph, pw = min(self.pool, h), min(self.pool, w)
        tok = F.adaptive_avg_pool2d(p, (ph, pw)).flatten(2).transpose(1, 2)  # (2B, P, d)
        tok = torch.cat([tok[:n], tok[n:]], dim=1)  # (B, 2P, d): both modalities
        k, v = self.kv(tok).reshape(n, -1, 2, self.heads, hd).permute(2, 0, 3, 1, 4)  # (B, heads, 2P, hd)
        k, v = k.repeat(2, 1, 1, 1), v.repeat(2, 1, 1, 1)
        pq = p if self.query_stride == 1 else F.avg_pool2d(p, self.query_stride, ceil_mode=True)
        qh, qw = pq.shape[-2:]
        q = self.q(pq).reshape(n2, self.heads, hd, qh * qw).transpose(2, 3)  # (2B, heads, hw, hd)
        ctx = F.scaled_dot_product_attention(q, k, v)  # (2B, heads, hw, hd)
        ctx = self.proj(ctx.transpose(2, 3).reshape(n2, d, qh, qw))
        if self.query_stride != 1:
            ctx = F.interpolate(ctx, size=(h, w), mode="bilinear", align_corners=False)
        a = p + ctx
        return self.correct(a[:n], a[n:])


class ScFGB(nn.Module):
    """Fine-grained branch: summed dilated depthwise 3×3 convs (receptive fields 3, 5, 7 for 1, 2, 3)."""

    def __init__(self, dim: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.dw = nn.ModuleList(
            nn.Conv2d(dim, dim, 3, padding=r, dilation=r, groups=dim, bias=False) for r in dilations
        )
        self.pw = conv_bn_act(dim, dim)
        self.correct = CrossCorrection(dim)

    def forward(self, p: Tensor) -> Tensor:
        local = self.dw[0](p)
        for conv in self.dw[1:]:
            local = local + conv(p)
        a = p + self.pw(local)
        n = p.shape[0] // 2
        return self.correct(a[:n], a[n:])


class DCR(nn.Module):
    """Dual-branch collaborative recalibration: each branch gates the other, then both are merged.

    The fine branch knows *where* (edges, small objects): it gives the long-range branch a spatial gate.
    The long-range branch knows *what* (semantics): it gives the fine branch a channel gate.
    Gates are residual (x·(1+g)) so an untrained gate never erases a branch.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.spatial = nn.Conv2d(dim, 1, 3, padding=1)
        hidden = max(8, dim // 4)
        self.channel = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim))
        self.merge = conv_bn_act(2 * dim, dim)

    def forward(self, lrb: Tensor, fgb: Tensor) -> Tensor:
        s = torch.sigmoid(self.spatial(fgb))
        c = torch.sigmoid(self.channel(lrb.mean(dim=(2, 3))))[:, :, None, None]
        return self.merge(torch.cat([lrb * (1.0 + s), fgb * (1.0 + c)], dim=1))


class ScCFM(nn.Module):
    """Fuse one encoder stage of both modalities into a single feature map."""

    def __init__(
        self, cin: int, dim: int, heads: int, pool: int, dilations: tuple[int, ...], query_stride: int = 1
    ) -> None:
        super().__init__()
        self.proj = conv_bn_act(cin, dim)
        self.lrb = ScLRB(dim, heads, pool, query_stride)
        self.fgb = ScFGB(dim, dilations)
        self.dcr = DCR(dim)

    def forward(self, feats: Tensor) -> Tensor:
        p = self.proj(feats)  # (2B, d, h, w), shared weights for both modalities
        n = p.shape[0] // 2
        return self.dcr(self.lrb(p), self.fgb(p)) + 0.5 * (p[:n] + p[n:])
