"""Estimate the thermal->RGB homography of a camera rig from many image pairs. No ROS.

Thermal and visible intensities are unrelated (a warm wall may be dark or bright; polarity flips), but object
outlines show in both. Each frame becomes a *locally normalised gradient magnitude* image (Sobel magnitude
over its neighbourhood mean, so faint night-time edges in the visible frame count as much as strong ones).
Single pairs hold too few shared edges for a reliable fit, so the pairs are split into a few disjoint
subsets and each subset's edge images are summed: the same homography aligns the sums, with far more
structure. The pairs are grouped twice (interleaved, then in consecutive blocks), so each pair is in two
subsets and there are twice as many estimates to take the median of. Each subset is fitted with OpenCV's
ECC (``cv2.findTransformECC``) coarse to fine (:func:`schedule`): for 640-px frames translation and affine
at 1/8 and 1/4 scale, then the homography at 1/4, 1/2 and full scale.

The subsets' estimates must agree: the result is the median of their frame corners, subsets further than
``agreement_px`` (scaled to a 640x480 frame) from it are outliers, and fewer than two agreeing subsets, or
fewer than half, is an error (:class:`RegistrationError`) rather than a wrong matrix. The residual figure is
the median corner distance of the agreeing subsets from the result.

The homography maps thermal pixel coordinates to RGB pixel coordinates (OpenCV pixel centres), the
convention of the node's ``homography`` parameter and of
:func:`sccosf_ros.imaging.resize.warp_thermal_to_rgb`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from sccosf_ros.errors import ConfigError, InputError
from sccosf_ros.imaging.resize import resize_homography
from sccosf_ros.imaging.thermal import percentiles

_T, _A, _H = cv2.MOTION_TRANSLATION, cv2.MOTION_AFFINE, cv2.MOTION_HOMOGRAPHY
MIN_LEVEL_WIDTH = 64  # ECC on fewer columns than this finds too little structure


def schedule(width: int) -> list[tuple[int, int]]:
    """(downscale factor, ECC motion model), coarse to fine: translation and affine on the coarsest two
    levels, the homography from the second; for 640 px wide frames: 1/8 T, 1/8 A, 1/4 A, 1/4 H, 1/2 H, 1 H."""
    factors = [f for f in (8, 4, 2, 1) if width / f >= MIN_LEVEL_WIDTH] or [1]
    out = [(factors[0], _T), (factors[0], _A)]
    if len(factors) == 1:
        return [*out, (factors[0], _H)]
    return [*out, (factors[1], _A), (factors[1], _H), *((f, _H) for f in factors[2:])]


class RegistrationError(InputError):
    """No trustworthy homography: the message says why, in one line."""


@dataclass
class RegistrationConfig:
    """Parameters of :func:`estimate_homography`; the defaults are the ones docs/registration.md measured."""

    blur: float = 1.5  # Gaussian sigma (px) before the gradient: noise and demosaicing artefacts
    local_sigma: float = 16.0  # neighbourhood (px) of the gradient normalisation
    pairs_per_subset: int = 8
    max_subsets: int = 4
    agreement_px: float = 6.0  # subsets within this of the median (mean corner distance, 640x480 frame)
    min_edge_level: float = 2.0  # a frame whose 99th-percentile gradient (grey levels/px) is below: no edges
    ecc_iterations: int = 100
    ecc_epsilon: float = 1e-6
    ecc_smoothing: int = 5  # ECC's own Gaussian (odd kernel size) at full scale
    groupings: int = 2  # 1: each pair in one subset; 2: in two (interleaved, then consecutive blocks)

    def __post_init__(self) -> None:
        if self.pairs_per_subset < 1 or self.max_subsets < 2:
            raise ConfigError("need pairs_per_subset >= 1 and max_subsets >= 2 (agreement needs two subsets)")
        if self.groupings not in (1, 2):
            raise ConfigError(f"groupings must be 1 or 2, got {self.groupings}")
        if not (self.blur > 0 and self.local_sigma > 0 and self.agreement_px > 0):
            raise ConfigError("blur, local_sigma and agreement_px must be > 0")


@dataclass
class SubsetFit:
    """One subset's estimate: which pairs, the ECC correlation, the distance from the result."""

    pairs: list[int]
    homography: np.ndarray | None
    correlation: float | None = None
    deviation_px: float | None = None  # mean corner distance from the result, in RGB pixels
    agrees: bool = False
    error: str | None = None


