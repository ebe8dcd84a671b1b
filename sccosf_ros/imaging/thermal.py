"""Thermal images to float32 [0, 1] for the network and for display.

Thermal drivers publish raw 16-bit counts (``mono16``/``16UC1``) or ``32FC1`` temperatures, often with NaN for
dead pixels; shown raw they look black. A per-frame min-max stretch flickers whenever a hot object or a single
hot pixel enters the view, so the default is a robust percentile range smoothed over time. 8-bit thermal
images are already display-normalised by the camera (AGC) or the dataset (MSRS), and the model was trained
on them as they are: ``auto`` passes them through (/255) and normalises only deeper data.
"""

from __future__ import annotations

import math

import numpy as np

from sccosf_ros.errors import ConfigError

from .color import BT601_LUMA
from .encodings import ImageConversionError, canonical_encoding

_MODES = ("auto", "percentile", "minmax", "fixed")


def _finite_or_none(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return float(value)


class ThermalNormalizer:
    """Callable mapping a single-channel thermal frame to float32 in [0, 1], same shape.

    Modes:
      * ``auto`` (default): 8-bit frames as ``fixed`` 0-255 (already display-normalised; what the model was
        trained on), anything deeper (raw counts, temperatures) as ``percentile``.
      * ``percentile``: range = the given percentiles of the finite pixels, exponentially smoothed
        over frames (``range = smoothing * previous + (1 - smoothing) * current``) against pumping.
      * ``minmax``: the exact finite min/max of each frame, no smoothing (offline, frame-independent output).
      * ``fixed``: ``low``/``high`` as given; defaults per dtype (uint8 0-255, uint16/int16 full range); float
        input needs an explicit range since temperatures have no natural one.

    Non-finite pixels are ignored for statistics and map to 0. A frame whose range is empty (constant image)
    maps to zeros instead of dividing by zero. Call :meth:`reset` when the camera or stream changes.
    """

    def __init__(
        self,
        mode: str = "auto",
        low: float | None = None,
        high: float | None = None,
        percentiles: tuple[float, float] = (1.0, 99.0),
        smoothing: float = 0.8,
    ) -> None:
        if mode not in _MODES:
            raise ConfigError(f"mode must be one of {_MODES}, got {mode!r}")
        self.low = _finite_or_none("low", low)
        self.high = _finite_or_none("high", high)
        if mode != "fixed" and (self.low is not None or self.high is not None):
            raise ConfigError("low/high apply only to mode='fixed'")
        if self.low is not None and self.high is not None and not self.low < self.high:
            raise ConfigError(f"low must be < high, got low={self.low}, high={self.high}")
        try:
            p_lo, p_hi = (float(p) for p in percentiles)
        except (TypeError, ValueError):
            raise ConfigError(f"percentiles must be two numbers, got {percentiles!r}") from None
        if not (0.0 <= p_lo < p_hi <= 100.0):
            raise ConfigError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles!r}")
        s = _finite_or_none("smoothing", smoothing)
        if s is None or not 0.0 <= s < 1.0:
            raise ConfigError(f"smoothing must be in [0, 1), got {smoothing!r}")
        self.mode = mode
        self.percentiles = (p_lo, p_hi)
        self.smoothing = s
        self._range: tuple[float, float] | None = None

    def reset(self) -> None:
        """Forget the smoothed range (use after a stream switch or a camera flat-field correction)."""
        self._range = None

    @property
    def current_range(self) -> tuple[float, float] | None:
        """The (low, high) used for the last frame, or None before the first frame."""
        return self._range

    def _fixed_range(self, dtype: np.dtype) -> tuple[float, float]:
        low, high = self.low, self.high
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            low = float(info.min) if low is None else low
            high = float(info.max) if high is None else high
        elif low is None or high is None:
            raise ConfigError("mode='fixed' with float input needs both low and high (e.g. in kelvin)")
        if not low < high:
            raise ConfigError(f"low must be < high, got low={low}, high={high}")
        return low, high

    @staticmethod
    def _checked(image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1)):
            raise ImageConversionError(
                f"thermal frame must be (H, W) or (H, W, 1), got {image.shape}; see to_thermal_gray()"
            )
        if image.size == 0:
            raise ImageConversionError("thermal frame is empty")
        if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
            raise ImageConversionError(f"thermal frame must be integer or float, got {image.dtype}")
        return image

    def _measured_range(self, sample: np.ndarray) -> tuple[float, float]:
        """(low, high) of this frame's finite values: min/max, or smoothed percentiles."""
        if self.mode == "minmax":
            return float(sample.min()), float(sample.max())
        low, high = percentiles(sample, self.percentiles)
        if self._range is not None:
            a = self.smoothing
            low = a * self._range[0] + (1.0 - a) * low
            high = a * self._range[1] + (1.0 - a) * high
        return low, high

    def __call__(self, image: np.ndarray) -> np.ndarray:
        image = self._checked(image)
        values = image.astype(np.float32, copy=False)
        finite = None
        if np.issubdtype(image.dtype, np.floating):
            finite = np.isfinite(values)
            if finite.all():
                finite = None
        if self.mode == "fixed" or (self.mode == "auto" and image.dtype == np.uint8):
            low, high = self._fixed_range(image.dtype)
        else:
            if finite is not None:
                sample = values[finite]
            else:  # 8/16-bit integers as they are: percentiles() takes its histogram path
                sample = image if image.dtype in _HISTOGRAM_DTYPES else values
            if sample.size == 0:  # nothing measurable: keep the previous range, show black
                return np.zeros(image.shape, np.float32)
            low, high = self._measured_range(sample)
        self._range = (low, high)
        if not high > low:
            return np.zeros(image.shape, np.float32)
        out = (values - np.float32(low)) * np.float32(1.0 / (high - low))
        np.clip(out, 0.0, 1.0, out=out)
        if finite is not None:
            out[~finite] = 0.0
        return out


