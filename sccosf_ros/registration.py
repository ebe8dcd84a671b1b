"""Estimate the thermal->RGB homography of a camera rig from many image pairs. No ROS.

Thermal and visible intensities are unrelated (a warm wall may be dark or bright; polarity flips), but object
outlines show in both. Each frame becomes a *locally normalised gradient magnitude* image (Sobel magnitude
over its neighbourhood mean, so faint night-time edges in the visible frame count as much as strong ones).
One pair holds too few shared edges for a reliable fit, so one homography is fitted to all pairs at once:
it maximises the mean over pairs of the normalised cross-correlation between the RGB edge image and the
warped thermal one (:mod:`sccosf_ros.registration_fit`, torch, coarse to fine from the identity,
:func:`levels`). Each pair keeps its own sharp edges: summing the pairs' edge images first, as OpenCV's ECC
needs, blurs them (on MSRS, 32 pairs a trial, that method's error of a recovered change was 3.6 px,
this one's 2.1 px; docs/registration.md).

Trust comes from two checks, and failing either is an error (:class:`RegistrationError`), not a wrong
matrix: the pairs are split into two halves (alternate pairs) fitted independently from the identity, whose
results must agree within ``agreement_px`` (corner distance scaled to a 640x480 frame); and under the result
the pairs must correlate better than the same frames mismatched (RGB of one pair, thermal of the next) by
``min_margin``. The halves are fitted on the pyramid's coarser levels only (the check needs no more, and it
halves the time); the result is all pairs refined together on the finest level from the halves' middle.
The residual figure is the distance of the halves from each other.

The homography maps thermal pixel coordinates to RGB pixel coordinates (OpenCV pixel centres), the
convention of the node's ``homography`` parameter and of
:func:`sccosf_ros.imaging.resize.warp_thermal_to_rgb`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from sccosf_ros.errors import ConfigError, InputError
from sccosf_ros.imaging.resize import resize_homography
from sccosf_ros.imaging.thermal import percentiles
from sccosf_ros.registration_fit import corners, fit, mismatched_similarity


def levels(width: int, cfg: RegistrationConfig) -> list[int]:
    """Pyramid factors, coarse to fine: the coarsest level at least ``coarse_width`` columns (for the
    largest motions), the finest the first at most ``fine_width`` (finer levels cost 4x each and did not
    help on MSRS); for 640 px wide frames 8, 4, 2, for 320 px 4, 2, 1."""
    fine = 1
    while width / (fine * 2) >= cfg.fine_width:
        fine *= 2
    out = [fine]
    while width / (out[0] * 2) >= cfg.coarse_width:
        out.insert(0, out[0] * 2)
    return out


class RegistrationError(InputError):
    """No trustworthy homography: the message says why, in one line."""


@dataclass
class RegistrationConfig:
    """Parameters of :func:`estimate_homography`; the defaults are the ones docs/registration.md measured."""

    blur: float = 2.5  # Gaussian sigma (px) before the gradient: noise, demosaicing, fine texture
    local_sigma: float = 16.0  # neighbourhood (px) of the gradient normalisation
    level_blur: float = 1.0  # Gaussian sigma (level px) on each pyramid level: a smoother objective
    coarse_width: int = 64  # columns of the coarsest pyramid level, at least
    fine_width: int = 320  # columns of the finest pyramid level, about
    iterations: int = 30  # LBFGS iterations per level
    agreement_px: float = 12.0  # the halves' results within this (mean corner distance, 640x480 frame)
    min_margin: float = 0.05  # pairs' mean NCC over that of mismatched pairs, at least
    min_edge_level: float = 2.0  # a frame whose 99th-percentile gradient (grey levels/px) is below: no edges

    def __post_init__(self) -> None:
        if not (self.blur > 0 and self.local_sigma > 0 and self.agreement_px > 0 and self.level_blur >= 0):
            raise ConfigError("blur, local_sigma and agreement_px must be > 0, level_blur >= 0")
        if not (self.fine_width >= 1 and self.coarse_width >= 8 and self.iterations >= 1):
            raise ConfigError("need fine_width >= 1, coarse_width >= 8 and iterations >= 1")


@dataclass
class Registration:
    """The estimated thermal->RGB homography and the evidence for it."""

    homography: np.ndarray
    thermal_hw: tuple[int, int]
    rgb_hw: tuple[int, int]
    pairs_used: int
    pairs_skipped: dict[str, int]
    halves_apart_px: float  # corner distance (RGB px) of the two halves' independent (coarse) results
    similarity: float  # the pairs' mean NCC of edge images under the result, finest level
    mismatched_similarity: float  # the same for mismatched pairs (RGB of one, thermal of the next)

    @property
    def residual_px(self) -> float:
        """Half the distance between the halves' results: how far either lies from their middle (RGB px)."""
        return self.halves_apart_px / 2

    def summary(self) -> str:
        skipped = ", ".join(f"{n} {why}" for why, n in self.pairs_skipped.items() if n)
        return (
            f"{self.pairs_used} pairs; two halves of them agree to {self.halves_apart_px:.2f} px (corner "
            f"distance); edge correlation {self.similarity:.3f}, mismatched pairs "
            f"{self.mismatched_similarity:.3f}" + (f"; skipped: {skipped}" if skipped else "")
        )