@dataclass
class Registration:
    """The estimated thermal->RGB homography and the evidence for it."""

    homography: np.ndarray
    thermal_hw: tuple[int, int]
    rgb_hw: tuple[int, int]
    pairs_used: int
    pairs_skipped: dict[str, int]
    subsets: list[SubsetFit] = field(default_factory=list)

    @property
    def agreeing(self) -> list[SubsetFit]:
        return [s for s in self.subsets if s.agrees]

    @property
    def residual_px(self) -> float:
        """Median corner distance (RGB px) of the agreeing subsets from the result."""
        return float(np.median([s.deviation_px for s in self.agreeing]))

    def summary(self) -> str:
        skipped = ", ".join(f"{n} {why}" for why, n in self.pairs_skipped.items() if n)
        return (
            f"{self.pairs_used} pairs in {len(self.subsets)} subsets, {len(self.agreeing)} agree; "
            f"residual {self.residual_px:.2f} px (median corner distance of the subsets from the result)"
            + (f"; skipped: {skipped}" if skipped else "")
        )


def edge_image(gray: np.ndarray, blur: float, local_sigma: float) -> np.ndarray:
    """Locally normalised gradient magnitude (float32): the modality-independent picture of a frame."""
    g = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), blur)
    mag = cv2.magnitude(cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3))
    local = cv2.GaussianBlur(mag, (0, 0), local_sigma)
    return mag / (local + float(np.median(mag)) + 1e-3)


def to_gray255(image: np.ndarray) -> np.ndarray:
    """A frame as float32 grey 0-255: colour by BT.601 luma, 16-bit or float thermal by its 1-99 % range."""
    a = np.asarray(image)
    if a.ndim == 3:
        a = (
            cv2.cvtColor(np.ascontiguousarray(a[:, :, :3]), cv2.COLOR_RGB2GRAY)
            if a.shape[2] >= 3
            else a[:, :, 0]
        )
    if a.dtype == np.uint8:
        return a.astype(np.float32)
    lo, hi = percentiles(a, (1.0, 99.0))
    return np.clip((a.astype(np.float32) - lo) * (255.0 / max(hi - lo, 1e-6)), 0.0, 255.0)


def _has_edges(gray: np.ndarray, level: float) -> bool:
    g = cv2.GaussianBlur(gray, (0, 0), 1.0)
    mag = cv2.magnitude(cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3))
    return float(np.percentile(mag, 99)) / 8.0 >= level  # Sobel 3x3 gains 8 on a unit step


def frame_corners(hw: tuple[int, int]) -> np.ndarray:
    """The four outer pixel centres of an (H, W) frame, (4, 2) float64."""
    h, w = hw
    return np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)


def corner_distance(a: np.ndarray, b: np.ndarray, hw: tuple[int, int]) -> float:
    """Mean distance (px) between where homographies ``a`` and ``b`` put the corners of an (H, W) frame."""
    c = frame_corners(hw)[None]
    pa, pb = cv2.perspectiveTransform(c, a)[0], cv2.perspectiveTransform(c, b)[0]
    return float(np.linalg.norm(pa - pb, axis=1).mean())


def _ecc_steps(
    steps: Sequence[tuple[int, int]],
    images: tuple[np.ndarray, np.ndarray, np.ndarray],
    warp: np.ndarray,
    cfg: RegistrationConfig,
) -> tuple[np.ndarray, float]:
    """ECC ``steps`` from ``warp`` (template -> image coordinates, full scale); the warp, the correlation."""
    template, image, mask = images
    cc = 0.0
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, cfg.ecc_iterations, cfg.ecc_epsilon)
    for factor, motion in steps:
        s = np.diag([1.0 / factor, 1.0 / factor, 1.0]).astype(np.float32)
        shrink = {"fx": 1.0 / factor, "fy": 1.0 / factor}
        t = cv2.resize(template, None, **shrink, interpolation=cv2.INTER_AREA) if factor > 1 else template
        i = cv2.resize(image, None, **shrink, interpolation=cv2.INTER_AREA) if factor > 1 else image
        m = cv2.resize(mask, None, **shrink, interpolation=cv2.INTER_NEAREST) if factor > 1 else mask
        w = s @ warp @ np.linalg.inv(s)
        w = (w / w[2, 2]).astype(np.float32)
        if motion != _H:
            w = np.ascontiguousarray(w[:2])
        cc, w = cv2.findTransformECC(t, i, w, motion, criteria, m, cfg.ecc_smoothing if factor == 1 else 5)
        if w.shape[0] == 2:
            w = np.vstack([w, [0.0, 0.0, 1.0]]).astype(np.float32)
        warp = np.linalg.inv(s) @ w @ s
    return warp.astype(np.float64), float(cc)