_HISTOGRAM_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))


def percentiles(sample: np.ndarray, qs: tuple[float, float]) -> tuple[float, float]:
    """``np.percentile(sample, qs)`` (its default 'linear' method), from a histogram for 8/16-bit unsigned
    images: O(n) instead of a partial sort, 0.4 ms instead of 3 ms for a 640×480 mono16 frame, which the
    node pays on every pair. Same values to float rounding (tested)."""
    if sample.dtype not in _HISTOGRAM_DTYPES:
        low, high = np.percentile(sample, qs)
        return float(low), float(high)
    cumulative = np.bincount(sample.ravel()).cumsum()
    n = int(cumulative[-1])
    out = []
    for q in qs:
        pos = (n - 1) * float(q) / 100.0
        k = math.floor(pos)
        below = int(np.searchsorted(cumulative, k + 1))  # the k-th smallest value (0-based)
        above = int(np.searchsorted(cumulative, min(k + 2, n)))  # the (k+1)-th, or the last
        out.append(below + (above - below) * (pos - k))
    return out[0], out[1]


def to_thermal_gray(image: np.ndarray, encoding: str) -> np.ndarray:
    """One channel from a thermal frame that may arrive as colour.

    Many cameras publish grey replicated into ``rgb8``/``bgr8``; then channel 0 is returned exactly.
    Otherwise (a false-colour palette) BT.601 luma of the channels in the encoding's order is used, which is
    monotonic in temperature only for grey-like palettes: prefer the camera's raw 16-bit stream if offered.
    Single-channel input comes back as ``(H, W)`` with its dtype unchanged.
    """
    enc = canonical_encoding(encoding)
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 2:
        return image
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ImageConversionError(f"thermal frame has unsupported shape {image.shape} for {enc}")
    rgb = image[:, :, :3]
    if np.array_equal(rgb[:, :, 0], rgb[:, :, 1]) and np.array_equal(rgb[:, :, 0], rgb[:, :, 2]):
        return np.ascontiguousarray(rgb[:, :, 0])
    weights = np.array(BT601_LUMA, np.float32)
    if enc in ("bgr8", "bgra8", "8UC3", "8UC4"):
        weights = weights[::-1]
    luma = rgb.astype(np.float32) @ weights
    if image.dtype == np.uint8:
        return np.clip(np.rint(luma), 0, 255).astype(np.uint8)
    return luma
