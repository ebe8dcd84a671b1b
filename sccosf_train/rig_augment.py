"""Camera-rig randomisation: what differs between two thermal + RGB rigs, drawn at random in training.

Why: a model that learned one rig (MSRS) learned that rig's sensors as much as its scenes. On another rig
(RoadScene: a FLIR Tau2 behind its own 8-bit AGC, another visible camera, JPEG, smaller objects) sun-warmed
vegetation is as bright as people were on MSRS, and the model paints person over it. Each operator below
imitates one sensor property that varies between rigs and carries no information about the scene:

* thermal: the 8-bit AGC curve (linear re-stretch, gamma, global histogram equalisation, CLAHE as FLIR's
  local-contrast modes do), gain/offset drift, temporal and column (fixed-pattern) noise, blur, resolution,
  JPEG;
* visible: exposure, white balance, gamma, saturation, noise, blur, resolution, JPEG.

Geometry (scale, aspect, crop, flip) stays in :mod:`sccosf_train.augment`, applied once to all arrays; these
operators only change pixel values of one modality, on uint8 images, before the conversion to float.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class RigRandomization:
    """Probabilities and ranges of each operator (defaults: what the cross-rig model trained with)."""

    thermal_agc: float = 0.8  # probability of re-drawing the AGC curve
    thermal_blur: float = 0.3
    thermal_noise: float = 0.03  # max std of temporal noise, in 8-bit units / 255
    thermal_fpn: float = 0.3  # probability of column fixed-pattern noise
    thermal_resample: float = 0.3  # probability of a down-up resampling (0.35–1 of the size)
    thermal_jpeg: float = 0.3
    visible_wb: float = 0.2  # max relative white-balance gain change per channel
    visible_exposure: tuple[float, float] = (0.5, 1.6)
    visible_noise: float = 0.02
    visible_blur: float = 0.2
    visible_resample: float = 0.3
    visible_jpeg: float = 0.4


def _lut(curve: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(curve), 0, 255).astype(np.uint8)


def random_agc(th: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of the 8-bit AGC curves thermal cores ship: linear re-stretch of a percentile range, gamma,
    global histogram equalisation blended with the input, or CLAHE (local contrast)."""
    kind = int(rng.integers(0, 4))
    if kind == 0:  # linear: a different percentile window stretched to 0..255
        lo, hi = np.percentile(th, (rng.uniform(0, 8), rng.uniform(92, 100)))
        x = np.arange(256, dtype=np.float64)
        return cv2.LUT(th, _lut((x - lo) * 255.0 / max(hi - lo, 1.0)))
    if kind == 1:  # gamma
        x = np.arange(256, dtype=np.float64) / 255.0
        return cv2.LUT(th, _lut(255.0 * x ** rng.uniform(0.6, 1.6)))
    if kind == 2:  # plateau-like histogram equalisation: HE blended with the input
        a = rng.uniform(0.3, 1.0)
        return cv2.addWeighted(cv2.equalizeHist(th), a, th, 1.0 - a, 0.0)
    tiles = int(rng.integers(2, 9))
    clahe = cv2.createCLAHE(clipLimit=float(rng.uniform(1.0, 4.0)), tileGridSize=(tiles, tiles))
    return clahe.apply(th)


def _blur(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), sigmaX=float(rng.uniform(0.4, 1.4)))


def _resample(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Down to 35–100 % of the size and back: a lower-resolution sensor seen at this one's size."""
    h, w = img.shape[:2]
    f = rng.uniform(0.35, 1.0)
    small = cv2.resize(img, (max(8, round(w * f)), max(8, round(h * f))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _jpeg(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(35, 96))])
    if not ok:  # never expected for uint8 arrays; keep the image rather than fail a training step
        return img
    out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return out.reshape(img.shape)


def _noise(img: np.ndarray, rng: np.random.Generator, max_std: float, columns: bool = False) -> np.ndarray:
    std = rng.uniform(0.0, max_std) * 255.0
    noise = rng.standard_normal(img.shape, dtype=np.float32) * std
    if columns:  # microbolometer column offsets: one value per column, on top of temporal noise
        noise = noise + rng.standard_normal((1, img.shape[1]), dtype=np.float32) * rng.uniform(1.0, 4.0)
    return np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def randomize_thermal(th: np.ndarray, rng: np.random.Generator, cfg: RigRandomization) -> np.ndarray:
    """uint8 (H, W) thermal → the same scene as another rig's thermal camera might show it."""
    if rng.random() < cfg.thermal_agc:
        th = random_agc(th, rng)
    if rng.random() < cfg.thermal_resample:
        th = _resample(th, rng)
    if rng.random() < cfg.thermal_blur:
        th = _blur(th, rng)
    if cfg.thermal_noise > 0:
        th = _noise(th, rng, cfg.thermal_noise, columns=bool(rng.random() < cfg.thermal_fpn))
    if rng.random() < cfg.thermal_jpeg:
        th = _jpeg(th, rng)
    return th


def randomize_visible(rgb: np.ndarray, rng: np.random.Generator, cfg: RigRandomization) -> np.ndarray:
    """uint8 (H, W, 3) RGB → another camera's exposure, white balance, noise, sharpness and compression."""
    wb = rng.uniform(1.0 - cfg.visible_wb, 1.0 + cfg.visible_wb, size=3)
    x = rgb.astype(np.float32) * (wb * rng.uniform(*cfg.visible_exposure)).astype(np.float32)
    rgb = np.clip(x, 0, 255).astype(np.uint8)
    if rng.random() < cfg.visible_resample:
        rgb = _resample(rgb, rng)
    if rng.random() < cfg.visible_blur:
        rgb = _blur(rgb, rng)
    if cfg.visible_noise > 0:
        rgb = _noise(rgb, rng, cfg.visible_noise)
    if rng.random() < cfg.visible_jpeg:
        rgb = _jpeg(rgb, rng)
    return rgb
