"""Training objectives: segmentation cross-entropy and a semantically weighted fusion objective.

The fusion objective works on luminance only: the network's fused RGB is built from its fused Y and the
visible image's chroma, so colour is not a free output to supervise. All images are in [0, 1].

``L_fusion = w_int * L_int + w_grad * L_grad + w_ssim * L_ssim`` with

* ``L_int``: weighted L1 between fused Y and the salient-intensity target ``max(Y_vis, IR)`` (SeAFusion's);
  foreground pixels (car, person, bike by default) weigh ``1 + fg_weight`` times more, because hot targets
  are what a thermal camera is bought for and they cover few pixels. ``fg_target="thermal"`` (the first
  shipped model's recipe) moves the foreground target to the thermal intensity instead. The foreground
  mask comes from the labels where a sample has them, otherwise from the model's own (detached) class
  probabilities.
* ``L_grad``: L1 between the fused Sobel magnitude and ``max(|∇Y_vis|, |∇IR|)`` (keep the sharper texture).
  ``grad_mode="floor"`` penalises only the shortfall, ``relu(target - |∇F|)``: texture must not be lost,
  but adding the second source's detail where both have some is left to the SSIM term to judge.
* ``L_ssim``: ``1 - (SSIM(F, Y_vis) + SSIM(F, IR)) / 2``, a structural regulariser toward both sources.

The joint total is ``w_fusion * L_fusion + w_seg * L_seg``. See ``docs/training.md`` for the default
weights and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sccosf_ros.model.color import luma
from sccosf_train.augment import IGNORE_INDEX

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def sobel_magnitude(x: Tensor) -> Tensor:
    """|Gx| + |Gy| of a (B,1,H,W) image with replicate padding (no false edges at the border)."""
    kx = _SOBEL_X.to(x)[None, None]
    ky = kx.transpose(-1, -2)
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return F.conv2d(xp, kx).abs() + F.conv2d(xp, ky).abs()


def _gaussian_window(size: int, sigma: float, like: Tensor) -> Tensor:
    g = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(g**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(a: Tensor, b: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Mean SSIM of two (B,1,H,W) images in [0, 1] (Gaussian window, Wang et al. 2004 constants)."""
    w = _gaussian_window(min(window, a.shape[-1], a.shape[-2]) | 1, sigma, a)
    pad = w.shape[-1] // 2

    def blur(x: Tensor) -> Tensor:
        return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="reflect"), w)

    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean()


def enet_class_weights(counts: Sequence[float] | np.ndarray, c: float = 1.02) -> tuple[float, ...]:
    """ENet's class weights ``1 / ln(c + p_k)`` from per-class pixel counts (Paszke et al., 2016).

    Bounded by ``1 / ln(c)`` (~50 for c = 1.02) however rare a class is, unlike inverse frequency; a class
    with no pixels gets the bound. Road-scene labels are ~90% background, so without weights thin classes
    (kerbs, cones, bikes) are never predicted.
    """
    n = np.asarray(counts, dtype=np.float64)
    if n.ndim != 1 or n.size == 0 or (n < 0).any() or n.sum() <= 0:
        raise ValueError("class counts must be a non-empty, non-negative vector with a positive sum")
    return tuple(float(v) for v in 1.0 / np.log(c + n / n.sum()))


def segmentation_loss(
    logits: Tensor,
    labels: Tensor,
    ohem_thresh: float | None = None,
    ohem_min_kept: int = 10_000,
    class_weights: Tensor | None = None,
) -> Tensor:
    """Cross-entropy over labelled pixels (255 ignored); 0 (with a graph) when none are labelled.

    ``class_weights`` scale each pixel's loss by its true class's weight; the mean is then normalised by
    the summed weights (as ``F.cross_entropy`` does), so the loss keeps its scale against the fusion terms.
    With ``ohem_thresh`` (a probability, e.g. 0.7) only pixels whose true-class probability is below it are
    kept, but at least the ``ohem_min_kept`` hardest ones: easy road/background pixels stop dominating.
    """
    valid = labels != IGNORE_INDEX
    n_valid = int(valid.sum())
    if n_valid == 0:
        return logits.sum() * 0.0
    pix = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="none")[valid]
    pw = torch.ones_like(pix) if class_weights is None else class_weights.to(pix)[labels[valid]]
    if ohem_thresh is not None:  # hardness is judged on the unweighted loss, then weights apply
        hard = pix > -torch.log(torch.tensor(ohem_thresh, device=pix.device))
        k = min(n_valid, ohem_min_kept)
        keep = pix.topk(k).indices if int(hard.sum()) < k else hard.nonzero().squeeze(1)
        pix, pw = pix[keep], pw[keep]
    return (pw * pix).sum() / pw.sum()


