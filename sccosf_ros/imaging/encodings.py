"""``sensor_msgs/Image`` fields <-> NumPy, with no ROS import.

Why not cv_bridge: it has no wheel here, its distro build fails under NumPy 2, and it refuses the 16-bit
thermal conversions we need. This module is deliberately small: the node passes plain message fields in and
gets arrays out, so the whole path is testable without rclpy.

Conventions
-----------
* Single-channel encodings give ``(H, W)`` arrays, multi-channel ones ``(H, W, C)`` in the channel order the
  encoding names (``bgr8`` stays BGR; use :func:`sccosf_ros.imaging.color.to_rgb` to reorder).
* ``8UC3`` / ``8UC4`` carry no channel order; they decode as 3/4 channels untouched and ``to_rgb`` treats them
  as BGR/BGRA, the OpenCV convention that produced them in practice.
* Zero copy: for little-endian data and one-byte encodings the result is a (possibly strided, read-only
  when the buffer is ``bytes``) view of ``data``; ``np.shares_memory`` holds. Big-endian multi-byte data is
  byte-swapped into a new native array, because most consumers (torch, cv2) reject non-native byte order.
"""

from __future__ import annotations

import array
from dataclasses import dataclass
from typing import Union

import cv2
import numpy as np

from sccosf_ros.errors import InputError

BufferLike = Union[bytes, bytearray, memoryview, array.array, np.ndarray]  # noqa: UP007


class ImageConversionError(InputError):
    """Raised for any image that cannot be converted; the message names the problem."""


# encoding -> (element dtype, channels). Names follow sensor_msgs/image_encodings.hpp (case-sensitive there;
# matched case-insensitively here, because drivers in the wild send "MONO8" and "rgb8" alike).
_ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "mono8": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "8UC3": (np.dtype(np.uint8), 3),
    "8UC4": (np.dtype(np.uint8), 4),
    "16UC1": (np.dtype(np.uint16), 1),
    "16SC1": (np.dtype(np.int16), 1),
    "32FC1": (np.dtype(np.float32), 1),
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_ENCODINGS)
_CANONICAL = {name.lower(): name for name in _ENCODINGS}


def canonical_encoding(encoding: str) -> str:
    """Return the canonical spelling of ``encoding`` or raise, listing what is supported."""
    if not isinstance(encoding, str):
        raise ImageConversionError(f"encoding must be a string, got {type(encoding).__name__}")
    name = _CANONICAL.get(encoding.strip().lower())
    if name is None:
        raise ImageConversionError(
            f"unsupported encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}"
        )
    return name


def encoding_info(encoding: str) -> tuple[np.dtype, int]:
    """``(dtype, channels)`` of an encoding (dtype in native byte order)."""
    return _ENCODINGS[canonical_encoding(encoding)]


