"""Tests for the ROS-free image I/O (sccosf_ros.imaging)."""

from __future__ import annotations

import array
import itertools
import sys

import cv2
import numpy as np
import pytest

from sccosf_ros.imaging import (
    MSRS_CLASSES,
    MSRS_PALETTE,
    SUPPORTED_ENCODINGS,
    ImageConversionError,
    ThermalNormalizer,
    colorize_mask,
    decode_compressed,
    image_to_numpy,
    numpy_to_image_fields,
    overlay,
    parse_palette,
    resize_homography,
    rgb_to_ycbcr,
    to_rgb,
    to_thermal_gray,
    warp_thermal_to_rgb,
    ycbcr_to_rgb,
)
from sccosf_ros.imaging.encodings import encoding_info
from sccosf_ros.imaging.thermal import percentiles

RNG = np.random.default_rng(0)


def _random_image(encoding: str, h: int = 5, w: int = 7) -> np.ndarray:
    dtype, ch = encoding_info(encoding)
    shape = (h, w) if ch == 1 else (h, w, ch)
    if dtype.kind == "f":
        return RNG.normal(300.0, 20.0, shape).astype(dtype)
    info = np.iinfo(dtype)
    return RNG.integers(info.min, int(info.max) + 1, shape, dtype=dtype)


def _pack(image: np.ndarray, pad: int, big: bool) -> tuple[bytes, int]:
    """Serialise like a publisher would: rows of width*bpp bytes followed by `pad` junk bytes."""
    order = ">" if big else "<"
    raw = np.ascontiguousarray(image, dtype=image.dtype.newbyteorder(order))
    rows = raw.reshape(image.shape[0], -1).view(np.uint8)
    junk = np.full((image.shape[0], pad), 0xAB, np.uint8)
    padded = np.concatenate([rows, junk], axis=1)
    return padded.tobytes(), padded.shape[1]


@pytest.mark.parametrize("encoding", SUPPORTED_ENCODINGS)
@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize("big", [False, True])
def test_round_trip_every_encoding(encoding: str, pad: int, big: bool) -> None:
    image = _random_image(encoding)
    data, step = _pack(image, pad, big)
    decoded = image_to_numpy(encoding, image.shape[0], image.shape[1], step, big, data)
    assert decoded.dtype == image.dtype and decoded.dtype.isnative
    np.testing.assert_array_equal(decoded, image)
    fields = numpy_to_image_fields(decoded, encoding)
    assert (fields.height, fields.width, fields.is_bigendian) == (*image.shape[:2], 0)
    again = image_to_numpy(fields.encoding, fields.height, fields.width, fields.step, 0, fields.data)
    np.testing.assert_array_equal(again, image)


def test_rclpy_style_array_and_zero_copy() -> None:
    image = _random_image("mono16", 4, 6)
    data, step = _pack(image, 2, big=sys.byteorder == "big")
    buf = array.array("B", data)  # what rclpy hands over in msg.data
    out = image_to_numpy("16UC1", 4, 6, step, sys.byteorder == "big", buf)
    np.testing.assert_array_equal(out, image)
    assert np.shares_memory(out, np.frombuffer(buf, np.uint8))
    copied = image_to_numpy("16UC1", 4, 6, step, sys.byteorder == "big", buf, copy=True)
    assert not np.shares_memory(copied, np.frombuffer(buf, np.uint8)) and copied.flags.c_contiguous
    rgb = _random_image("rgb8")
    raw = bytearray(rgb.tobytes())
    view = image_to_numpy("rgb8", 5, 7, 21, 0, raw)
    assert np.shares_memory(view, np.frombuffer(raw, np.uint8))


def test_bigendian_float_is_swapped_to_native() -> None:
    temps = np.array([[300.5, np.nan], [-np.inf, 1e-3]], np.float32)
    out = image_to_numpy("32FC1", 2, 2, 8, True, temps.astype(">f4").tobytes())
    assert out.dtype == np.float32 and out.dtype.isnative
    np.testing.assert_array_equal(out, temps)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("yuv422", 2, 2, 4, 0, bytes(8)), "unsupported encoding 'yuv422'; supported: mono8"),
        (("mono8", 0, 0, 0, 0, b""), "must be positive"),
        (("mono8", -1, 2, 2, 0, b""), "must be positive"),
        (("mono16", 2, 4, 7, 0, bytes(14)), "step 7 is smaller than"),
        (("rgb8", 2, 2, 6, 0, bytes(11)), "truncated data: expected step*height = 6*2 = 12 bytes, got 11"),
        (("mono8", 2, 2, 2, 0, bytes(5)), "height or step does not match"),
        (("mono8", 2, 2, 2.0, 0, bytes(4)), "step must be an integer"),
        (("mono8", 2, 2, 2, 0, "abcd"), "bytes-like"),
        (("mono8", 2, 2, 2, 0, np.zeros(4, np.int32)), "must be uint8"),
    ],
)
def test_bad_fields_raise_clear_errors(args: tuple, message: str) -> None:
    with pytest.raises(ImageConversionError) as err:
        image_to_numpy(*args)
    assert message in str(err.value)
    assert isinstance(err.value, ValueError)


