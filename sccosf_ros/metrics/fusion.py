"""No-reference image-fusion metrics (EN, SD, SF, AG, MI, SCD, VIF, Qabf, SSIM), NumPy + OpenCV only.

Convention (also in ``docs/metrics.md``): every image is a 2-D grayscale float64 array in 0-255. Colour images
become BT.601 luma via :func:`to_gray255`. Nothing is min-max stretched per image: a stretch rewards contrast
the method did not produce and makes scores depend on preprocessing, so the fused output is scored as the node
would publish it. Definitions follow the CDDFuse/EMMA Python evaluator so that numbers can be compared with
recent papers, with three stated differences (SSIM, Qabf's equal-gradient case, flat inputs); see the docs.

Units and sums: EN in bits; MI in nats (natural log, as the evaluator's ``sklearn`` call) and summed,
MI(F, IR) + MI(F, VI); SSIM and VIF are summed over (F, IR) and (F, VI) too, so their ideal is 2, not 1;
SCD is corr(IR, F - VI) + corr(VI, F - IR) by definition. EN and MI use 256 bins on values rounded to 0..255.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from sccosf_ros.imaging.color import BT601_LUMA

FUSION_METRICS: tuple[str, ...] = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM")

_LUMA = np.array(BT601_LUMA)


def to_gray255(image: np.ndarray, float_range: float = 1.0) -> np.ndarray:
    """Any supported image -> 2-D float64 grey in 0-255, the metrics' input.

    * uint8 grey ``(H, W)`` / ``(H, W, 1)``: values as they are.
    * uint8 RGB ``(H, W, 3)`` (RGB order, not BGR): BT.601 luma rounded to integers, i.e. what an 8-bit grey
      PNG of it would hold (and what the reference evaluator reads).
    * float: assumed in ``[0, float_range]`` (default [0, 1], the network's output) and scaled to 0-255;
      values beyond ``float_range`` raise rather than silently clip, since that signals a scale mix-up.
    """
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
        raise ValueError(f"expected (H, W), (H, W, 1) or (H, W, 3), got shape {a.shape}")
    if a.dtype == np.uint8:
        if a.ndim == 2:
            return a.astype(np.float64)
        return np.rint(a.astype(np.float64) @ _LUMA)
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"expected uint8 or float, got {a.dtype}")
    if not float_range > 0:
        raise ValueError(f"float_range must be positive, got {float_range}")
    f = a.astype(np.float64)
    if not np.all(np.isfinite(f)):
        raise ValueError("image contains NaN or inf")
    tol = 1e-6 * float_range
    if f.min() < -tol or f.max() > float_range + tol:
        raise ValueError(
            f"float image spans [{f.min():.4g}, {f.max():.4g}], outside [0, {float_range}]; "
            "pass float_range=255 for 0-255 floats"
        )
    f = f * (255.0 / float_range)
    return f if f.ndim == 2 else f @ _LUMA


def _img(a: np.ndarray, name: str = "image", min_side: int = 2) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D grey (use to_gray255), got shape {a.shape}")
    if min(a.shape) < min_side:
        raise ValueError(f"{name} must be at least {min_side}x{min_side}, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    return a


def _triple(f: np.ndarray, ir: np.ndarray, vi: np.ndarray, min_side: int = 2) -> tuple[np.ndarray, ...]:
    out = (_img(f, "fused", min_side), _img(ir, "ir", min_side), _img(vi, "vi", min_side))
    if not out[0].shape == out[1].shape == out[2].shape:
        raise ValueError(f"shapes differ: fused {out[0].shape}, ir {out[1].shape}, vi {out[2].shape}")
    return out


def _levels(a: np.ndarray) -> np.ndarray:
    """256 histogram bins: round to the nearest grey level, clip to 0..255."""
    return np.clip(np.rint(a), 0, 255).astype(np.intp)


# ---------------------------------------------------------------- single-image metrics


def entropy(image: np.ndarray) -> float:
    """EN: Shannon entropy (bits) of the 256-level histogram. Higher = more grey levels in use."""
    hist = np.bincount(_levels(_img(image)).ravel(), minlength=256).astype(np.float64)
    p = hist[hist > 0] / hist.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0


def standard_deviation(image: np.ndarray) -> float:
    """SD: population standard deviation of the grey values (global contrast)."""
    return float(np.std(_img(image)))


def spatial_frequency(image: np.ndarray) -> float:
    """SF = sqrt(RF^2 + CF^2), RF^2/CF^2 the mean squared horizontal/vertical forward differences."""
    a = _img(image)
    return float(math.sqrt(np.mean(np.diff(a, axis=1) ** 2) + np.mean(np.diff(a, axis=0) ** 2)))


def average_gradient(image: np.ndarray) -> float:
    """AG = mean(sqrt((Gx^2 + Gy^2) / 2)), central differences inside, one-sided at the borders."""
    a = _img(image)
    gy, gx = np.gradient(a)
    return float(np.mean(np.sqrt((gx * gx + gy * gy) / 2.0)))


# ---------------------------------------------------------------- pairwise building blocks


def mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """MI(a, b) in nats from the 256x256 joint histogram of rounded grey levels."""
    a, b = _levels(_img(a, "a")), _levels(_img(b, "b"))
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    joint = np.bincount((a * 256 + b).ravel(), minlength=65536).reshape(256, 256).astype(np.float64)
    joint /= joint.sum()
    pa, pb = joint.sum(axis=1), joint.sum(axis=0)
    nz = joint > 0
    outer = pa[:, None] * pb[None, :]
    return float(np.sum(joint[nz] * np.log(joint[nz] / outer[nz]))) + 0.0


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; 0 when either side is constant (no shared variation to measure)."""
    dx, dy = x - x.mean(), y - y.mean()
    den = math.sqrt(float(np.sum(dx * dx)) * float(np.sum(dy * dy)))
    return float(np.sum(dx * dy) / den) if den > 0 else 0.0


def _valid_filter(a: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """2-D correlation keeping only fully overlapped positions (MATLAB/scipy 'valid').

    Correlation equals convolution here because every kernel used is point-symmetric.
    """
    r0, r1 = kernel.shape[0] // 2, kernel.shape[1] // 2
    full = cv2.filter2D(a, cv2.CV_64F, kernel, borderType=cv2.BORDER_REFLECT)
    return full[r0 : a.shape[0] - r0, r1 : a.shape[1] - r1]


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM (Wang et al. 2004): Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, L 255; mean of the map over
    the valid area (no padded borders)."""
    a, b = _img(a, "a", 11), _img(b, "b", 11)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    g = cv2.getGaussianKernel(11, 1.5)
    win = g @ g.T
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = _valid_filter(a, win), _valid_filter(b, win)
    saa = _valid_filter(a * a, win) - mu_a * mu_a
    sbb = _valid_filter(b * b, win) - mu_b * mu_b
    sab = _valid_filter(a * b, win) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * sab + c2)
    den = (mu_a * mu_a + mu_b * mu_b + c1) * (saa + sbb + c2)
    return float(np.mean(num / den))


def _vif_windows() -> list[np.ndarray]:
    wins = []
    for scale in range(1, 5):
        n = 2 ** (5 - scale) + 1  # 17, 9, 5, 3
        g = cv2.getGaussianKernel(n, n / 5.0)
        wins.append(g @ g.T)
    return wins


_VIF_WINDOWS = _vif_windows()


def vif(ref: np.ndarray, dist: np.ndarray, sigma_nsq: float = 2.0) -> float:
    """Pixel-domain VIF (VIFp, Sheikh & Bovik), 4 scales, Gaussian windows 17/9/5/3 with sigma N/5.

    Information of ``ref`` preserved in ``dist``: 1 when equal. NaN when ``ref`` carries no information at all
    (flat at every scale): the ratio 0/0 is undefined, and we do not report 1 for it.
    """
    ref, dist = _img(ref, "ref", 32), _img(dist, "dist", 32)
    if ref.shape != dist.shape:
        raise ValueError(f"shapes differ: {ref.shape} vs {dist.shape}")
    eps = 1e-10
    num = den = 0.0
    for scale, win in enumerate(_VIF_WINDOWS, start=1):
        if scale > 1:
            ref = _valid_filter(ref, win)[::2, ::2]
            dist = _valid_filter(dist, win)[::2, ::2]
        mu1, mu2 = _valid_filter(ref, win), _valid_filter(dist, win)
        s11 = np.maximum(_valid_filter(ref * ref, win) - mu1 * mu1, 0.0)
        s22 = np.maximum(_valid_filter(dist * dist, win) - mu2 * mu2, 0.0)
        s12 = _valid_filter(ref * dist, win) - mu1 * mu2
        g = s12 / (s11 + eps)
        sv = s22 - g * s12
        flat_ref = s11 < eps
        g[flat_ref] = 0.0
        sv[flat_ref] = s22[flat_ref]
        s11 = np.where(flat_ref, 0.0, s11)
        flat_dist = s22 < eps
        g[flat_dist] = 0.0
        sv[flat_dist] = 0.0
        neg = g < 0
        sv[neg] = s22[neg]
        g[neg] = 0.0
        sv = np.maximum(sv, eps)
        num += float(np.sum(np.log10(1.0 + g * g * s11 / (sv + sigma_nsq))))
        den += float(np.sum(np.log10(1.0 + s11 / sigma_nsq)))
    return num / den if den > 0 else float("nan")


_SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float64)
_SOBEL_Y = _SOBEL_X.T.copy()


def _edges(a: np.ndarray, border: int) -> tuple[np.ndarray, np.ndarray]:
    """Sobel strength and orientation (arctan(gy/gx) in (-pi/2, pi/2], pi/2 where gx = 0)."""
    gx = cv2.filter2D(a, cv2.CV_64F, _SOBEL_X, borderType=border)
    gy = cv2.filter2D(a, cv2.CV_64F, _SOBEL_Y, borderType=border)
    strength = np.sqrt(gx * gx + gy * gy)
    with np.errstate(divide="ignore", invalid="ignore"):
        angle = np.where(gx == 0, math.pi / 2, np.arctan(gy / np.where(gx == 0, 1.0, gx)))
    return strength, angle


def _edge_preservation(g_s: np.ndarray, a_s: np.ndarray, g_f: np.ndarray, a_f: np.ndarray) -> np.ndarray:
    """Q^{SF}: Xydeas-Petrovic edge strength x orientation preservation (Tg .9994, kg -15, Dg .5,
    Ta .9879, ka -22, Da .8). Strength ratio min/max, 1 where both are equal (the evaluator uses g_F)."""
    lo, hi = np.minimum(g_s, g_f), np.maximum(g_s, g_f)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(hi > 0, lo / np.where(hi > 0, hi, 1.0), 1.0)
    orient = 1.0 - np.abs(a_s - a_f) / (math.pi / 2)
    q_g = 0.9994 / (1.0 + np.exp(-15.0 * (ratio - 0.5)))
    q_a = 0.9879 / (1.0 + np.exp(-22.0 * (orient - 0.8)))
    return q_g * q_a


def qabf(fused: np.ndarray, ir: np.ndarray, vi: np.ndarray, zero_padding: bool = False) -> float:
    """Qabf: source edge information kept in F, weighted by source edge strength (L = 1). NaN if both flat.

    Sobel borders are mirrored (reflect-101) by default. The evaluator pads with zeros, which invents a strong
    edge around every frame that any output "preserves"; measured on 10 MSRS pairs with SeAFusion this adds
    +0.0004 to +0.0054. ``zero_padding=True`` reproduces the evaluator's borders for comparison with papers.
    """
    f, a, b = _triple(fused, ir, vi, 3)
    border = cv2.BORDER_CONSTANT if zero_padding else cv2.BORDER_REFLECT_101
    g_a, a_a = _edges(a, border)
    g_b, a_b = _edges(b, border)
    g_f, a_f = _edges(f, border)
    den = float(np.sum(g_a + g_b))
    if den == 0:
        return float("nan")
    num = np.sum(_edge_preservation(g_a, a_a, g_f, a_f) * g_a + _edge_preservation(g_b, a_b, g_f, a_f) * g_b)
    return float(num / den)


def scd(fused: np.ndarray, ir: np.ndarray, vi: np.ndarray) -> float:
    """SCD = corr(IR, F - VI) + corr(VI, F - IR): how much of each source is in F beyond the other source."""
    f, a, b = _triple(fused, ir, vi)
    return _corr(a, f - b) + _corr(b, f - a)


def fusion_metrics(fused: np.ndarray, ir: np.ndarray, vi: np.ndarray) -> dict[str, float]:
    """All of :data:`FUSION_METRICS` for one triple of 2-D 0-255 grey images (see the module conventions)."""
    f, a, b = _triple(fused, ir, vi, 32)
    return {
        "EN": entropy(f),
        "SD": standard_deviation(f),
        "SF": spatial_frequency(f),
        "AG": average_gradient(f),
        "MI": mutual_information(f, a) + mutual_information(f, b),
        "SCD": scd(f, a, b),
        "VIF": vif(a, f) + vif(b, f),
        "Qabf": qabf(f, a, b),
        "SSIM": ssim(f, a) + ssim(f, b),
    }