def _ecc(template: np.ndarray, image: np.ndarray, mask: np.ndarray, cfg: RegistrationConfig) -> tuple:
    """ECC coarse to fine (:func:`schedule`) from the identity; the image->template homography and the
    final correlation. (Starting the coarsest level from several scales and keeping the best correlation
    was tried: on MSRS it picked wrong starts more often than it rescued a subset.)"""
    warp, cc = _ecc_steps(schedule(template.shape[1]), (template, image, mask), np.eye(3), cfg)
    out = np.linalg.inv(warp)
    return out / out[2, 2], cc


@dataclass
class _Prepared:
    rgb_edges: np.ndarray
    thermal_edges: np.ndarray  # resampled onto the RGB grid
    mask: np.ndarray  # uint8, 255 where the thermal frame has data


def _prepare(
    rgb: np.ndarray, thermal: np.ndarray, mask: np.ndarray | None, cfg: RegistrationConfig
) -> _Prepared | str:
    """Edge images on the RGB grid, or why the pair cannot be used."""
    rgb_g, th_g = to_gray255(rgb), to_gray255(thermal)
    if not (math.isfinite(float(rgb_g.sum())) and math.isfinite(float(th_g.sum()))):
        return "with NaN or inf pixels"
    if not _has_edges(rgb_g, cfg.min_edge_level) or not _has_edges(th_g, cfg.min_edge_level):
        return "with too few edges"
    h, w = rgb_g.shape
    valid = (
        np.full(th_g.shape, 255, np.uint8) if mask is None else (np.asarray(mask) > 0).astype(np.uint8) * 255
    )
    if th_g.shape != (h, w):  # onto the RGB grid first, so that both edge images have one scale
        th_g = cv2.resize(th_g, (w, h), interpolation=cv2.INTER_LINEAR)
        valid = cv2.resize(valid, (w, h), interpolation=cv2.INTER_NEAREST)
    th_edges = edge_image(th_g, cfg.blur, cfg.local_sigma)
    valid = cv2.erode(valid, np.ones((9, 9), np.uint8))  # the gradient is not defined on the frame's edge
    rgb_edges = edge_image(rgb_g, cfg.blur, cfg.local_sigma)
    return _Prepared(rgb_edges, th_edges * (valid > 0), valid)