def test_numpy_to_image_fields_validates() -> None:
    with pytest.raises(ImageConversionError, match="needs dtype uint16"):
        numpy_to_image_fields(np.zeros((2, 2), np.uint8), "mono16")
    with pytest.raises(ImageConversionError, match=r"needs shape \(H, W, 3\)"):
        numpy_to_image_fields(np.zeros((2, 2, 4), np.uint8), "rgb8")
    fields = numpy_to_image_fields(np.zeros((2, 3, 1), np.float32), "32fc1")
    assert (fields.encoding, fields.step, len(fields.data)) == ("32FC1", 12, 24)
    assert isinstance(fields.data, array.array) and fields.data.typecode == "B"


def test_decode_compressed_png16_and_jpeg() -> None:
    raw16 = RNG.integers(0, 65536, (12, 10), dtype=np.uint16)
    ok, png = cv2.imencode(".png", raw16)
    assert ok
    out, enc = decode_compressed("16UC1; png compressed", array.array("B", png.tobytes()))
    assert enc == "mono16"
    np.testing.assert_array_equal(out, raw16)
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = 200  # pure-ish red, so a BGR/RGB swap would show
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out, enc = decode_compressed("jpeg", jpg.tobytes())
    assert enc == "rgb8" and out.shape == (16, 16, 3)
    assert np.abs(out.astype(int) - rgb).max() <= 3
    with pytest.raises(ImageConversionError, match="not a valid JPEG/PNG"):
        decode_compressed("jpeg", b"definitely not an image" * 10)
    with pytest.raises(ImageConversionError, match="no data"):
        decode_compressed("png", b"")


def test_normalizer_nan_and_constant() -> None:
    temps = np.full((8, 8), 300.0, np.float32)
    temps[0, 0], temps[1, 1], temps[2, 2] = np.nan, np.inf, -np.inf
    norm = ThermalNormalizer()
    out = norm(temps)  # constant finite part: no division by zero
    assert out.dtype == np.float32 and out.shape == temps.shape and np.all(out == 0)
    temps[4:] = 310.0
    out = ThermalNormalizer(mode="minmax")(temps)
    assert np.all(np.isfinite(out)) and out[0, 0] == out[1, 1] == out[2, 2] == 0
    assert out[5, 5] == 1.0 and out[3, 3] == 0.0
    decoded = image_to_numpy("32FC1", 8, 8, 32, 0, temps.tobytes())
    out = ThermalNormalizer()(decoded)
    assert np.all((out >= 0) & (out <= 1)) and out[5, 5] == 1.0
    assert np.all(ThermalNormalizer()(np.full((3, 3), np.nan, np.float32)) == 0)


def test_normalizer_fixed_defaults_and_validation() -> None:
    raw = np.array([[0, 32768, 65535]], np.uint16)
    np.testing.assert_allclose(ThermalNormalizer("fixed")(raw), [[0, 32768 / 65535, 1]], rtol=1e-6)
    np.testing.assert_allclose(
        ThermalNormalizer("fixed", 290, 310)(np.float32([[280, 300, 320]])), [[0, 0.5, 1]]
    )
    with pytest.raises(ValueError, match="needs both low and high"):
        ThermalNormalizer("fixed")(np.zeros((2, 2), np.float32))
    for kwargs, msg in [
        ({"mode": "bogus"}, "mode must be one of"),
        ({"mode": "fixed", "low": 5, "high": 5}, "low must be < high"),
        ({"low": 1.0}, "only to mode='fixed'"),
        ({"percentiles": (99, 1)}, "0 <= low < high <= 100"),
        ({"smoothing": 1.0}, r"smoothing must be in \[0, 1\)"),
        ({"mode": "fixed", "low": float("nan"), "high": 1}, "finite"),
    ]:
        with pytest.raises(ValueError, match=msg):
            ThermalNormalizer(**kwargs)
    with pytest.raises(ImageConversionError, match="to_thermal_gray"):
        ThermalNormalizer()(np.zeros((2, 2, 3), np.uint8))


