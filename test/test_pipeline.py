"""The pipeline without ROS: compressed inputs, what it returns, bad input classified, engine output checks,
the node's pairing window."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from sccosf_ros.errors import ConfigError
from sccosf_ros.imaging.thermal import ThermalNormalizer
from sccosf_ros.pipeline import BadInputError, PairProcessor

PALETTE = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], np.uint8)


class Engine:
    class_names = ("a", "b", "c")
    palette = PALETTE

    def __init__(self, shrink: bool = False) -> None:
        self.shrink = shrink
        self.seen: list[tuple[np.ndarray, np.ndarray]] = []

    def infer(self, rgb: np.ndarray, thermal: np.ndarray) -> SimpleNamespace:
        self.seen.append((rgb, thermal))
        h, w = rgb.shape[:2]
        if self.shrink:
            h //= 2
        return SimpleNamespace(fused=rgb[:h].copy(), mask=np.ones((h, w), np.uint8))

    def close(self) -> None:
        pass


def _processor(engine: Engine, compressed: bool | set[str]) -> PairProcessor:
    outputs = {"fused", "segmentation", "segmentation_color", "overlay"}
    return PairProcessor(engine, ThermalNormalizer(), PALETTE, outputs, compressed=compressed)


def _compressed(img: np.ndarray, ext: str) -> SimpleNamespace:
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return SimpleNamespace(format=ext.lstrip("."), data=buf.tobytes())


def test_compressed_jpeg_rgb_and_16bit_png_thermal() -> None:
    bgr = np.zeros((48, 64, 3), np.uint8)
    bgr[..., 2] = 200  # red in OpenCV's BGR order
    thermal = np.tile(np.linspace(1000, 60000, 32, dtype=np.uint16), (24, 1))
    engine = Engine()
    out = _processor(engine, compressed=True).process(_compressed(bgr, ".jpg"), _compressed(thermal, ".png"))
    rgb, th = engine.seen[0]
    assert rgb.shape == (48, 64, 3) and rgb[..., 0].mean() > 150 and rgb[..., 2].mean() < 50  # RGB order
    assert th.dtype == np.float32 and th.shape == (24, 32) and th.min() >= 0 and th.max() <= 1
    assert set(out.images) == {"fused", "segmentation", "segmentation_color", "overlay"}
    seg = out.images["segmentation_color"]
    assert (seg.encoding, seg.height, seg.width) == ("rgb8", 48, 64)
    assert bytes(seg.data[:3]) == bytes(PALETTE[1])
    assert set(out.timings) == {"convert", "infer", "encode"}
    # it returns what it used: the very arrays the engine was given, and the engine's result
    assert out.rgb is rgb and out.thermal is th and out.result.mask.shape == (48, 64)


def _raw(img: np.ndarray, encoding: str) -> SimpleNamespace:
    return SimpleNamespace(
        encoding=encoding,
        height=img.shape[0],
        width=img.shape[1],
        step=img.strides[0],
        is_bigendian=0,
        data=img.tobytes(),
    )


@pytest.mark.parametrize("compressed", [{"rgb"}, {"thermal"}])
def test_each_stream_may_be_compressed_or_raw(compressed: set[str]) -> None:
    """JPEG RGB with raw 16-bit thermal, and raw RGB with PNG thermal: what real rigs mix."""
    bgr = np.zeros((48, 64, 3), np.uint8)
    bgr[..., 2] = 200
    thermal = np.tile(np.linspace(1000, 60000, 32, dtype=np.uint16), (24, 1))
    rgb_msg = _compressed(bgr, ".jpg") if "rgb" in compressed else _raw(bgr[..., ::-1].copy(), "rgb8")
    th_msg = _compressed(thermal, ".png") if "thermal" in compressed else _raw(thermal, "mono16")
    engine = Engine()
    processor = _processor(engine, compressed=compressed)
    assert processor.compressed == frozenset(compressed)
    processor.process(rgb_msg, th_msg)
    rgb, th = engine.seen[0]
    assert rgb.shape == (48, 64, 3) and rgb[..., 0].mean() > 150 and rgb[..., 2].mean() < 50
    expect = ThermalNormalizer()(thermal)  # PNG is lossless: the same thermal frame either way
    np.testing.assert_allclose(th, expect, atol=1e-6)
    swapped = _raw(thermal, "mono16") if "thermal" in compressed else _compressed(thermal, ".png")
    with pytest.raises(BadInputError) as err:  # each stream is read as what it is declared to be
        processor.process(rgb_msg, swapped)
    assert (err.value.stream, err.value.kind) == ("thermal", "type")
    with pytest.raises(ConfigError, match="streams"):
        _processor(engine, compressed={"depth"})


def test_corrupt_compressed_is_a_decode_error() -> None:
    good = _compressed(np.zeros((8, 8), np.uint8), ".png")
    with pytest.raises(BadInputError) as err:
        _processor(Engine(), compressed=True).process(
            SimpleNamespace(format="jpeg", data=b"\xff\xd8junk"), good
        )
    assert (err.value.stream, err.value.kind) == ("rgb", "decode")


def test_engine_output_of_the_wrong_size_is_refused() -> None:
    rgb = SimpleNamespace(encoding="rgb8", height=8, width=8, step=24, is_bigendian=0, data=bytes(192))
    th = SimpleNamespace(encoding="mono8", height=8, width=8, step=8, is_bigendian=0, data=bytes(range(64)))
    with pytest.raises(BadInputError) as err:
        _processor(Engine(shrink=True), compressed=False).process(rgb, th)
    assert err.value.kind == "engine" and "do not match" in str(err.value)


def test_match_window_reports_few_pairs_and_a_silent_input_rate_limited() -> None:
    from sccosf_ros.node.stats import MatchWindow

    w = MatchWindow(window_s=3.0, warn_every_s=10.0)
    assert w.update(0.0, 0, 0, 0) is None
    few = w.update(2.0, 30, 9, 1)  # 9 possible pairs, 1 matched
    assert few is not None and few.silent is None and (few.matched, few.possible) == (1, 9)
    assert w.update(3.0, 60, 18, 18) is None  # pairs form again
    w.reset()
    w.update(10.0, 100, 30, 30)
    silent = w.update(13.0, 190, 30, 30)  # RGB arrives, thermal does not
    assert silent is not None and silent.silent == "thermal" and silent.span_s == 3.0
    assert w.warn_due(13.0) and not w.warn_due(20.0) and w.warn_due(23.0)