def _sums(prepared: list[_Prepared], members: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    template = np.sum([prepared[k].rgb_edges for k in members], axis=0, dtype=np.float32)
    image = np.sum([prepared[k].thermal_edges for k in members], axis=0, dtype=np.float32)
    return template, image, np.min([prepared[k].mask for k in members], axis=0)


def _fit_subset(prepared: list[_Prepared], members: list[int], cfg: RegistrationConfig) -> SubsetFit:
    try:
        h, cc = _ecc(*_sums(prepared, members), cfg)
    except cv2.error as exc:
        return SubsetFit(members, None, error=f"ECC did not converge ({str(exc).strip().splitlines()[-1]})")
    if not np.all(np.isfinite(h)):
        return SubsetFit(members, None, error="ECC gave a non-finite matrix")
    return SubsetFit(members, h, correlation=cc)


def _subsets(n: int, cfg: RegistrationConfig) -> list[list[int]]:
    """Disjoint subsets of pairs spread evenly over the input, interleaved (neighbours in time land in
    different subsets). Summing many more than ``pairs_per_subset`` frames blurs the sums into a mean image
    whose structure no longer pins the fit, so at most ``max_subsets * pairs_per_subset`` pairs are used.
    With ``groupings: 2`` the same pairs are grouped again in consecutive blocks: twice the estimates for
    the median (on MSRS: corner error median 4.65 -> 4.27 px, p90 5.73 -> 5.46 px; twice the time)."""
    k = max(2, min(cfg.max_subsets, n // cfg.pairs_per_subset))
    size = max(1, min(cfg.pairs_per_subset, n // k))
    chosen = np.linspace(0, n - 1, k * size).round().astype(int).tolist()
    out = [chosen[i::k] for i in range(k)]
    if cfg.groupings > 1 and size > 1:  # each pair once more, in consecutive blocks
        out += [chosen[i * size : (i + 1) * size] for i in range(k)]
    return out


def _combine(fits: list[SubsetFit], rgb_hw: tuple[int, int], cfg: RegistrationConfig) -> np.ndarray:
    """The median of the subsets' corners; marks which subsets agree with it."""
    ok = [f for f in fits if f.homography is not None]
    if len(ok) < 2:
        raise RegistrationError(f"only {len(ok)} of {len(fits)} subsets converged; " + _errors(fits))
    corners = frame_corners(rgb_hw)
    moved = np.array([cv2.perspectiveTransform(corners[None], f.homography)[0] for f in ok])
    median = np.median(moved, axis=0)
    scale = math.hypot(rgb_hw[0], rgb_hw[1]) / 800.0  # agreement_px is for a 640x480 frame
    for f, m in zip(ok, moved, strict=True):
        f.deviation_px = float(np.linalg.norm(m - median, axis=1).mean())
        f.agrees = f.deviation_px <= cfg.agreement_px * scale
    agreeing = [f for f in ok if f.agrees]
    if len(agreeing) < 2 or len(agreeing) * 2 < len(fits):
        spread = ", ".join(f"{f.deviation_px:.1f}" for f in ok)
        raise RegistrationError(
            f"the pair subsets disagree: corner distances from their median {spread} px (at most "
            f"{cfg.agreement_px * scale:.1f} px wanted); the images may be unrelated, or show too little "
            "structure in both modalities"
        )
    final = np.median(np.array([m for f, m in zip(ok, moved, strict=True) if f.agrees]), axis=0)
    h = cv2.getPerspectiveTransform(corners.astype(np.float32), final.astype(np.float32)).astype(np.float64)
    return h / h[2, 2]


def _errors(fits: list[SubsetFit]) -> str:
    return "; ".join(f.error for f in fits if f.error) or "no error reported"


def estimate_homography(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    config: RegistrationConfig | None = None,
    thermal_masks: Sequence[np.ndarray | None] | None = None,
) -> Registration:
    """Thermal->RGB homography from ``(rgb, thermal)`` frame pairs of one rig (see module docstring).

    ``rgb``: (H, W, 3) RGB order or (H, W) grey; ``thermal``: (h, w) any dtype, any size (its homography is
    returned in its own pixel coordinates). ``thermal_masks``: optional per pair, non-zero where the thermal
    frame holds data (for simulated views with empty borders). All RGB frames must share one size, and all
    thermal frames another.
    """
    cfg = config or RegistrationConfig()
    prepared: list[_Prepared] = []
    skipped: dict[str, int] = {}
    sizes: set[tuple[tuple[int, int], tuple[int, int]]] = set()
    for k, (rgb, thermal) in enumerate(pairs):
        rgb_a, th_a = np.asarray(rgb), np.asarray(thermal)
        if rgb_a.ndim not in (2, 3) or th_a.ndim not in (2, 3) or rgb_a.size == 0 or th_a.size == 0:
            raise RegistrationError(
                f"pair {k}: frames must be (H, W) or (H, W, C), got {rgb_a.shape}, {th_a.shape}"
            )
        sizes.add((rgb_a.shape[:2], th_a.shape[:2]))
        if len(sizes) > 1:
            raise RegistrationError(
                f"pair {k}: frame sizes {sorted(sizes)} differ; one rig has one size each"
            )
        mask = thermal_masks[k] if thermal_masks is not None else None
        got = _prepare(rgb_a, th_a, mask, cfg)
        if isinstance(got, str):
            skipped[got] = skipped.get(got, 0) + 1
        else:
            prepared.append(got)
    if not sizes:
        raise RegistrationError("no image pairs given")
    ((rgb_hw, th_hw),) = sizes
    if len(prepared) < 2:
        detail = ", ".join(f"{n} {why}" for why, n in skipped.items())
        raise RegistrationError(
            f"{len(prepared)} usable pairs (need at least 2; skipped: {detail or 'none'})"
        )
    fits = [_fit_subset(prepared, members, cfg) for members in _subsets(len(prepared), cfg)]
    h_rgb = _combine(fits, rgb_hw, cfg)
    to_rgb_grid = resize_homography(th_hw, rgb_hw) if th_hw != rgb_hw else np.eye(3)
    h = h_rgb @ to_rgb_grid
    used = len({k for f in fits for k in f.pairs})
    return Registration(h / h[2, 2], th_hw, rgb_hw, used, skipped, fits)
