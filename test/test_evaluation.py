"""Offline evaluation of a small synthetic bag with the random-weight checkpoint: a complete, sane report."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from sccosf_ros import bags, topics
from sccosf_ros.cli import evaluate as eval_cli
from sccosf_ros.evaluation import EvalConfig, evaluate_bag
from sccosf_ros.metrics.fusion import FUSION_METRICS
from sccosf_ros.report import ContactSheet
from sccosf_synth.demo_bag import SyntheticBagSpec, write_synthetic_bag


@pytest.fixture(autouse=True)
def _restore_torch_threads() -> Iterator[None]:
    """The tests run the engine single-threaded (on 2 shared cores, 2 threads measured up to 100x slower);
    torch's thread count is process-wide, so put it back for whatever test runs next."""
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1.2 s at 120x160: 36 RGB frames (30 Hz), 10 thermal (9 Hz, 16-bit raw counts), 36 labels."""
    path = tmp_path_factory.mktemp("bag") / "small"
    spec = SyntheticBagSpec(seconds=1.2, height=120, width=160, seed=5, thermal_encoding="16UC1")
    write_synthetic_bag(path, spec)
    return path


def test_evaluate_small_bag(small_bag: Path, random_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    cfg = EvalConfig(checkpoint=random_checkpoint, device="cpu", num_threads=1, progress=False)
    report = evaluate_bag(small_bag, out, cfg)

    pairs = report["pairs"]
    assert (pairs["rgb_messages"], pairs["thermal_messages"]) == (36, 10)
    assert pairs["pairs_matched"] == 10  # every thermal frame has an RGB frame within the node's slop
    assert pairs["pairs_evaluated"] + pairs["pairs_rejected"] == pairs["pairs_matched"]
    assert pairs["rgb_unmatched"] + pairs["pairs_matched"] == pairs["rgb_messages"]
    assert pairs["thermal_unmatched"] + pairs["pairs_matched"] == pairs["thermal_messages"]
    assert pairs["skew_ms_abs_max"] < cfg.slop * 1e3

    fusion = report["fusion"]
    assert fusion["frames"] == 10 and len(fusion["per_frame"]) == 10
    for name in FUSION_METRICS:
        assert math.isfinite(fusion["mean"][name]), name
    assert 0 < fusion["mean"]["EN"] <= 8 and fusion["mean"]["SD"] > 0

    seg = report["segmentation"]
    assert seg["frames"] == 10  # labels matched to the RGB frame by exact stamp
    assert 0.0 <= seg["miou"] <= 1.0 and 0.0 <= seg["pixel_accuracy"] <= 1.0
    assert sum(seg["support"].values()) == 10 * 120 * 160
    assert sum(map(sum, seg["confusion_matrix"])) == 10 * 120 * 160

    thr = report["throughput"]
    assert thr["pairs"] == 10 and thr["pairs_per_s"] > 0 and thr["stage_ms_mean"]["infer"] > 0

    # Files: JSON parses (NaN IoUs become null), markdown carries the table, the sheet is an image.
    saved = json.loads((out / "report.json").read_text())
    assert saved["pairs"] == {k: v for k, v in pairs.items()}
    md = (out / "report.md").read_text()
    assert "mIoU" in md and "Qabf" in md and "contact_sheet.png" in md
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[0] > 5 * 60  # five rows with ground truth

    # Output bag: inputs copied, one output per pair on each topic, stamped with the RGB stamps.
    info = bags.bag_info(out / "output_bag")
    for topic in (topics.FUSED, topics.SEGMENTATION, topics.SEGMENTATION_COLOR):
        assert info.topic(topic).count == 10
    assert info.topic(topics.CAMERA_RGB).count == 36 and info.topic(topics.LABELS).count == 36
    assert info.topic(topics.SEGMENTATION).encodings == ["mono8"]
    rgb_stamps = {m.stamp_ns for m in bags.read_images(small_bag, [topics.CAMERA_RGB])}
    masks = list(bags.read_images(out / "output_bag", [topics.SEGMENTATION]))
    assert {m.stamp_ns for m in masks} <= rgb_stamps
    assert all(int(m.array.max()) < 9 for m in masks)


def test_cli_errors_and_no_labels(
    small_bag: Path, random_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = eval_cli.main([str(small_bag), "--out", str(tmp_path / "x"), "--thermal-topic", "/flir/image"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "/flir/image" in err and topics.CAMERA_THERMAL in err  # says what the bag holds
    rc = eval_cli.main(
        [
            str(small_bag),
            "--out",
            str(tmp_path / "y"),
            "--checkpoint",
            str(random_checkpoint),
            "--device",
            "cpu",
            "--threads",
            "1",
            "--label-topic",
            "/nope",
            "--max-pairs",
            "2",
            "--no-bag",
            "--no-progress",
        ]
    )
    assert rc == 0
    report = json.loads((tmp_path / "y" / "report.json").read_text())
    assert report["pairs"]["pairs_evaluated"] == 2 and report["segmentation"] is None
    assert "/nope" in report["segmentation_note"]
    assert not (tmp_path / "y" / "output_bag").exists()


def test_contact_sheet_keeps_evenly_spaced_frames() -> None:
    sheet = ContactSheet(["a"], columns=4, thumb_width=32)
    for i in range(1000):  # as the scorer uses it: rows are built only for frames the sheet keeps
        if sheet.wants_next():
            sheet.add(str(i), {"a": np.full((8, 8), i % 256, np.uint8)})
        else:
            sheet.skip()
    assert 4 <= len(sheet) <= 8  # bounded memory
    kept = [int(c) for c, _ in sheet._kept]
    steps = np.diff(kept)
    assert kept[0] == 0 and len(set(steps.tolist())) == 1  # evenly spaced
    assert kept[-1] >= 1000 - steps[0]  # ... over the whole run
    image = sheet.render()
    assert image is not None and image.dtype == np.uint8 and image.shape[2] == 3


def _write_looped(src: Path, dst: Path, passes: int = 2) -> Path:
    """``src`` as recorded from ``ros2 bag play --loop``: the same header stamps again, log times going on."""
    messages = list(bags.read_raw(src))
    span = messages[-1].log_time_ns - messages[0].log_time_ns + 100_000_000
    with bags.BagWriter(dst) as w:
        for k in range(passes):
            for m in messages:
                w.write_raw(m.topic, m.msgtype, m.log_time_ns + k * span, m.data)
    return dst


def test_looped_bag_pairs_on_every_pass(small_bag: Path, random_checkpoint: Path, tmp_path: Path) -> None:
    looped = _write_looped(small_bag, tmp_path / "looped")
    cfg = EvalConfig(
        checkpoint=random_checkpoint, device="cpu", num_threads=1, progress=False, write_bag=False
    )
    pairs = evaluate_bag(looped, tmp_path / "eval", cfg)["pairs"]
    assert (pairs["rgb_messages"], pairs["thermal_messages"]) == (72, 20)
    assert pairs["pairs_matched"] == 20 and pairs["pairs_evaluated"] == 20  # 10 on each pass
    assert pairs["pairing_resets"] == 1


def test_replay_expects_the_pairs_of_every_pass_of_a_looped_bag(small_bag: Path, tmp_path: Path) -> None:
    """The live replay's survey (ROS-free) counts a looped bag's pairs per pass, not per distinct stamp, and
    tallies outputs against them stamp by stamp."""
    from sccosf_ros.replay.bag_survey import OutputTally, scan_bag
    from sccosf_ros.replay.config import ReplayConfig

    cfg = ReplayConfig()
    once = scan_bag(small_bag, cfg)
    thrice = scan_bag(_write_looped(small_bag, tmp_path / "looped", passes=3), cfg)
    assert once.pairs_expected == 10 and once.resets == 0
    assert thrice.pairs_expected == 30 and thrice.resets == 2
    assert thrice.expected == once.expected and set(thrice.expected_count.values()) == {3}
    got = Counter(dict.fromkeys(once.expected, 2))  # two passes of three came out in full ...
    got[min(once.expected)] += 2  # ... one stamp's output thrice more: one beyond its passes
    tally = OutputTally.count(thrice.expected_count, got)
    assert (tally.received, tally.unexpected, tally.dropped) == (22, 1, 9)
    assert tally.received - tally.unexpected + tally.dropped == thrice.pairs_expected


def test_jpeg_rgb_topic_beside_a_raw_thermal_topic(
    small_bag: Path, random_checkpoint: Path, tmp_path: Path
) -> None:
    """Each input topic may be Image or CompressedImage, as the node's rgb_transport / thermal_transport."""

    mixed = tmp_path / "mixed"
    with bags.BagWriter(mixed) as w:
        for m in bags.read_raw(small_bag):
            if m.topic != topics.CAMERA_RGB:
                w.write_raw(m.topic, m.msgtype, m.log_time_ns, m.data)
                continue
            msg = bags.TYPESTORE.deserialize_cdr(m.data, m.msgtype)
            array, encoding = bags.decode_image(msg, m.msgtype)
            ok, jpeg = cv2.imencode(
                ".jpg", cv2.cvtColor(array, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]
            )
            assert ok and encoding == "rgb8"
            cls = bags.TYPESTORE.types[bags.COMPRESSED_TYPE]
            out = cls(header=msg.header, format="jpeg", data=jpeg.ravel())
            w.write_raw(
                m.topic,
                bags.COMPRESSED_TYPE,
                m.log_time_ns,
                bytes(bags.TYPESTORE.serialize_cdr(out, bags.COMPRESSED_TYPE)),
            )
    cfg = EvalConfig(
        checkpoint=random_checkpoint, device="cpu", num_threads=1, progress=False, write_bag=False
    )
    report = evaluate_bag(mixed, tmp_path / "eval", cfg)
    assert report["pairs"]["pairs_evaluated"] == 10 and not report["pairs"]["rejected_by_kind"]