def test_auto_mode_passes_8bit_through_and_normalises_deeper_data() -> None:
    """8-bit thermal is display-normalised already (and is what the model trained on); raw counts are not."""
    img8 = np.array([[10, 20], [30, 40]], np.uint8)
    np.testing.assert_allclose(ThermalNormalizer()(img8), img8 / 255.0, rtol=1e-6)
    raw = np.array([[3000, 3100], [3200, 3300]], np.uint16)
    auto = ThermalNormalizer(smoothing=0.0)(raw)
    np.testing.assert_allclose(auto, ThermalNormalizer("percentile", smoothing=0.0)(raw), rtol=1e-6)
    assert auto.min() == 0.0 and auto.max() == 1.0


def _flicker(norm: ThermalNormalizer, frames: list[np.ndarray]) -> float:
    """Largest frame-to-frame change of the mean output over the static bottom half of the view."""
    outs = [float(norm(f)[24:].mean()) for f in frames]
    return max(abs(b - a) for a, b in itertools.pairwise(outs))


def test_percentile_smoothing_reduces_flicker() -> None:
    base = np.tile(np.linspace(3000, 5000, 64, dtype=np.float32), (48, 1)).astype(np.uint16)
    frames = [base.copy() for _ in range(12)]
    frames[5][10, 10] = 65535  # one hot pixel in one frame
    frames[7][:24] += 1500  # a warm object covers the top half for one frame: the robust range itself moves
    minmax = ThermalNormalizer("minmax")
    percentile = ThermalNormalizer(smoothing=0.0)
    # A single hot pixel wrecks min-max for a frame but not the percentile range.
    assert _flicker(minmax, frames[4:7]) > 0.3
    assert _flicker(percentile, frames[4:7]) < 1e-3
    # The static background should not pump when the range moves for one frame.
    flicker_raw = _flicker(ThermalNormalizer(smoothing=0.0), frames)
    flicker_smooth = _flicker(ThermalNormalizer(smoothing=0.8), frames)
    assert flicker_raw > 0.1
    assert flicker_smooth < 0.4 * flicker_raw


def test_to_thermal_gray() -> None:
    grey = RNG.integers(0, 256, (4, 5), dtype=np.uint8)
    np.testing.assert_array_equal(to_thermal_gray(np.dstack([grey] * 3), "rgb8"), grey)
    bgr = np.zeros((1, 1, 3), np.uint8)
    bgr[0, 0] = (255, 0, 0)  # pure blue in BGR order
    assert to_thermal_gray(bgr, "bgr8")[0, 0] == round(0.114 * 255)
    assert to_thermal_gray(grey[:, :, None], "mono8").shape == (4, 5)


def test_to_rgb_orders_channels() -> None:
    px = np.array([[[10, 20, 30]]], np.uint8)
    np.testing.assert_array_equal(to_rgb(px, "bgr8"), [[[30, 20, 10]]])
    np.testing.assert_array_equal(to_rgb(px, "rgb8"), px)
    np.testing.assert_array_equal(to_rgb(np.array([[[10, 20, 30, 40]]], np.uint8), "bgra8"), [[[30, 20, 10]]])
    np.testing.assert_array_equal(to_rgb(np.array([[[10, 20, 30, 40]]], np.uint8), "rgba8"), [[[10, 20, 30]]])
    np.testing.assert_array_equal(to_rgb(np.array([[65535, 0]], np.uint16), "mono16")[0, :, 0], [255, 0])
    np.testing.assert_array_equal(to_rgb(np.array([[7]], np.uint8), "mono8"), [[[7, 7, 7]]])
    with pytest.raises(ImageConversionError):
        to_rgb(np.zeros((2, 2), np.uint16), "rgb8")


