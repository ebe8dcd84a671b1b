"""Sequential Mamba-2 (SSD) scan: the executable definition of the semantics every backend must match.

Recurrence per batch b, head h, channel p, state n (groups g(h) = h // (H // G)):

    h_t = exp(dt_t * A_h) * h_{t-1} + dt_t * x_t * B_t
    y_t = <C_t, h_t> + D_h * x_t

It is slow (a Python loop over L) and exists for tests; use :func:`sccosf_ros.scan.ssd_scan`.
"""

from __future__ import annotations

import torch
from torch import Tensor


def ssd_scan_sequential(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None
) -> Tensor:
    """Reference scan. Shapes: x (b, l, h, p), dt (b, l, h) > 0, A (h,) < 0, B/C (b, l, g, n), D (h,)."""
    b, _, nheads, p = x.shape
    g = B.shape[2]
    rep = nheads // g
    Bh = B.repeat_interleave(rep, dim=2)  # (b, l, h, n)
    Ch = C.repeat_interleave(rep, dim=2)
    decay = torch.exp(dt * A)  # (b, l, h)
    state = x.new_zeros(b, nheads, p, B.shape[-1])
    ys = []
    # unbind, not x[:, t]: the backward of per-step indexing allocates a full (b, l, ...) gradient per
    # step, which made the backward quadratic in L (minutes at L = 19200); unbind's backward is one stack.
    steps = zip(dt.unbind(1), x.unbind(1), Bh.unbind(1), Ch.unbind(1), decay.unbind(1), strict=True)
    for dt_t, x_t, B_t, C_t, decay_t in steps:
        inp = (dt_t[:, :, None, None] * x_t[:, :, :, None]) * B_t[:, :, None, :]
        state = decay_t[:, :, None, None] * state + inp
        ys.append(torch.einsum("bhpn,bhn->bhp", state, C_t))
    y = torch.stack(ys, dim=1)
    if D is not None:
        y = y + D[None, None, :, None] * x
    return y
