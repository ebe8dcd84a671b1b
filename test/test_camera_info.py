"""The camera model published with the outputs: binning, ROI and resizing folded into K and P (no ROS)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from sccosf_ros.camera_info import CameraGeometry, CameraInfoCache, CameraInfoError
from sccosf_ros.errors import ConfigError

K = (525.0, 0.0, 319.5, 0.0, 526.0, 239.5, 0.0, 0.0, 1.0)
P = (525.0, 0.0, 319.5, -31.5, 0.0, 526.0, 239.5, 0.0, 0.0, 0.0, 1.0, 0.0)  # Tx = -fx * 6 cm baseline
D = (-0.28, 0.07, 0.001, -0.002, 0.0)
R = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def info(**fields) -> SimpleNamespace:
    """A CameraInfo-like message: 640x480 calibration unless ``fields`` say otherwise."""
    roi = SimpleNamespace(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    for key in ("x_offset", "y_offset", "roi_height", "roi_width"):
        if key in fields:
            setattr(roi, key.removeprefix("roi_"), fields.pop(key))
    base = dict(
        height=480, width=640, distortion_model="plumb_bob", d=D, k=K, r=R, p=P, binning_x=0, binning_y=0
    )
    return SimpleNamespace(**{**base, **fields}, roi=roi)


def project(p: tuple[float, ...], point: np.ndarray) -> np.ndarray:
    uvw = np.reshape(p, (3, 4)) @ np.append(point, 1.0)
    return uvw[:2] / uvw[2]


POINTS = np.array([[0.3, -0.2, 2.0], [-1.0, 0.5, 4.0], [0.0, 0.0, 1.0]])


def test_same_size_passes_the_model_through() -> None:
    g = CameraGeometry.from_msg(info()).fitted(480, 640)
    assert (g.height, g.width, g.k, g.p, g.d, g.r) == (480, 640, K, P, D, R)
    assert g.distortion_model == "plumb_bob" and (g.binning_x, g.binning_y, g.roi) == (0, 0, (0, 0, 0, 0))


def test_an_image_of_another_size_scales_k_and_p() -> None:
    g = CameraGeometry.from_msg(info()).fitted(240, 320)
    assert (g.height, g.width) == (240, 320)
    np.testing.assert_allclose(g.k, [262.5, 0, 159.75, 0, 263.0, 119.75, 0, 0, 1])
    np.testing.assert_allclose(g.p, [262.5, 0, 159.75, -15.75, 0, 263.0, 119.75, 0, 0, 0, 1, 0])
    assert g.d == D and g.r == R  # distortion acts on normalised coordinates: unchanged
    for point in POINTS:  # a point lands where the resized image shows it
        np.testing.assert_allclose(project(g.p, point), project(P, point) * [320 / 640, 240 / 480])
    wide = CameraGeometry.from_msg(info()).fitted(480, 1280)  # non-uniform: x only
    np.testing.assert_allclose(wide.k[:3], np.array(K[:3]) * 2)
    np.testing.assert_allclose(wide.k[3:], K[3:])


@pytest.mark.parametrize(
    ("fields", "shape", "x0", "y0", "bx", "by"),
    [
        ({"binning_x": 2, "binning_y": 2}, (240, 320), 0, 0, 2, 2),
        ({"x_offset": 100, "y_offset": 50, "roi_height": 200, "roi_width": 300}, (200, 300), 100, 50, 1, 1),
        (
            {
                "binning_x": 2,
                "binning_y": 4,
                "x_offset": 100,
                "y_offset": 40,
                "roi_height": 200,
                "roi_width": 300,
            },
            (50, 150),
            100,
            40,
            2,
            4,
        ),
    ],
)
def test_binning_and_roi_are_folded_into_the_model(
    fields: dict, shape: tuple, x0: int, y0: int, bx: int, by: int
) -> None:
    """REP 104: the image shows the ROI (full-resolution pixels) binned; the published model describes that
    image directly, so a point projects to ((u - x_offset) / binning_x, (v - y_offset) / binning_y)."""
    g = CameraGeometry.from_msg(info(**fields)).fitted(*shape)
    assert (g.height, g.width) == shape and (g.binning_x, g.binning_y, g.roi) == (0, 0, (0, 0, 0, 0))
    for point in POINTS:
        u, v = project(P, point)
        np.testing.assert_allclose(project(g.p, point), [(u - x0) / bx, (v - y0) / by])
    np.testing.assert_allclose(g.k[2], (K[2] - x0) / bx)
    np.testing.assert_allclose(g.k[0], K[0] / bx)
    # the reduced model scales on like any other when the output differs again
    half = CameraGeometry.from_msg(info(**fields)).fitted(shape[0] // 2, shape[1] // 2)
    np.testing.assert_allclose(half.k[0], K[0] / bx / 2)


def test_a_model_without_size_is_taken_for_the_published_image() -> None:
    g = CameraGeometry.from_msg(info(height=0, width=0, k=(0.0,) * 9, p=(0.0,) * 12, d=())).fitted(120, 160)
    assert (g.height, g.width, g.k, g.d) == (120, 160, (0.0,) * 9, ())


def test_apply_to_writes_every_field() -> None:
    g = CameraGeometry.from_msg(info(binning_x=2, binning_y=2)).fitted(240, 320)
    out = g.apply_to(info(height=1, width=1, d=(), k=(0.0,) * 9, binning_x=5))
    assert CameraGeometry.from_msg(out) == g


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"k": (float("nan"), *K[1:])}, "NaN"),
        ({"p": P[:9]}, "9, 9, 12"),
        ({"binning_x": -1}, "negative"),
        ({"width": "wide"}, "not a camera_info"),
    ],
)
def test_unusable_camera_info_is_refused(fields: dict, fragment: str) -> None:
    with pytest.raises(CameraInfoError, match=fragment):
        CameraGeometry.from_msg(info(**fields))


def test_cache_finds_by_stamp_or_the_latest() -> None:
    by_stamp = CameraInfoCache("stamp", keep=3)
    latest = CameraInfoCache("latest")
    assert by_stamp.find(1) is None and latest.find(1) is None
    for stamp in range(1, 6):
        by_stamp.add(stamp, f"info{stamp}")
        latest.add(stamp, f"info{stamp}")
    assert by_stamp.find(5) == "info5" and by_stamp.find(3) == "info3"
    assert by_stamp.find(2) is None  # only the last three are kept
    assert by_stamp.find(7) is None  # no camera_info with that stamp
    assert latest.find(7) == "info5" and latest.received == 5
    with pytest.raises(ConfigError, match="stamp"):
        CameraInfoCache("nearest")