def foreground_mask(
    labels: Tensor, has_labels: Tensor, seg_logits: Tensor | None, fg_classes: Sequence[int]
) -> Tensor:
    """(B,1,H,W) in [0, 1], 1 on salient classes: labels where present, else detached predictions."""
    fg = torch.zeros_like(labels, dtype=torch.float32)
    for c in fg_classes:
        fg = fg + (labels == c).float()
    fg = fg[:, None]
    if seg_logits is not None:
        probs = seg_logits.detach().float().softmax(dim=1)
        pred_fg = probs[:, list(fg_classes)].sum(dim=1, keepdim=True)
        use_pred = (~has_labels.bool()).view(-1, 1, 1, 1)
        fg = torch.where(use_pred, pred_fg, fg)
    return fg


@dataclass
class LossWeights:
    """Defaults and their reasons are in ``docs/training.md``."""

    seg: float = 0.5
    fusion: float = 1.0
    intensity: float = 1.0
    gradient: float = 10.0
    ssim: float = 0.5
    fg_weight: float = 4.0
    fg_classes: tuple[int, ...] = (1, 2, 3)  # car, person, bike
    fg_target: str = "max"  # intensity target on foreground: max (of Y_vis and IR) or thermal
    grad_mode: str = "l1"  # l1 (two-sided) or floor (only a fused gradient below the target costs)
    ohem_thresh: float | None = None
    ohem_min_kept: int = 10_000
    class_weights: tuple[float, ...] | None = None  # per-class cross-entropy weights (None: unweighted)


def fusion_loss(fused_y: Tensor, y_vis: Tensor, ir: Tensor, fg: Tensor, w: LossWeights) -> dict[str, Tensor]:
    """Components of the fusion objective on luminance (all (B,1,H,W) in [0, 1])."""
    fused_y = fused_y.float()
    target = torch.maximum(y_vis, ir)
    if w.fg_target == "thermal":
        target = fg * ir + (1 - fg) * target
    pw = 1.0 + w.fg_weight * fg
    l_int = (pw * (fused_y - target).abs()).sum() / pw.sum()
    g_target = torch.maximum(sobel_magnitude(y_vis), sobel_magnitude(ir))
    g_diff = sobel_magnitude(fused_y) - g_target
    l_grad = (F.relu(-g_diff) if w.grad_mode == "floor" else g_diff.abs()).mean()
    l_ssim = 1.0 - 0.5 * (ssim(fused_y, y_vis) + ssim(fused_y, ir))
    total = w.intensity * l_int + w.gradient * l_grad + w.ssim * l_ssim
    return {"fusion": total, "int": l_int, "grad": l_grad, "ssim": l_ssim}


def joint_loss(
    out: dict[str, Tensor], rgb: Tensor, thermal: Tensor, labels: Tensor, has_labels: Tensor, w: LossWeights
) -> dict[str, Tensor]:
    """Total and every component (``total``, ``seg``, ``fusion``, ``int``, ``grad``, ``ssim``)."""
    cw = None if w.class_weights is None else torch.tensor(w.class_weights, device=labels.device)
    seg = segmentation_loss(out["seg_logits"], labels, w.ohem_thresh, w.ohem_min_kept, cw)
    fg = foreground_mask(labels, has_labels, out["seg_logits"], w.fg_classes)
    # the same Y as the model's colour path
    fus = fusion_loss(out["fused_y"], luma(rgb.float()), thermal.float(), fg, w)
    total = w.seg * seg + w.fusion * fus["fusion"]
    return {"total": total, "seg": seg, **fus}
