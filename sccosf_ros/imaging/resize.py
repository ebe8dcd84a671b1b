"""Bring the thermal frame onto the RGB camera's pixel grid.

The network needs both modalities on one grid. Without calibration we only resize; with a 3x3 homography
(from ``cv2.findHomography`` on point pairs, thermal pixel -> RGB pixel, OpenCV pixel-centre coordinates) we
warp. :func:`resize_homography` gives the homography equivalent to a plain resize, to compose with a
calibration that was measured at another resolution.
"""

from __future__ import annotations

import cv2
import numpy as np

from sccosf_ros.errors import ConfigError, InputError

from .encodings import ImageConversionError

IDENTITY_ATOL = 1e-9
"""A homography within this of the identity (element-wise) moves no pixel by more than ~1e-6 px on any
camera frame, so it is treated as the identity and not warped."""


def _target_hw(rgb_shape: tuple[int, ...]) -> tuple[int, int]:
    if len(rgb_shape) < 2:
        raise InputError(f"rgb_shape needs at least (H, W), got {rgb_shape!r}")
    h, w = int(rgb_shape[0]), int(rgb_shape[1])
    if h <= 0 or w <= 0:
        raise InputError(f"rgb_shape must be positive, got {rgb_shape!r}")
    return h, w


def resize_homography(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> np.ndarray:
    """Homography that maps src pixel centres onto dst pixel centres as ``cv2.resize`` does.

    ``x_dst = s * x_src + (s - 1) / 2`` with ``s = W_dst / W_src`` (same for y), because OpenCV places pixel
    centres at integer coordinates and aligns image corners, not first-pixel centres.
    """
    sy, sx = dst_hw[0] / src_hw[0], dst_hw[1] / src_hw[1]
    return np.array([[sx, 0.0, (sx - 1) / 2], [0.0, sy, (sy - 1) / 2], [0.0, 0.0, 1.0]])


def validate_homography(homography: np.ndarray) -> np.ndarray:
    """Return the matrix as float64 normalised to ``H[2, 2] = 1`` or raise ValueError if it is unusable."""
    h = np.asarray(homography, dtype=np.float64)
    if h.shape != (3, 3):
        raise ConfigError(f"homography must be 3x3, got shape {h.shape}")
    if not np.all(np.isfinite(h)):
        raise ConfigError("homography contains NaN or inf")
    if abs(h[2, 2]) < 1e-12:
        raise ConfigError("homography has H[2, 2] == 0 (maps the origin to infinity)")
    h = h / h[2, 2]
    if not np.isfinite(np.linalg.cond(h)) or np.linalg.cond(h) > 1e12:
        raise ConfigError("homography is singular (not invertible)")
    return h


def warp_thermal_to_rgb(
    thermal: np.ndarray,
    rgb_shape: tuple[int, ...],
    homography: np.ndarray | None = None,
    interpolation: int = cv2.INTER_LINEAR,
) -> np.ndarray:
    """Resample ``thermal`` (``(H, W)``, any dtype cv2 supports) onto an ``rgb_shape[:2]`` grid.

    No homography: ``cv2.resize`` (a no-op returning the input when sizes match). With one: perspective warp,
    pixels falling outside the thermal view become 0; the identity on equal sizes returns the input unwarped
    (faster, and exact: ``cv2.warpPerspective``'s identity differs from its input in the last float bit with
    some CPU kernels, e.g. AVX-512). Linear interpolation spreads a NaN to its neighbours; normalise
    (NaN -> 0) first if that matters.
    """
    thermal = np.asarray(thermal)
    if thermal.ndim == 3 and thermal.shape[2] == 1:
        thermal = thermal[:, :, 0]
    if thermal.ndim != 2 or thermal.size == 0:
        raise ImageConversionError(f"thermal frame must be a non-empty (H, W) array, got {thermal.shape}")
    h, w = _target_hw(tuple(rgb_shape))
    if thermal.dtype == np.bool_ or thermal.dtype.itemsize > 8:
        raise ImageConversionError(f"cannot resample dtype {thermal.dtype}")
    if homography is None:
        if thermal.shape == (h, w):
            return thermal
        return cv2.resize(np.ascontiguousarray(thermal), (w, h), interpolation=interpolation)
    hom = validate_homography(homography)
    if thermal.shape == (h, w) and np.allclose(hom, np.eye(3), rtol=0.0, atol=IDENTITY_ATOL):
        return thermal
    return cv2.warpPerspective(
        np.ascontiguousarray(thermal),
        hom,
        (w, h),
        flags=interpolation,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