def _as_byte_array(data: BufferLike) -> np.ndarray:
    """A flat uint8 view of any buffer rclpy or a user may hand us (no copy when possible)."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ImageConversionError(f"data array must be uint8 bytes, got dtype {data.dtype}")
        return data.reshape(-1)  # a view for contiguous arrays
    if isinstance(data, str):
        raise ImageConversionError("data must be a bytes-like buffer, got str")
    try:
        view = memoryview(data)
    except TypeError:
        raise ImageConversionError(f"data must be a bytes-like buffer, got {type(data).__name__}") from None
    if view.itemsize != 1 or view.ndim != 1 or not view.c_contiguous:
        view = view.cast("B") if view.c_contiguous else memoryview(view.tobytes())
    return np.frombuffer(view, dtype=np.uint8)


def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ImageConversionError(f"{name} must be an integer, got {value!r}")
    return int(value)


def image_to_numpy(
    encoding: str,
    height: int,
    width: int,
    step: int,
    is_bigendian: bool | int,
    data: BufferLike,
    *,
    copy: bool = False,
) -> np.ndarray:
    """Decode raw ``sensor_msgs/Image`` fields into an array (see module docstring for layout).

    ``step`` may exceed ``width * bytes_per_pixel`` (row padding); the padding is skipped by striding, not by
    copying. ``data`` must hold exactly ``step * height`` bytes: a shorter buffer is truncated and a longer
    one means height/step disagree with the payload; both are errors rather than guesses. ``copy=True``
    returns a writable, contiguous array that owns its memory.
    """
    enc = canonical_encoding(encoding)
    dtype, channels = _ENCODINGS[enc]
    height = _check_int("height", height)
    width = _check_int("width", width)
    step = _check_int("step", step)
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"image size must be positive, got {width}x{height} (width x height)")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageConversionError(
            f"step {step} is smaller than width*bytes_per_pixel = {width}*{channels * dtype.itemsize} = "
            f"{row_bytes} for {enc}"
        )
    buf = _as_byte_array(data)
    expected = step * height
    if buf.size < expected:
        raise ImageConversionError(
            f"truncated data: expected step*height = {step}*{height} = {expected} bytes, got {buf.size}"
        )
    if buf.size > expected:
        raise ImageConversionError(
            f"data has {buf.size} bytes but step*height = {step}*{height} = {expected}; "
            "height or step does not match the payload"
        )
    big = bool(is_bigendian) and dtype.itemsize > 1
    wire = dtype.newbyteorder(">" if big else "<")
    shape: tuple[int, ...] = (height, width) if channels == 1 else (height, width, channels)
    strides: tuple[int, ...] = (step, channels * dtype.itemsize)
    if channels > 1:
        strides = (*strides, dtype.itemsize)
    out = np.ndarray(shape, dtype=wire, buffer=buf, offset=0, strides=strides)
    if wire != dtype:  # foreign byte order (big-endian on a little-endian host, or the reverse)
        return out.astype(dtype)
    if copy:
        return np.array(out, dtype=dtype, order="C", copy=True)
    return out


@dataclass(frozen=True)
class ImageFields:
    """Field values for a ``sensor_msgs/Image``.

    ``data`` is an ``array.array('B')``: rclpy's generated setter stores it as is, whereas ``bytes`` is
    copied and, with ``ROS_PYTHON_CHECK_FIELDS=1``, checked byte by byte in Python (measured ~45 ms per
    640x480 rgb8).
    """

    encoding: str
    height: int
    width: int
    step: int
    is_bigendian: int
    data: array.array


def numpy_to_image_fields(image: np.ndarray, encoding: str) -> ImageFields:
    """Encode an array as little-endian, unpadded ``sensor_msgs/Image`` fields, checking it fits ``encoding``.

    The dtype must be exactly the encoding's (no silent casts: a float mask sent as mono8 is a bug upstream).
    Single-channel encodings accept ``(H, W)`` or ``(H, W, 1)``.
    """
    enc = canonical_encoding(encoding)
    dtype, channels = _ENCODINGS[enc]
    if not isinstance(image, np.ndarray):
        raise ImageConversionError(f"expected a numpy array, got {type(image).__name__}")
    if image.ndim == 3 and channels == 1 and image.shape[2] == 1:
        image = image[:, :, 0]
    want_ndim = 2 if channels == 1 else 3
    if image.ndim != want_ndim or (channels > 1 and image.shape[2] != channels):
        want = "(H, W)" if channels == 1 else f"(H, W, {channels})"
        raise ImageConversionError(f"{enc} needs shape {want}, got {image.shape}")
    if image.dtype.newbyteorder("=") != dtype:
        raise ImageConversionError(f"{enc} needs dtype {dtype}, got {image.dtype}")
    height, width = image.shape[:2]
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"image size must be positive, got {width}x{height} (width x height)")
    little = np.ascontiguousarray(image, dtype=dtype.newbyteorder("<"))
    data = array.array("B")
    data.frombytes(little.data.cast("B"))
    return ImageFields(
        encoding=enc,
        height=int(height),
        width=int(width),
        step=int(width * channels * dtype.itemsize),
        is_bigendian=0,
        data=data,
    )


_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def decode_compressed(fmt: str, data: BufferLike) -> tuple[np.ndarray, str]:
    """Decode a ``sensor_msgs/CompressedImage`` payload (JPEG or PNG, any bit depth OpenCV reads).

    Returns ``(array, encoding)``: grey 8/16-bit as ``mono8``/``mono16``, colour as ``rgb8``/``rgba8``
    (converted from OpenCV's BGR so that callers never guess). ``fmt`` (e.g. ``"jpeg"``,
    ``"16UC1; png compressed"``) is used only to skip the 12-byte header of image_transport's
    ``compressedDepth`` format; the codec itself is detected from the payload, since publishers often fill
    ``format`` loosely.
    """
    if not isinstance(fmt, str):
        raise ImageConversionError(f"format must be a string, got {type(fmt).__name__}")
    buf = _as_byte_array(data)
    if buf.size == 0:
        raise ImageConversionError("compressed image has no data")
    if "compresseddepth" in fmt.lower().replace(" ", "") and bytes(buf[:8]) != _PNG_MAGIC and buf.size > 12:
        buf = buf[12:]
    try:
        image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # corrupt streams may raise instead of returning None
        raise ImageConversionError(f"could not decode compressed image ({fmt!r}): {exc}") from None
    if image is None or image.size == 0:
        raise ImageConversionError(
            f"could not decode compressed image ({fmt!r}, {buf.size} bytes): not a valid JPEG/PNG stream"
        )
    if image.ndim == 2:
        if image.dtype == np.uint8:
            return image, "mono8"
        if image.dtype == np.uint16:
            return image, "mono16"
    elif image.dtype == np.uint8 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), "rgb8"
    elif image.dtype == np.uint8 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA), "rgba8"
    raise ImageConversionError(
        f"decoded image has unsupported layout: dtype {image.dtype}, shape {image.shape}"
    )