def test_ycbcr_round_trip_and_known_values() -> None:
    rgb = RNG.random((6, 5, 3))
    np.testing.assert_allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-12)
    ycc = rgb_to_ycbcr(np.array([1.0, 1.0, 1.0]))
    np.testing.assert_allclose(ycc, [1.0, 0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose(rgb_to_ycbcr(np.array([1.0, 0.0, 0.0])), [0.299, 0.331264, 1.0], atol=1e-6)
    # OpenCV implements the same BT.601 full-range transform with constants rounded to 3 digits.
    ref = cv2.cvtColor(np.float32(rgb), cv2.COLOR_RGB2YCrCb)[..., [0, 2, 1]]
    np.testing.assert_allclose(rgb_to_ycbcr(np.float32(rgb)), ref, atol=5e-4)


def test_palette_and_colorize() -> None:
    assert len(MSRS_CLASSES) == len(MSRS_PALETTE) == 9 and MSRS_CLASSES[2] == "person"
    assert tuple(MSRS_PALETTE[1]) == (64, 0, 128)
    parsed = parse_palette(["#400080", 0x404000, [0, 128, 192], "0xff0000"])
    np.testing.assert_array_equal(parsed, [[64, 0, 128], [64, 64, 0], [0, 128, 192], [255, 0, 0]])
    for bad in (["#12345"], [2**24], [[1, 2]], [True], [], "#ffffff"):
        with pytest.raises(ValueError):
            parse_palette(bad)
    mask = np.array([[0, 1, 8], [9, 255, 2]], np.uint8)
    colours = colorize_mask(mask, MSRS_PALETTE)
    assert colours.shape == (2, 3, 3) and colours.dtype == np.uint8
    np.testing.assert_array_equal(colours[0], MSRS_PALETTE[[0, 1, 8]])
    np.testing.assert_array_equal(colours[1, :2], [[255, 255, 255]] * 2)
    np.testing.assert_array_equal(
        colorize_mask(mask.astype(np.int64) - 1, MSRS_PALETTE)[0, 0], [255, 255, 255]
    )
    np.testing.assert_array_equal(colorize_mask(mask.astype(np.int64), MSRS_PALETTE), colours)
    # The uint8 fast path (OpenCV's LUT) on a strided view and an empty mask, against the general path.
    big = np.random.default_rng(0).integers(0, 12, (48, 64), dtype=np.uint8)[:, ::3]
    np.testing.assert_array_equal(
        colorize_mask(big, MSRS_PALETTE), colorize_mask(big.astype(np.int64), MSRS_PALETTE)
    )
    assert colorize_mask(np.zeros((0, 4), np.uint8), MSRS_PALETTE).shape == (0, 4, 3)


def test_percentiles_of_integer_images_equal_numpys() -> None:
    """The histogram path for 8/16-bit frames gives np.percentile's 'linear' values."""
    rng = np.random.default_rng(1)
    for dtype, top in ((np.uint8, 256), (np.uint16, 65536), (np.uint16, 300)):
        for shape in ((1, 1), (3, 5), (120, 160)):
            image = rng.integers(0, top, shape, dtype=dtype)
            for qs in ((1.0, 99.0), (0.0, 100.0), (0.5, 99.5), (37.0, 38.0)):
                np.testing.assert_allclose(percentiles(image, qs), np.percentile(image, qs), rtol=1e-12)
    floats = rng.random((30, 40)).astype(np.float32)
    np.testing.assert_allclose(percentiles(floats, (1.0, 99.0)), np.percentile(floats, (1.0, 99.0)))


def test_overlay() -> None:
    rgb = np.full((2, 2, 3), 100, np.uint8)
    colour = np.full((2, 2, 3), 200, np.uint8)
    assert np.all(overlay(rgb, colour, 0.5) == 150)
    keep = np.array([[True, False], [False, False]])
    out = overlay(rgb, colour, 0.25, mask=keep)
    assert out[0, 0, 0] == 125 and out[1, 1, 0] == 100
    with pytest.raises(ValueError, match="alpha"):
        overlay(rgb, colour, 1.5)


def test_warp_identity_equals_resize() -> None:
    thermal = RNG.random((12, 16)).astype(np.float32)
    assert warp_thermal_to_rgb(thermal, (12, 16, 3)) is thermal
    # The identity is not warped at all (cv2.warpPerspective's identity is not bit-exact on every CPU).
    assert warp_thermal_to_rgb(thermal, (12, 16), np.eye(3)) is thermal
    assert (
        warp_thermal_to_rgb(thermal, (12, 16), 2.0 * np.eye(3)) is thermal
    )  # H is normalised to H[2, 2] = 1
    near = np.eye(3) + np.array([[0, 0, 1e-3], [0, 0, 0], [0, 0, 0]])  # a thousandth of a pixel is warped
    np.testing.assert_allclose(
        warp_thermal_to_rgb(thermal, (12, 16), near)[:, :-1], thermal[:, :-1], atol=1e-3
    )
    resized = warp_thermal_to_rgb(thermal, (24, 32))
    np.testing.assert_array_equal(resized, cv2.resize(thermal, (32, 24)))  # the same cv2 call on both sides
    # The resize-equivalent homography reproduces cv2.resize away from the border (interior pixels).
    warped = warp_thermal_to_rgb(thermal, (24, 32), resize_homography((12, 16), (24, 32)))
    np.testing.assert_allclose(warped[1:-1, 1:-1], resized[1:-1, 1:-1], atol=1 / 32)
    for bad in (np.zeros((3, 3)), np.full((3, 3), np.nan), np.eye(2), np.diag([1.0, 1.0, 0.0])):
        with pytest.raises(ValueError):
            warp_thermal_to_rgb(thermal, (24, 32), bad)
