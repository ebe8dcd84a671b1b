"""Pseudo-label rules (sccosf_train.pseudo_labels) on hand-made probabilities and boxes; no ../shared."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sccosf_ros.metrics.boxes import Box
from sccosf_train import pseudo_labels as pl
from sccosf_train.dataset import MSRSFolderDataset
from sccosf_train.teachers.mfnet import MFNet

K = 9
KEEP_ALL = pl.LabelRules(min_conf=0.0, promote=None, outside_box="keep", missed_box="keep", box_margin=0)


def _probs(classes: np.ndarray, conf: float | np.ndarray = 0.9) -> np.ndarray:
    """(K, H, W) probabilities: ``conf`` on the given class, the rest spread evenly."""
    conf = np.broadcast_to(np.asarray(conf, np.float32), classes.shape)
    p = np.repeat(((1 - conf) / (K - 1))[None], K, axis=0).astype(np.float32)
    np.put_along_axis(p, classes[None].astype(np.int64), conf[None], axis=0)
    return p


def test_keep_all_is_the_teachers_argmax() -> None:
    classes = np.random.default_rng(0).integers(0, K, (8, 10))
    label, rec = pl.make_labels(_probs(classes), [], KEEP_ALL)
    assert np.array_equal(label, classes) and rec["ignored"] == 0


def test_low_confidence_is_ignored_and_boxless_can_be_stricter() -> None:
    classes = np.zeros((4, 4), int)
    classes[0] = 6  # guardrail
    conf = np.full((4, 4), 0.9, np.float32)
    conf[3] = 0.4  # below 0.5
    conf[0, :2] = 0.6
    rules = pl.LabelRules(promote=None, outside_box="keep", missed_box="keep")
    label, rec = pl.make_labels(_probs(classes, conf), [], rules)
    assert (label[3] == 255).all() and rec["low_conf"] == 4 and (label[0] == 6).all()
    label, rec = pl.make_labels(_probs(classes, conf), [], pl.LabelRules(boxless_min_conf=0.7))
    assert (label[0, :2] == 255).all() and (label[0, 2:] == 6).all() and rec["low_conf"] == 6


def test_box_classes_outside_their_boxes_are_ignored_with_margin() -> None:
    classes = np.zeros((10, 10), int)
    classes[0:4, 0:4] = 1  # a car inside its box
    classes[0:2, 4] = 1  # 2 pixels just right of the box
    classes[8:10, 8:10] = 1  # 4 car pixels far from any car box
    classes[5, 5] = 2  # a person pixel inside the *car* box's margin: no person box -> ignored
    boxes = [Box(1, 0, 0, 4, 4)]
    label, rec = pl.make_labels(_probs(classes), boxes, pl.LabelRules(promote=None, box_margin=0))
    assert (label[0:4, 0:4] == 1).all() and (label[0:2, 4] == 255).all() and (label[8:, 8:] == 255).all()
    assert label[5, 5] == 255 and rec["outside_box"] == 2 + 4 + 1
    label, rec = pl.make_labels(_probs(classes), boxes, pl.LabelRules(promote=None, box_margin=1))
    assert (label[0:2, 4] == 1).all() and rec["outside_box"] == 4 + 1
    rules = pl.LabelRules(promote=None, box_margin=1, outside_box="background")  # boxes list every object
    label, rec = pl.make_labels(_probs(classes), boxes, rules)
    assert (label[8:, 8:] == 0).all() and label[5, 5] == 0 and rec["outside_box"] == 4 + 1


def test_missed_box_background_is_ignored_found_box_background_kept() -> None:
    classes = np.zeros((10, 20), int)
    classes[0:10, 0:2] = 2  # the teacher covers 20 of the first person box's 50 pixels (40 %)
    boxes = [Box(2, 0, 0, 5, 10), Box(2, 10, 0, 15, 10)]  # the second box: the teacher sees nothing
    label, rec = pl.make_labels(_probs(classes), boxes, pl.LabelRules(promote=None))
    assert (label[:, 0:2] == 2).all() and (label[:, 2:5] == 0).all()  # found: background stays
    assert (label[:, 10:15] == 255).all() and (label[:, 15:] == 0).all()  # missed: not background
    assert (
        rec["objects"] == 2 and rec["objects_missed_by_teacher"] == 1 and rec["missed_box_background"] == 50
    )
    label, _ = pl.make_labels(_probs(classes), boxes, pl.LabelRules(promote=None, missed_box="keep"))
    assert (label[:, 10:15] == 0).all()
    label, rec = pl.make_labels(_probs(classes), boxes, pl.LabelRules(promote=None, box_background="ignore"))
    assert (label[:, 2:5] == 255).all() and (label[:, 0:2] == 2).all() and rec["box_background"] == 30


def test_promotion_inside_boxes_uses_the_teachers_class_probability() -> None:
    p = _probs(np.zeros((10, 10), int), 0.6)  # background 0.6 everywhere, 0.05 for each other class
    p[2, 2:6, 2:6] = 0.35  # person at 0.35 on a 4x4 patch (background keeps the argmax there)
    p[0, 2:6, 2:6] = 0.45
    p[2, 8, 8] = 0.35  # the same outside any person box: not promoted
    p[0, 8, 8] = 0.45
    boxes = [Box(2, 1, 1, 7, 7)]  # 36 px, the patch covers 16 (44 %)
    label, rec = pl.make_labels(p, boxes, pl.LabelRules(promote=0.3))
    assert (label[2:6, 2:6] == 2).all() and rec["promoted"] == 16 and rec["objects_missed_by_teacher"] == 0
    assert label[8, 8] == 255  # 0.45 < min_conf 0.5: ignored, not promoted (no box)
    label, rec = pl.make_labels(p, boxes, pl.LabelRules(promote=None))
    assert (label[2:6, 2:6] == 255).all()  # unsure (0.45) and not promoted
    assert rec["objects_missed_by_teacher"] == 1  # nothing of the box labelled person
    assert label[1, 1] == 255  # so the box's background is ignored
    label, _ = pl.make_labels(p, boxes, pl.LabelRules(promote=0.4))
    assert not (label == 2).any()


def test_the_core_of_a_missed_box_becomes_its_class() -> None:
    classes = np.zeros((10, 20), int)
    classes[0:10, 0:2] = 2  # found box (40 % covered): untouched by the core rule
    classes[5, 12] = 3  # a bike pixel in a bike box inside the missed person box (a rider): kept
    boxes = [Box(2, 0, 0, 5, 10), Box(2, 10, 0, 16, 10), Box(3, 11, 4, 14, 7)]
    label, rec = pl.make_labels(_probs(classes), boxes, pl.LabelRules(promote=None, missed_core=1.0))
    core = pl.core_ellipse((10, 20), boxes[1], 1.0)
    assert core[5, 13] and not core[0, 10] and not core[:, :10].any()  # centre in, corner out
    assert (label[core & (classes == 0)] == 2).all() and label[5, 12] == 3
    assert (label[~core & (np.arange(20) >= 10)[None, :] & (np.arange(20) < 16)[None, :]] == 255).all()
    assert (label[:, 2:5] == 0).all() and rec["missed_core"] == int((core & (classes == 0)).sum())
    small = pl.core_ellipse((10, 20), boxes[1], 0.5)
    assert small.sum() < core.sum() and small[5, 13]
    with pytest.raises(ValueError, match="missed_core"):
        pl.LabelRules(missed_core=1.5)


def test_rules_validate() -> None:
    with pytest.raises(ValueError, match="outside_box"):
        pl.LabelRules(outside_box="drop")
    with pytest.raises(ValueError, match="min_conf"):
        pl.LabelRules(min_conf=1.5)
    with pytest.raises(ValueError, match=r"\(K, H, W\)"):
        pl.make_labels(np.zeros((4, 4)), [])


def test_generate_writes_a_layout_the_trainer_reads(tmp_path: Path) -> None:
    """Random MFNet weights on a tiny MSRS-layout folder: Label PNGs, probs, records; the trainer's dataset
    reads the labels through --label-dir as an absolute path, the images staying where they are."""
    root = tmp_path / "msrs"
    rng = np.random.default_rng(0)
    for sub in ("vi", "ir", "seafusion", "boxes/fusion"):
        (root / sub).mkdir(parents=True)
    for name in ("a", "b", "v"):
        cv2.imwrite(str(root / "vi" / f"{name}.png"), rng.integers(0, 255, (32, 48, 3), np.uint8))
        cv2.imwrite(str(root / "ir" / f"{name}.png"), rng.integers(0, 255, (32, 48), np.uint8))
        (root / "boxes" / "fusion" / f"{name}.txt").write_text("0 0.5 0.5 0.25 0.5\n")
    cv2.imwrite(str(root / "seafusion" / "v.png"), np.zeros((32, 48, 3), np.uint8))
    torch.manual_seed(0)
    weights = tmp_path / "mfnet.pth"
    torch.save({k: v for k, v in MFNet().state_dict().items() if "num_batches" not in k}, weights)
    out = tmp_path / "pseudo"
    argv = ["--msrs-root", str(root), "--out", str(out), "--teacher-weights", str(weights), "--no-progress"]
    assert pl.main(argv) == 0
    assert sorted(p.name for p in (out / "Label").iterdir()) == ["a.png", "b.png"]  # train split only
    label = cv2.imread(str(out / "Label" / "a.png"), cv2.IMREAD_UNCHANGED)
    assert label.dtype == np.uint8 and label.shape == (32, 48) and set(np.unique(label)) <= {*range(9), 255}
    probs = np.load(out / "probs" / "a.npy")
    assert probs.dtype == np.float16 and probs.shape == (9, 8, 12)
    rec = json.loads((out / "records.json").read_text())
    assert [r["name"] for r in rec["records"]] == ["a", "b"] and rec["rules"]["min_conf"] == 0.5
    ds = MSRSFolderDataset(root, split_names=["a", "b"], label_dir=str((out / "Label").resolve()))
    assert ds.num_labelled == 2 and np.array_equal(ds.load(0)[2], label)
    with pytest.raises(SystemExit, match="inside the data folder"):
        pl.main(["--msrs-root", str(root), "--out", str(root / "x"), "--teacher-weights", str(weights)])


class HotTeacher:
    """A teacher written in the tests: class 2 (person) where the thermal frame is hot, else background."""

    name, title, citation, weights = "hot", "Hot", "test", "-"
    class_names = tuple(f"c{k}" for k in range(K))

    @classmethod
    def load(cls, weights: str | None = None, device: str = "cpu") -> HotTeacher:
        return cls()

    def logits(self, rgb: np.ndarray, thermal: np.ndarray, scale: float = 1.0) -> torch.Tensor:
        out = torch.zeros(1, K, *thermal.shape)
        out[0, 2] = torch.from_numpy((thermal > 127).astype(np.float32) * 10)
        out[0, 0] = 5.0
        return out


def test_a_teacher_registered_from_the_tests_makes_the_labels(tmp_path: Path) -> None:
    """A new teacher is one class and one register line; the tool takes it by name."""
    from sccosf_train import teachers

    root = tmp_path / "msrs"
    for sub in ("vi", "ir", "boxes/fusion"):
        (root / sub).mkdir(parents=True)
    ir = np.zeros((32, 48), np.uint8)
    ir[8:24, 16:28] = 200
    cv2.imwrite(str(root / "vi" / "a.png"), np.zeros((32, 48, 3), np.uint8))
    cv2.imwrite(str(root / "ir" / "a.png"), ir)
    (root / "boxes" / "fusion" / "a.txt").write_text("0 0.4583 0.5 0.25 0.5\n")  # a person box on the blob
    teachers.register("hot", HotTeacher)
    try:
        argv = [
            "--msrs-root",
            str(root),
            "--out",
            str(tmp_path / "out"),
            "--split",
            "all",
            "--teacher",
            "hot",
        ]
        assert pl.main([*argv, "--no-progress", "--probs-factor", "0"]) == 0
    finally:
        teachers.unregister("hot")
    label = cv2.imread(str(tmp_path / "out" / "Label" / "a.png"), cv2.IMREAD_UNCHANGED)
    assert (label[8:24, 16:28] == 2).all() and (label[:4] == 0).all()
    assert "Teacher Hot" in (tmp_path / "out" / "summary.md").read_text()
