"""sccosf-adapt end to end on tiny rigs (folders and a bag): bounded time, resumable output, clear errors.

The model is the seeded random fixture checkpoint; what is asserted is behaviour (files, records, rounds,
the budget being honoured, errors), not quality: quality is measured on RoadScene in the model card.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sccosf_ros import bags
from sccosf_ros.checkpoint import load_checkpoint, save_checkpoint
from sccosf_ros.engine import FusionEngine
from sccosf_ros.errors import ConfigError
from sccosf_train import adapt
from sccosf_train.adapt_data import AdaptInputError, PairSource, collect_pairs
from sccosf_train.self_labels import SelfLabelRules, self_labels

H, W = 48, 64


def _rig(root: Path, n: int = 5, seed: int = 0) -> tuple[Path, Path]:
    """n pairs: a noisy street with one warm 'person' blob that moves."""
    rng = np.random.default_rng(seed)
    vi, ir = root / "vi", root / "ir"
    vi.mkdir(parents=True)
    ir.mkdir(parents=True)
    for i in range(n):
        th = rng.integers(40, 90, (H, W), dtype=np.uint8)
        th[10:30, 8 + 4 * i : 16 + 4 * i] = 220
        rgb = np.stack([th, th // 2, 255 - th], -1).astype(np.uint8)
        cv2.imwrite(str(vi / f"f{i:02d}.png"), rgb)
        cv2.imwrite(str(ir / f"f{i:02d}.png"), th)
    return vi, ir


def _args(vi: Path, ir: Path, out: Path, ckpt: Path, *extra: str) -> list[str]:
    return ["--rgb", str(vi), "--thermal", str(ir), "--out", str(out), "--checkpoint", str(ckpt),
            "--epochs-per-round", "1", "--threads", "1", *extra]  # fmt: skip


def test_adapt_from_folders_writes_a_model_and_report_and_resumes(
    tmp_path: Path, random_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vi, ir = _rig(tmp_path / "rig")
    out = tmp_path / "out"
    argv = _args(vi, ir, out, random_checkpoint, "--rounds", "1", "--minutes", "10")
    assert adapt.main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["pairs"] == {"adapt": 4, "holdout": 1, "holdout_names": ["f04"]}
    assert len(report["rounds"]) == 1 and report["rounds"][0]["epochs"] == 1 and not report["stopped_by_time"]
    assert 0.0 <= report["changed_share"] <= 1.0
    assert set(report["before"]["fusion"]) == set(report["after"]["fusion"]) and report["before"]["fusion"]
    assert "# sccosf-adapt report" in (out / "report.md").read_text()
    engine = FusionEngine(out / "adapted.safetensors", device="cpu")
    assert engine.meta.training["sccosf_adapt"]["rounds"][0]["round"] == 1
    assert engine.infer(np.zeros((H, W, 3), np.uint8), np.zeros((H, W), np.uint8)).mask.shape == (H, W)
    labels = sorted(p.name for p in (out / "round1" / "labels").iterdir())
    assert labels == ["f00.png", "f01.png", "f02.png", "f03.png"]  # the held-out pair is never labelled
    # the same command again: the round is done, nothing retrains
    stamp = (out / "round1" / "train" / "last.safetensors").stat().st_mtime_ns
    assert adapt.main(argv) == 0
    assert (out / "round1" / "train" / "last.safetensors").stat().st_mtime_ns == stamp
    assert len(json.loads((out / "report.json").read_text())["rounds"]) == 1
    capsys.readouterr()


def test_the_budget_stops_a_run_and_the_same_command_finishes_it(
    tmp_path: Path, random_checkpoint: Path
) -> None:
    vi, ir = _rig(tmp_path / "rig")
    out = tmp_path / "out"
    argv = _args(vi, ir, out, random_checkpoint, "--rounds", "2", "--minutes", "0.001")
    assert adapt.main(argv) == 0
    first = json.loads((out / "report.json").read_text())
    assert first["stopped_by_time"] and [r["round"] for r in first["rounds"]] == [1]
    assert adapt.main(argv) == 0  # resumes with round 2
    second = json.loads((out / "report.json").read_text())
    assert [r["round"] for r in second["rounds"]] == [1, 2]
    assert second["rounds"][1]["teacher"].endswith("round1/train/last_for_rig.safetensors")


def test_user_boxes_become_weak_labels(tmp_path: Path, random_checkpoint: Path) -> None:
    vi, ir = _rig(tmp_path / "rig")
    boxes = tmp_path / "boxes"
    boxes.mkdir()
    (boxes / "f00.txt").write_text("0 0.1875 0.4167 0.125 0.4167\n")  # the blob of f00: x 8..16, y 10..30
    out = tmp_path / "out"
    argv = _args(vi, ir, out, random_checkpoint, "--rounds", "1", "--boxes", str(boxes), "--minutes", "10")
    assert adapt.main(argv) == 0
    label = cv2.imread(str(out / "round1" / "labels" / "f00.png"), cv2.IMREAD_UNCHANGED)
    outside = np.ones(label.shape, bool)
    outside[10:30, 8:16] = False
    assert not np.isin(label[outside], (1, 2, 3)).any()  # boxes taken as the complete list of objects
    assert (label[15:25, 10:14] == 2).all()  # the core of the person box is person


def test_a_bag_gives_pairs_named_by_stamp(tmp_path: Path) -> None:
    vi, ir = _rig(tmp_path / "rig", n=6)
    bag = tmp_path / "pairs.bag"
    bags.write_folder_bag(bag, vi, ir, rate_hz=10.0)
    src = PairSource(bag=str(bag), max_pairs=3)
    names = collect_pairs(src, tmp_path / "pairs")
    assert len(names) == 3 and all(n.isdigit() and len(n) == 19 for n in names)
    assert names == sorted(names)
    th = cv2.imread(str(tmp_path / "pairs" / "ir" / f"{names[0]}.png"), cv2.IMREAD_UNCHANGED)
    assert th.shape == (H, W) and th.dtype == np.uint8
    assert collect_pairs(src, tmp_path / "pairs") == names  # recorded: not collected twice


@pytest.mark.parametrize(
    "case, message",
    [
        ("no_pairs", "share 0 image name"),
        ("missing_checkpoint", "checkpoint"),
        ("bad_minutes", "--minutes"),
        ("no_topic", "/nope"),
        ("aspect", "aspect ratio"),
        ("both_inputs", "either --rgb DIR and --thermal DIR, or a BAG"),
    ],
)
def test_bad_input_is_one_clear_line(
    tmp_path: Path, random_checkpoint: Path, case: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    vi, ir = _rig(tmp_path / "rig")
    out = tmp_path / "out"
    argv = _args(vi, ir, out, random_checkpoint, "--minutes", "1")
    if case == "no_pairs":
        empty = tmp_path / "empty"
        empty.mkdir()
        argv[3] = str(empty)
    elif case == "missing_checkpoint":
        argv[argv.index("--checkpoint") + 1] = str(tmp_path / "nope.safetensors")
    elif case == "bad_minutes":
        argv[argv.index("--minutes") + 1] = "0"
    elif case == "no_topic":
        bag = tmp_path / "b.bag"
        bags.write_folder_bag(bag, vi, ir, rate_hz=10.0)
        argv = [
            str(bag),
            "--thermal-topic",
            "/nope",
            "--out",
            str(out),
            "--checkpoint",
            str(random_checkpoint),
        ]
    elif case == "aspect":
        for p in ir.iterdir():
            cv2.imwrite(str(p), np.zeros((H, 3 * W), np.uint8))
    else:
        argv = [str(tmp_path / "x.bag"), *argv]
    assert adapt.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("sccosf-adapt: error:") and message in err and "Traceback" not in err


def test_self_labels_keep_confident_view_consistent_pixels() -> None:
    p = np.zeros((9, 2, 3), np.float32)
    p[0] = 0.95  # background, confident everywhere ...
    p[1] = 0.05
    p[:, 0, 0] = 0
    p[1, 0, 0], p[0, 0, 0] = 0.95, 0.05  # ... but a confident car at (0, 0)
    p[:, 0, 1] = 0
    p[2, 0, 1], p[0, 0, 1] = 0.7, 0.3  # an unsure person at (0, 1)
    other = p.copy()
    other[:, 1, 2] = 0
    other[4, 1, 2] = 1.0  # one view disagrees at (1, 2): mean background 0.63
    rules = SelfLabelRules(min_conf=0.6, class_conf={1: 0.8, 2: 0.8}, agree=True, shapes={})
    label, rec = self_labels([p, p, other], rules)
    assert label[0, 0] == 1 and label[0, 1] == 255 and label[1, 2] == 255 and label[1, 0] == 0
    assert rec["unsure_objects"] == 1 and rec["views_disagree"] == 1
    assert self_labels([p, p, other], replace(rules, agree=False))[0][1, 2] == 0
    bg, _ = self_labels([p, p, other], replace(rules, unsure_objects="background"))
    assert bg[0, 1] == 0
    with pytest.raises(ValueError, match="unsure_objects"):
        SelfLabelRules(unsure_objects="keep")
    with pytest.raises(ValueError, match="misshapen"):
        SelfLabelRules(misshapen="keep")


def test_self_labels_keep_only_person_shaped_regions() -> None:
    """A standing person is taller than wide: a wide 'person' region (foliage, a window) is not learnt as
    person; by default it is left unlabelled, not taught as background (the model may be half right)."""
    p = np.zeros((9, 40, 60), np.float32)
    p[0] = 1.0
    for y0, y1, x0, x1 in ((5, 25, 5, 12), (30, 36, 20, 50)):  # tall (kept), wide (misshapen)
        p[:, y0:y1, x0:x1] = 0
        p[2, y0:y1, x0:x1] = 0.9
    label, rec = self_labels([p], SelfLabelRules())
    assert (label[5:25, 5:12] == 2).all() and (label[30:36, 20:50] == 255).all()
    assert rec["misshapen"] == 6 * 30
    bg, _ = self_labels([p], SelfLabelRules(misshapen="background"))
    assert (bg[30:36, 20:50] == 0).all() and (bg[5:25, 5:12] == 2).all()


def test_pair_source_needs_two_pairs() -> None:
    with pytest.raises(AdaptInputError, match="--max-pairs"):
        PairSource(rgb="a", thermal="b", max_pairs=1)


def test_blend_averages_the_weights_of_start_and_trained(tmp_path: Path, random_checkpoint: Path) -> None:
    """``--keep-start``: the output lies between the start model and the self-trained one."""
    state, meta = load_checkpoint(random_checkpoint)
    moved = {k: v + 1.0 if v.is_floating_point() else v for k, v in state.items()}
    trained = save_checkpoint(tmp_path / "trained.safetensors", moved, meta)
    mixed, _ = adapt.blend(random_checkpoint, trained, 0.25)
    for k, v in state.items():
        expect = v.float() + 0.75 if v.is_floating_point() else v
        torch.testing.assert_close(mixed[k].float() if v.is_floating_point() else mixed[k], expect)
    other = {k: v for k, v in list(state.items())[1:]}
    with pytest.raises(ConfigError, match="different networks"):
        adapt.blend(random_checkpoint, save_checkpoint(tmp_path / "other.safetensors", other, meta), 0.5)
