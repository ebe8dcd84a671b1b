"""The per-pair pipeline without ROS: message fields in; the engine's inputs, its result and the output
image fields out; bad input classified. The fusion node and the offline evaluator both run it.

Messages are duck-typed (``sensor_msgs/Image``: encoding, height, width, step, is_bigendian, data;
``sensor_msgs/CompressedImage``: format, data), so the rclpy adapter stays a thin shell and the evaluator
feeds the messages it reads from a bag. Every way a frame can be unusable raises :class:`BadInputError` with
a ``kind`` (a short, stable name that diagnostics count) and a message a user can act on.

The pipeline's defaults (pairing tolerance and queue, thermal normalisation) live here, so that the node's
parameter table (``node/params.py``) and the evaluator read one set of numbers.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from sccosf_ros.errors import ConfigError, InputError
from sccosf_ros.imaging.color import colorize_mask, overlay, to_rgb
from sccosf_ros.imaging.encodings import (
    ImageConversionError,
    ImageFields,
    decode_compressed,
    encoding_info,
    image_to_numpy,
    numpy_to_image_fields,
)
from sccosf_ros.imaging.thermal import ThermalNormalizer, to_thermal_gray
from sccosf_ros.pairing import DEFAULT_JUMP_THRESHOLD_S, STREAMS

SYNC_QUEUE_SIZE = 10
"""Approximate-time pairing: queue length per input (the node's ``sync_queue_size`` default)."""
SYNC_SLOP_S = 0.06
"""Approximate-time pairing: largest stamp difference of a pair in seconds (``sync_slop``)."""
SYNC_JUMP_THRESHOLD_S = DEFAULT_JUMP_THRESHOLD_S
"""Approximate-time pairing: a stamp going back by more than this (s) starts a new pass
(``sync_jump_threshold``)."""

OUTPUTS = ("fused", "segmentation", "segmentation_color", "overlay")
#: Without a homography the thermal frame is resized onto the RGB grid; beyond this aspect-ratio factor a
#: plain resize cannot be a registration (e.g. width and height swapped), so the pair is refused.
MAX_ASPECT_FACTOR = 1.5


@dataclass(frozen=True)
class ThermalSettings:
    """How raw thermal frames become [0, 1] (the node's ``thermal_normalization.*`` parameters).

    ``low = high = 0`` in fixed mode means "the dtype's full range".
    """

    mode: str = "auto"
    low: float = 0.0
    high: float = 0.0
    percentiles: tuple[float, float] = (1.0, 99.0)
    smoothing: float = 0.8

    def normalizer(self) -> ThermalNormalizer:
        explicit = self.mode == "fixed" and (self.low, self.high) != (0.0, 0.0)
        return ThermalNormalizer(
            mode=self.mode,
            low=self.low if explicit else None,
            high=self.high if explicit else None,
            percentiles=tuple(self.percentiles),
            smoothing=self.smoothing,
        )


class BadInputError(InputError):
    """A frame or pair that cannot be processed; ``stream`` is rgb, thermal or pair."""

    def __init__(self, stream: str, kind: str, message: str) -> None:
        super().__init__(f"{stream}: {message}")
        self.stream = stream
        self.kind = kind


class Engine(Protocol):
    """What the node needs from :class:`sccosf_ros.engine.FusionEngine` (tests inject fakes)."""

    class_names: list[str]
    palette: np.ndarray

    def infer(self, rgb: np.ndarray, thermal: np.ndarray) -> Any: ...

    def close(self) -> None: ...


def _check_raw(stream: str, msg: Any) -> None:
    """Classify the common header/payload faults before decoding, so each gets its own counter."""
    try:
        dtype, channels = encoding_info(msg.encoding)
    except ImageConversionError as exc:
        raise BadInputError(stream, "encoding", str(exc)) from None
    h, w, step, n = int(msg.height), int(msg.width), int(msg.step), len(msg.data)
    if h <= 0 or w <= 0:
        raise BadInputError(stream, "empty", f"image is {w}x{h} (width x height)")
    row = w * channels * dtype.itemsize
    if step < row:
        raise BadInputError(stream, "step", f"step {step} < width*bytes_per_pixel = {row} for {msg.encoding}")
    if n != step * h:
        raise BadInputError(
            stream, "data_size", f"data has {n} bytes, step*height = {step}*{h} = {step * h} expected"
        )


def decode(stream: str, msg: Any, compressed: bool) -> tuple[np.ndarray, str]:
    """Decode an Image or CompressedImage message to ``(array, encoding)`` or raise BadInputError."""
    try:
        if compressed:
            try:
                return decode_compressed(msg.format, msg.data)
            except ImageConversionError as exc:
                raise BadInputError(stream, "decode", str(exc)) from None
        _check_raw(stream, msg)
        array = image_to_numpy(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, msg.data)
        return array, msg.encoding
    except BadInputError:
        raise
    except AttributeError as exc:  # an Image where a CompressedImage was declared, or the reverse
        kind = "CompressedImage" if compressed else "Image"
        raise BadInputError(stream, "type", f"not a sensor_msgs/{kind}: {exc}") from None
    except (ImageConversionError, ValueError, TypeError) as exc:
        raise BadInputError(stream, "conversion", str(exc)) from None


@dataclass
class Output:
    """Result of one pair: output image fields by name, timings in ms, soft warnings (kind, message), and
    what it used: the engine's inputs (``rgb`` uint8 (H, W, 3), ``thermal`` float32 [0, 1], any size) and
    the engine's result (``fused``, ``mask``, its own ``timings``)."""

    images: dict[str, ImageFields]
    timings: dict[str, float]
    warnings: list[tuple[str, str]] = field(default_factory=list)
    rgb: np.ndarray | None = None
    thermal: np.ndarray | None = None
    result: Any = None


class PairProcessor:
    """Converts one RGB/thermal pair, runs the engine, encodes the wanted outputs.

    Not thread-safe (the thermal normaliser keeps a smoothed range): one worker thread owns it.
    """

    def __init__(
        self,
        engine: Engine,
        normalizer: ThermalNormalizer,
        palette: np.ndarray,
        publish: set[str],
        overlay_alpha: float = 0.5,
        has_homography: bool = False,
        compressed: bool | Collection[str] = False,
    ) -> None:
        unknown = set(publish) - set(OUTPUTS)
        if unknown:
            raise ConfigError(f"unknown outputs {sorted(unknown)}; known: {OUTPUTS}")
        if isinstance(compressed, bool):
            compressed = STREAMS if compressed else ()
        if set(compressed) - set(STREAMS):
            raise ConfigError(f"compressed names streams of {STREAMS}, got {sorted(compressed)}")
        self.engine = engine
        self.normalizer = normalizer
        self.palette = palette
        self.publish = set(publish)
        self.overlay_alpha = overlay_alpha
        self.has_homography = has_homography
        self.compressed = frozenset(compressed)
        """The streams that arrive as ``sensor_msgs/CompressedImage`` (each input may be either)."""

    def prepare(self, rgb_msg: Any, thermal_msg: Any) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
        """Both frames as the engine wants them: RGB uint8 (H, W, 3), thermal float32 [0, 1] (h, w)."""
        warnings: list[tuple[str, str]] = []
        rgb_arr, rgb_enc = decode("rgb", rgb_msg, "rgb" in self.compressed)
        th_arr, th_enc = decode("thermal", thermal_msg, "thermal" in self.compressed)
        try:
            rgb = to_rgb(rgb_arr, rgb_enc)
        except (ImageConversionError, ValueError) as exc:
            raise BadInputError("rgb", "conversion", str(exc)) from None
        try:
            gray = to_thermal_gray(th_arr, th_enc)
        except (ImageConversionError, ValueError) as exc:
            raise BadInputError("thermal", "conversion", str(exc)) from None
        if np.issubdtype(gray.dtype, np.floating):
            finite = np.isfinite(gray)
            bad = int(gray.size - np.count_nonzero(finite))
            if bad == gray.size:
                raise BadInputError("thermal", "nonfinite", f"all {bad} pixels are NaN/inf ({th_enc})")
            if bad:
                warnings.append(("nonfinite", f"thermal: {bad} of {gray.size} pixels NaN/inf, shown as 0"))
        if not self.has_homography:
            ar_rgb = rgb.shape[1] / rgb.shape[0]
            ar_th = gray.shape[1] / gray.shape[0]
            if max(ar_rgb, ar_th) / min(ar_rgb, ar_th) > MAX_ASPECT_FACTOR:
                raise BadInputError(
                    "pair",
                    "size_mismatch",
                    f"thermal {gray.shape[1]}x{gray.shape[0]} and rgb {rgb.shape[1]}x{rgb.shape[0]} "
                    f"differ in aspect ratio by more than {MAX_ASPECT_FACTOR}x; set 'homography' if "
                    "this is intended",
                )
        try:
            thermal = self.normalizer(gray)
        except (ImageConversionError, ValueError) as exc:
            raise BadInputError("thermal", "conversion", str(exc)) from None
        return rgb, thermal, warnings

    def process(self, rgb_msg: Any, thermal_msg: Any) -> Output:
        """The whole pair; ``timings``: convert, infer, encode (ms). The output keeps the engine's inputs and
        result (the evaluator scores exactly what the network saw)."""
        t0 = time.perf_counter()
        rgb, thermal, warnings = self.prepare(rgb_msg, thermal_msg)
        t1 = time.perf_counter()
        try:
            result = self.engine.infer(rgb, thermal)
        except Exception as exc:  # any engine failure is one pair's failure, not the node's
            raise BadInputError("pair", "engine", f"inference failed: {type(exc).__name__}: {exc}") from exc
        t2 = time.perf_counter()
        images: dict[str, ImageFields] = {}
        try:
            mask = np.asarray(result.mask)
            fused_shape = np.shape(result.fused)
            if mask.shape != rgb.shape[:2] or fused_shape != rgb.shape:
                raise ValueError(
                    f"mask {mask.shape} / fused {fused_shape} do not match the RGB input {rgb.shape}"
                )
            if "fused" in self.publish:
                images["fused"] = numpy_to_image_fields(np.asarray(result.fused), "rgb8")
            if "segmentation" in self.publish:
                images["segmentation"] = numpy_to_image_fields(mask, "mono8")
            if self.publish & {"segmentation_color", "overlay"}:
                colour = colorize_mask(mask, self.palette)
                if "segmentation_color" in self.publish:
                    images["segmentation_color"] = numpy_to_image_fields(colour, "rgb8")
                if "overlay" in self.publish:
                    blended = overlay(np.asarray(result.fused), colour, self.overlay_alpha)
                    images["overlay"] = numpy_to_image_fields(blended, "rgb8")
        except (ImageConversionError, ValueError) as exc:
            raise BadInputError("pair", "engine", f"engine output unusable: {exc}") from None
        t3 = time.perf_counter()
        timings = {"convert": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3, "encode": (t3 - t2) * 1e3}
        return Output(images, timings, warnings, rgb, thermal, result)
