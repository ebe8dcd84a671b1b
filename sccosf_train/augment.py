"""Pair-and-label-consistent augmentation for (visible, thermal, labels) triples.

Why one affine matrix: the fusion loss compares the fused image with *both* sources pixel by pixel and the
segmentation loss compares it with the label map, so any geometric change must move all three identically.
We draw one 2x3 matrix (scale, optional horizontal flip, crop offset) and warp every array with it; labels
use nearest-neighbour sampling and fill 255 (ignore) outside the source. Photometric changes are
per-modality on purpose: visible jitter (brightness/contrast/saturation/gamma) mimics exposure, thermal
gain/offset/noise mimics uncalibrated microbolometer counts; neither alters geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from sccosf_train.rig_augment import RigRandomization, randomize_thermal, randomize_visible

IGNORE_INDEX = 255


@dataclass
class AugmentConfig:
    """Ranges of the random augmentation; ``enabled=False`` keeps only the (centre) crop."""

    enabled: bool = True
    scale: tuple[float, float] = (0.5, 1.25)  # relative to the source size, before cropping
    hflip: float = 0.5
    brightness: float = 0.25  # multiplicative, ±
    contrast: float = 0.25
    saturation: float = 0.25
    gamma: tuple[float, float] = (0.8, 1.25)
    thermal_gain: float = 0.15
    thermal_offset: float = 0.05  # in [0, 1] units
    thermal_noise: float = 0.01  # std of added Gaussian noise, [0, 1] units
    aspect: float = 0.0  # anisotropic scale: height/width scale ratio drawn log-uniform in exp(±aspect)
    rig: RigRandomization | None = None  # camera-rig randomisation (sccosf_train.rig_augment), or none


def geometry_matrix(
    rng: np.random.Generator | None, src_hw: tuple[int, int], out_hw: tuple[int, int], cfg: AugmentConfig
) -> np.ndarray:
    """2x3 source→output matrix. Without ``rng`` (or disabled): no scale, centred crop/pad."""
    h, w = src_hw
    oh, ow = out_hw
    if rng is None or not cfg.enabled:
        sx = sy = 1.0
        flip = False
        ox, oy = (w - ow) / 2, (h - oh) / 2
    else:
        # Never scale below what the crop needs by more than the range allows; padding is fine (ignored).
        sx = sy = float(rng.uniform(*cfg.scale)) * max(oh / h, ow / w, 1.0)
        flip = bool(rng.random() < cfg.hflip)
        if cfg.aspect > 0:
            sy *= float(np.exp(rng.uniform(-cfg.aspect, cfg.aspect)))
        sh, sw = h * sy, w * sx
        ox = rng.uniform(0, sw - ow) if sw >= ow else -rng.uniform(0, ow - sw)
        oy = rng.uniform(0, sh - oh) if sh >= oh else -rng.uniform(0, oh - sh)
    if flip:  # x' = sx * (w - 1 - x) - ox
        return np.array([[-sx, 0.0, sx * (w - 1) - ox], [0.0, sy, -oy]], np.float64)
    return np.array([[sx, 0.0, -ox], [0.0, sy, -oy]], np.float64)


def warp_triple(
    rgb: np.ndarray, thermal: np.ndarray, labels: np.ndarray, M: np.ndarray, out_hw: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply the same matrix to all three arrays (identity matrices skip the resampling)."""
    oh, ow = out_hw
    if np.allclose(M, [[1, 0, 0], [0, 1, 0]]) and rgb.shape[:2] == (oh, ow):
        return rgb, thermal, labels
    interp = cv2.INTER_LINEAR  # warpAffine has no INTER_AREA; scales stay >= 0.5 where aliasing is mild
    const = cv2.BORDER_CONSTANT
    rgb = cv2.warpAffine(rgb, M, (ow, oh), flags=interp, borderMode=const, borderValue=0)
    thermal = cv2.warpAffine(thermal, M, (ow, oh), flags=interp, borderMode=const, borderValue=0)
    labels = cv2.warpAffine(
        labels, M, (ow, oh), flags=cv2.INTER_NEAREST, borderMode=const, borderValue=IGNORE_INDEX
    )
    return rgb, thermal, labels


def jitter_visible(rgb: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Float RGB in [0, 1] → jittered float RGB in [0, 1]."""
    x = rgb * rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)
    mean = x.mean()
    x = (x - mean) * rng.uniform(1 - cfg.contrast, 1 + cfg.contrast) + mean
    gray = x.mean(axis=2, keepdims=True)
    x = (x - gray) * rng.uniform(1 - cfg.saturation, 1 + cfg.saturation) + gray
    x = np.clip(x, 0.0, 1.0) ** rng.uniform(*cfg.gamma)
    return x.astype(np.float32)


def jitter_thermal(th: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Float thermal in [0, 1] → gain/offset/noise-perturbed thermal in [0, 1]."""
    x = th * rng.uniform(1 - cfg.thermal_gain, 1 + cfg.thermal_gain)
    x = x + rng.uniform(-cfg.thermal_offset, cfg.thermal_offset)
    if cfg.thermal_noise > 0:
        x = x + rng.standard_normal(th.shape, dtype=np.float32) * cfg.thermal_noise
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def augment_triple(
    rgb: np.ndarray,
    thermal: np.ndarray,
    labels: np.ndarray,
    out_hw: tuple[int, int] | None,
    rng: np.random.Generator | None,
    cfg: AugmentConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 RGB HxWx3, uint8 thermal HxW, uint8 labels HxW → float32 RGB/thermal in [0, 1], uint8 labels.

    ``out_hw=None`` keeps the source size. ``rng=None`` means deterministic (validation): centre crop only.
    """
    if rgb.shape[:2] != thermal.shape[:2] or rgb.shape[:2] != labels.shape[:2]:
        raise ValueError(f"sizes differ: rgb {rgb.shape}, thermal {thermal.shape}, labels {labels.shape}")
    out_hw = tuple(rgb.shape[:2]) if out_hw is None else out_hw  # type: ignore[assignment]
    if rng is not None and cfg.enabled and cfg.rig is not None:  # the sensors first, at their resolution
        rgb, thermal = randomize_visible(rgb, rng, cfg.rig), randomize_thermal(thermal, rng, cfg.rig)
    M = geometry_matrix(rng, rgb.shape[:2], out_hw, cfg)  # type: ignore[arg-type]
    rgb, thermal, labels = warp_triple(rgb, thermal, labels, M, out_hw)  # type: ignore[arg-type]
    rgb_f = rgb.astype(np.float32) / 255.0
    th_f = thermal.astype(np.float32) / 255.0
    if rng is not None and cfg.enabled:
        rgb_f = jitter_visible(rgb_f, rng, cfg)
        th_f = jitter_thermal(th_f, rng, cfg)
    return rgb_f, th_f, labels
