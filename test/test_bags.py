"""Bag tooling: pixel-identical round trips, info, clear errors, synthetic and folder bags."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from sccosf_ros import bags, topics
from sccosf_ros.cli import bag as bag_cli
from sccosf_ros.imaging.encodings import SUPPORTED_ENCODINGS, encoding_info
from sccosf_synth import demo_bag


def _random_image(encoding: str, seed: int, shape: tuple[int, int] = (5, 7)) -> np.ndarray:
    dtype, channels = encoding_info(encoding)
    rng = np.random.default_rng(seed)
    full = shape if channels == 1 else (*shape, channels)
    if dtype.kind == "f":
        image = rng.normal(300.0, 50.0, full).astype(dtype)
        image.flat[0] = np.nan  # dead pixels must survive the trip bit for bit
        return image
    info = np.iinfo(dtype)
    return rng.integers(info.min, int(info.max) + 1, full, dtype=dtype)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_round_trip_every_encoding(tmp_path: Path, storage: str) -> None:
    path = tmp_path / "bag"
    written = {}
    with bags.BagWriter(path, storage) as w:
        for i, enc in enumerate(SUPPORTED_ENCODINGS):
            written[enc] = _random_image(enc, i)
            w.write_image(f"/img/{enc}", written[enc], enc, 10**18 + i, frame_id=f"f{i}", log_time_ns=5 + i)
    topics = [f"/img/{enc}" for enc in SUPPORTED_ENCODINGS]
    seen = list(bags.read_images(path, topics))
    assert [m.topic for m in seen] == topics  # log-time order
    for i, m in enumerate(seen):
        enc = m.topic.split("/")[-1]
        ref = written[enc]
        assert m.encoding == enc and m.frame_id == f"f{i}"
        assert (m.stamp_ns, m.log_time_ns) == (10**18 + i, 5 + i)
        assert m.array.dtype == ref.dtype and m.array.shape == ref.shape
        assert m.array.tobytes() == ref.tobytes(), enc  # bit-identical, NaN included
    info = bags.bag_info(path)
    assert info.storage == storage and info.message_count == len(SUPPORTED_ENCODINGS)
    assert info.topic("/img/mono16").encodings == ["mono16"]
    assert info.topic("/img/rgb8").sizes == ["7x5"]


def test_missing_topic_lists_what_is_there(tmp_path: Path) -> None:
    path = tmp_path / "bag"
    with bags.BagWriter(path) as w:
        w.write_image("/cam/a", np.zeros((4, 4), np.uint8), "mono8", 1)
        w.write_image("/cam/b", np.zeros((4, 4), np.uint8), "mono8", 2)
    with pytest.raises(bags.BagError) as err:
        list(bags.read_images(path, ["/cam/a", "/camera/thermal/image_raw"]))
    text = str(err.value)
    assert "/camera/thermal/image_raw" in text and "/cam/a" in text and "/cam/b" in text
    with pytest.raises(bags.BagError, match="not found"):
        bags.bag_info(tmp_path / "nope")
    with pytest.raises(bags.BagError, match="already exists"):
        bags.BagWriter(path)


def test_bad_encoding_is_a_clear_error(tmp_path: Path) -> None:
    with bags.BagWriter(tmp_path / "bag") as w:
        with pytest.raises(bags.BagError, match="unsupported encoding"):
            w.write_image("/x", np.zeros((2, 2), np.uint8), "yuv422", 1)
        with pytest.raises(bags.BagError, match="needs dtype"):
            w.write_image("/x", np.zeros((2, 2), np.float64), "mono8", 1)
        # A foreign encoding recorded by someone else's driver: readable bag, clear decode error.
        msg = bags.make_image_message(np.zeros((2, 2), np.uint8), "mono8", 1)
        msg.encoding = "bayer_rggb8"
        w.write_raw("/x", bags.IMAGE_TYPE, 1, bytes(bags.TYPESTORE.serialize_cdr(msg, bags.IMAGE_TYPE)))
    with pytest.raises(bags.BagError, match="bayer_rggb8"):
        list(bags.read_images(tmp_path / "bag", ["/x"]))


@pytest.mark.parametrize("thermal_encoding", ["mono8", "16UC1"])
def test_synthetic_bag_rates_offsets_and_labels(tmp_path: Path, thermal_encoding: str) -> None:
    path = tmp_path / "demo"
    rc = demo_bag.main(
        [
            str(path),
            "--seconds",
            "2",
            "--size",
            "48x64",
            "--seed",
            "3",
            "--thermal-encoding",
            thermal_encoding,
        ]
    )
    assert rc == 0
    info = bags.bag_info(path)
    rgb, thermal, labels = (info.topic(t) for t in (topics.CAMERA_RGB, topics.CAMERA_THERMAL, topics.LABELS))
    assert rgb.count == 60 and labels.count == 60 and thermal.count == 17
    assert rgb.rate_hz == pytest.approx(30, rel=0.02) and thermal.rate_hz == pytest.approx(9, rel=0.03)
    assert thermal.encodings == [thermal_encoding] and rgb.encodings == ["rgb8"] and rgb.sizes == ["64x48"]
    msgs = list(bags.read_images(path, [topics.CAMERA_RGB, topics.CAMERA_THERMAL, topics.LABELS]))
    by_topic: dict[str, list[bags.BagImage]] = {}
    for m in msgs:
        by_topic.setdefault(m.topic, []).append(m)
        assert m.log_time_ns > m.stamp_ns  # receipt after capture
    assert [m.stamp_ns for m in by_topic[topics.LABELS]] == [m.stamp_ns for m in by_topic[topics.CAMERA_RGB]]
    assert max(int(m.array.max()) for m in by_topic[topics.LABELS]) <= 8
    rgb_stamps = np.array([m.stamp_ns for m in by_topic[topics.CAMERA_RGB]])
    offsets = [np.abs(rgb_stamps - m.stamp_ns).min() for m in by_topic[topics.CAMERA_THERMAL]]
    assert 0 < max(offsets) < 0.5 / 30 * 1e9 + 5e6  # unsynchronised cameras, nearest RGB within half a frame
    if thermal_encoding == "16UC1":
        assert by_topic[topics.CAMERA_THERMAL][0].array.dtype == np.uint16
        assert int(by_topic[topics.CAMERA_THERMAL][0].array.min()) > 255  # raw counts, not 8-bit


def test_the_old_demo_subcommand_names_its_new_spelling(capsys: pytest.CaptureFixture[str]) -> None:
    assert bag_cli.main(["demo", "out", "--seconds", "2"]) == 2
    assert "sccosf-demo-bag OUT" in capsys.readouterr().err


def test_from_folder_and_info_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    for sub in ("vi", "ir", "lab"):
        (tmp_path / sub).mkdir()
    for name in ("00001D", "00002N"):
        cv2.imwrite(str(tmp_path / "vi" / f"{name}.png"), rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
        cv2.imwrite(str(tmp_path / "ir" / f"{name}.png"), rng.integers(0, 65535, (20, 30), dtype=np.uint16))
        cv2.imwrite(str(tmp_path / "lab" / f"{name}.png"), rng.integers(0, 9, (20, 30), dtype=np.uint8))
    out = tmp_path / "bag"
    argv = [
        "from-folder",
        str(out),
        "--rgb",
        str(tmp_path / "vi"),
        "--thermal",
        str(tmp_path / "ir"),
        "--labels",
        str(tmp_path / "lab"),
        "--rate",
        "5",
        "--storage",
        "sqlite3",
    ]
    assert bag_cli.main(argv) == 0
    thermal = [m for m in bags.read_images(out, [topics.CAMERA_THERMAL])]
    ref = cv2.imread(str(tmp_path / "ir" / "00002N.png"), cv2.IMREAD_UNCHANGED)
    assert thermal[1].encoding == "mono16" and np.array_equal(thermal[1].array, ref)
    assert thermal[1].stamp_ns - thermal[0].stamp_ns == 200_000_000
    capsys.readouterr()
    assert bag_cli.main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "sqlite3" in text and topics.LABELS in text and "mono16" in text
    assert bag_cli.main(["info", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
    # No names in common: the error says how pairs are matched.
    (tmp_path / "ir2").mkdir()
    cv2.imwrite(str(tmp_path / "ir2" / "other.png"), np.zeros((20, 30), np.uint8))
    assert (
        bag_cli.main(
            [
                "from-folder",
                str(tmp_path / "b2"),
                "--rgb",
                str(tmp_path / "vi"),
                "--thermal",
                str(tmp_path / "ir2"),
            ]
        )
        == 2
    )
    assert "file stem" in capsys.readouterr().err
