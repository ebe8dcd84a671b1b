"""Chunked (SSD "state-space dual") scan in pure PyTorch: the default backend on CPU.

Why chunked: the sequential recurrence is a Python loop over L (tens of thousands of tiny kernels), while
with one scalar decay per head the scan is a structured matrix product. Split L into chunks of Q tokens:

* intra-chunk: y = (C Bᵀ ∘ Λ) (dt·x), with Λ[t, s] = exp(Σ_{s<k≤t} dt_k A) for s ≤ t and 0 above the
  diagonal — a dense (Q × Q) masked-decay matrix per chunk and head, i.e. batched GEMMs;
* chunk states: what each chunk leaves behind, decayed to its last token;
* inter-chunk: the states are passed across chunks with the same masked-decay form over chunk totals
  (a (c+1) × (c+1) matrix, tiny for the lengths we run), and each token reads the incoming state through
  C_t decayed from the chunk start.

Numerics: Λ comes from :func:`segsum` — cumulative sums of dt·A (all ≤ 0) with the upper triangle masked
to −inf *before* the exponential, so we only ever take exp of non-positive numbers (exp(cumsum_t −
cumsum_s) on the raw cumsums would overflow for the masked entries and give inf·0 = NaN in backward).
Half types (bfloat16/float16) are computed in float32 and cast back, because cumulative sums of
thousands of decays in bfloat16 lose all precision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

DEFAULT_CHUNK_SIZE = 64
"""Chunk length for CPU. Intra-chunk cost grows with Q, inter-chunk with (L/Q)²; 64 measured best on the
2-core dev machine at L = 1200–19200 (see ``benchmarks/bench_scan.py``)."""

_HALF_TYPES = (torch.float16, torch.bfloat16)


def segsum(x: Tensor) -> Tensor:
    """Stable segment sums: out[..., i, j] = Σ_{j<k≤i} x[..., k] for j ≤ i, −inf for j > i.

    Built by masking then cumulative-summing (no subtraction of large cumsums, which would cancel
    catastrophically for long chunks), so ``exp(segsum(x))`` is the lower-triangular decay matrix with
    exact zeros above the diagonal and no overflow anywhere. The first mask is a product with a 0/1
    matrix rather than an expand and a masked fill: the same values, one pass over (…, T, T) fewer in the
    exported ONNX graph (where an expand is a copy).
    """
    T = x.size(-1)
    strict = torch.tril(torch.ones(T, T, dtype=x.dtype, device=x.device), diagonal=-1)
    out = torch.cumsum(x[..., None] * strict, dim=-2)  # [..., i, j] = Σ_{k≤i} x[k]·[j < k]
    keep = torch.tril(torch.ones(T, T, dtype=torch.bool, device=x.device), diagonal=0)
    return out.masked_fill(~keep, float("-inf"))


def ssd_scan_chunked(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    *,
    chunk_size: int | None = None,
) -> Tensor:
    """Chunked SSD scan; same contract as :func:`sccosf_ros.scan.reference.ssd_scan_sequential`.

    Shapes: x (b, l, h, p), dt (b, l, h) > 0, A (h,) < 0, B/C (b, l, g, n) with g | h, D (h,) or None.
    Returns (b, l, h, p) in x's dtype. Differentiable in every tensor argument.

    Layout: everything runs head-major, (b, g, r, c, Q, ·) with heads split into (group, head-in-group) so
    that B and C are never repeated across heads. Every product is then a batched matrix product whose
    contracted dimension is innermost or next to it, and only the inputs (4-D) and the output are
    transposed. Why: written as einsums, the exporter's decomposition transposed the (…, Q, Q) decay
    products and the states through 7-D permutations, which took a third of the scan's time in ONNX
    Runtime (docs/onnx.md, "Where the time goes").
    """
    Q = int(chunk_size or DEFAULT_CHUNK_SIZE)
    if Q < 1:
        raise ValueError(f"chunk_size must be positive, got {Q}")
    b, length, nheads, p = x.shape
    g, n = B.shape[2], B.shape[3]
    if nheads % g:
        raise ValueError(f"number of groups {g} must divide number of heads {nheads}")
    r = nheads // g
    out_dtype = x.dtype
    cdt = torch.float32 if x.dtype in _HALF_TYPES else x.dtype
    xf, dtf, Af, Bf, Cf = (t.to(cdt) for t in (x, dt, A, B, C))

    # Pad the tail: dt = 0 there means decay exp(0) = 1 and zero input, so padding changes nothing
    # before it; padded outputs are dropped at the end.
    pad = (-length) % Q
    if pad:
        xf = F.pad(xf, (0, 0, 0, 0, 0, pad))
        dtf = F.pad(dtf, (0, 0, 0, pad))
        Bf = F.pad(Bf, (0, 0, 0, 0, 0, pad))
        Cf = F.pad(Cf, (0, 0, 0, 0, 0, pad))
    c = (length + pad) // Q

    X = (xf * dtf[..., None]).transpose(1, 2).reshape(b, g, r, c, Q, p)  # dt·x
    Bc = Bf.transpose(1, 2).reshape(b, g, 1, c, Q, n)
    Cc = Cf.transpose(1, 2).reshape(b, g, 1, c, Q, n)
    a = (dtf * Af).transpose(1, 2).reshape(b, g, r, c, Q)  # all ≤ 0
    a_cum = torch.cumsum(a, dim=-1)

    # 1. Intra-chunk (diagonal blocks): (C Bᵀ per group) ∘ decay, times dt·x.
    decay = torch.exp(segsum(a))  # (b, g, r, c, Q, Q) lower-triangular
    CB = torch.matmul(Cc, Bc.transpose(-1, -2))  # (b, g, 1, c, Q, Q)
    y = torch.matmul(CB * decay, X)  # (b, g, r, c, Q, p)

    # 2. State each chunk leaves behind (from its own inputs only), decayed to the chunk's last token,
    #    kept as (n, p).
    to_end = torch.exp(a_cum[..., -1:] - a_cum)  # (b, g, r, c, Q), exponent ≤ 0
    states = torch.matmul(Bc.transpose(-1, -2), X * to_end[..., None])  # (b, g, r, c, n, p)

    # 3. Pass states across chunks: incoming[z] = Σ_{c'<z} exp(total decay of chunks c'+1..z-1) states[c'].
    totals = F.pad(a_cum[..., -1], (1, 0))  # (b, g, r, c + 1), leading zero for "no state yet"
    chunk_decay = torch.exp(segsum(totals))  # (b, g, r, c + 1, c + 1)
    states = torch.cat([torch.zeros_like(states[:, :, :, :1]), states], dim=3).reshape(b, g, r, c + 1, n * p)
    incoming = torch.matmul(chunk_decay, states)[:, :, :, :-1].reshape(b, g, r, c, n, p)

    # 4. Each token reads the incoming state, decayed from the chunk start to itself.
    from_start = torch.exp(a_cum)  # (b, g, r, c, Q)
    y = y + torch.matmul(Cc, incoming) * from_start[..., None]

    y = y.reshape(b, nheads, c * Q, p).transpose(1, 2)[:, :length]
    if D is not None:
        y = y + D.to(cdt)[None, None, :, None] * xf[:, :length]
    return y.to(out_dtype)