def _gradient_magnitude(gray: np.ndarray, blur: float) -> np.ndarray:
    """Sobel (3x3) gradient magnitude after a Gaussian of ``blur`` px, float32."""
    g = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), blur)
    return cv2.magnitude(cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3))


def edge_image(gray: np.ndarray, blur: float, local_sigma: float) -> np.ndarray:
    """Locally normalised gradient magnitude (float32): the modality-independent picture of a frame."""
    mag = _gradient_magnitude(gray, blur)
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
    mag = _gradient_magnitude(gray, 1.0)
    return float(np.percentile(mag, 99)) / 8.0 >= level  # Sobel 3x3 gains 8 on a unit step


def corner_distance(a: np.ndarray, b: np.ndarray, hw: tuple[int, int]) -> float:
    """Mean distance (px) between where homographies ``a`` and ``b`` put the corners of an (H, W) frame."""
    c = corners(hw)[None]
    pa, pb = cv2.perspectiveTransform(c, a)[0], cv2.perspectiveTransform(c, b)[0]
    return float(np.linalg.norm(pa - pb, axis=1).mean())


@dataclass
class _Prepared:
    rgb_edges: np.ndarray
    thermal_edges: np.ndarray  # resampled onto the RGB grid
    mask: np.ndarray  # float32, 1 where the thermal frame has data


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
    valid = cv2.erode(valid, np.ones((9, 9), np.uint8))  # the gradient is not defined on the frame's edge
    th_edges = edge_image(th_g, cfg.blur, cfg.local_sigma)
    rgb_edges = edge_image(rgb_g, cfg.blur, cfg.local_sigma)
    return _Prepared(rgb_edges, th_edges, (valid > 0).astype(np.float32))


def _batch(prepared: Sequence[_Prepared]) -> tuple[list, list, list]:
    return [p.rgb_edges for p in prepared], [p.thermal_edges for p in prepared], [p.mask for p in prepared]


def _middle(a: np.ndarray, b: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """The homography whose frame corners lie midway between those of ``a`` and ``b``."""
    c = corners(hw)[None]
    mid = (cv2.perspectiveTransform(c, a)[0] + cv2.perspectiveTransform(c, b)[0]) / 2
    return cv2.getPerspectiveTransform(c[0].astype(np.float32), mid.astype(np.float32)).astype(np.float64)


def _joint_fit(prepared: list[_Prepared], cfg: RegistrationConfig) -> tuple[np.ndarray, float, float, float]:
    """G (RGB -> thermal, RGB grid), the halves' distance, the pairs' and mismatched pairs' NCC; raises
    when the halves disagree or the pairs correlate no better than mismatched ones."""
    hw = prepared[0].rgb_edges.shape
    factors = levels(hw[1], cfg)
    coarse = factors[:-1] or factors
    halves = [
        fit(_batch(prepared[k::2]), np.eye(3), coarse, cfg.level_blur, cfg.iterations)[0] for k in (0, 1)
    ]
    apart = corner_distance(halves[0], halves[1], hw)
    allowed = cfg.agreement_px * math.hypot(*hw) / 800.0  # agreement_px is for a 640x480 frame
    if apart > allowed:
        raise RegistrationError(
            f"two halves of the pairs give results {apart:.1f} px apart (corner distance; at most "
            f"{allowed:.1f} px wanted): the images may be unrelated, or show too little structure in both "
            "modalities"
        )
    g, score = fit(_batch(prepared), _middle(*halves, hw), factors[-1:], cfg.level_blur, cfg.iterations)
    wrong = mismatched_similarity(_batch(prepared), g, factors[-1], cfg.level_blur)
    if score < wrong + cfg.min_margin:
        raise RegistrationError(
            f"the pairs' edges correlate no better than mismatched pairs' ({score:.3f} against {wrong:.3f}, "
            f"at least {cfg.min_margin} more wanted): the images may be unrelated"
        )
    return g, apart, score, wrong


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
        if rgb_a.ndim not in (2, 3) or th_a.ndim not in (2, 3) or min(*rgb_a.shape[:2], *th_a.shape[:2]) < 16:
            raise RegistrationError(
                f"pair {k}: frames must be (H, W) or (H, W, C), at least 16x16, "
                f"got {rgb_a.shape}, {th_a.shape}"
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
    g, apart, score, wrong = _joint_fit(prepared, cfg)
    h_rgb = np.linalg.inv(g)
    to_rgb_grid = resize_homography(th_hw, rgb_hw) if th_hw != rgb_hw else np.eye(3)
    h = h_rgb @ to_rgb_grid
    return Registration(h / h[2, 2], th_hw, rgb_hw, len(prepared), skipped, apart, score, wrong)
