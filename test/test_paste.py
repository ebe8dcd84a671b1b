"""Copy-paste augmentation (sccosf_train.paste) and the trainer options that switch it on."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from sccosf_train.augment import IGNORE_INDEX
from sccosf_train.config import TrainConfig
from sccosf_train.data import build_datasets
from sccosf_train.paste import ObjectBank, PasteConfig, PasteObject, cut_objects

PERSON, BIKE, CAR = 2, 3, 1


def _frame(h: int = 120, w: int = 160) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A frame with: a person (interior), a rider on a bike (touching regions), a person cut by the
    right edge, a speck, and a person-class ellipse inside an ignored box (a missed object's core)."""
    rgb = np.full((h, w, 3), 40, np.uint8)
    th = np.full((h, w), 30, np.uint8)
    lab = np.zeros((h, w), np.uint8)
    lab[20:60, 10:25] = PERSON  # 40 x 15
    lab[20:45, 50:62] = PERSON  # the rider ...
    lab[45:70, 45:70] = BIKE  # ... on the bike below it
    lab[30:80, 150:160] = PERSON  # cut by the frame edge
    lab[100:102, 5:7] = PERSON  # a speck
    lab[70:115, 90:130] = IGNORE_INDEX
    cv2.ellipse(lab, (110, 92), (8, 15), 0, 0, 360, PERSON, -1)
    th[lab == PERSON] = 220
    th[lab == BIKE] = 120
    rgb[lab == PERSON] = (200, 10, 10)
    rgb[lab == BIKE] = (10, 200, 10)
    return rgb, th, lab


def test_cut_objects_keeps_whole_interior_objects_only() -> None:
    objs = cut_objects(*_frame(), classes=(PERSON, BIKE))
    assert len(objs) == 2  # the person and the rider with the bike; not the cut one, speck or ellipse
    person, rider = sorted(objs, key=lambda o: o.labels.shape[1])
    assert person.labels.shape == (40, 15) and (person.labels == PERSON).all()
    assert (person.thermal == 220).all() and (person.rgb == (200, 10, 10)).all()
    assert rider.labels.shape == (50, 25)
    assert set(np.unique(rider.labels)) == {PERSON, BIKE, IGNORE_INDEX}  # each pixel keeps its class
    assert (rider.thermal[rider.labels == BIKE] == 120).all()
    # one class only: the rider alone is an object (it touches no other person pixel)
    assert len(cut_objects(*_frame(), classes=(PERSON,))) == 2
    # the ellipse is kept when ignored outlines are allowed
    assert len(cut_objects(*_frame(), classes=(PERSON,), max_ignored_outline=1.0)) == 3


def test_bank_draws_classes_evenly() -> None:
    def obj(cls: int) -> PasteObject:
        return PasteObject(
            np.zeros((4, 2, 3), np.uint8), np.zeros((4, 2), np.uint8), np.full((4, 2), cls, np.uint8)
        )

    bank = ObjectBank([obj(PERSON)] * 9 + [obj(BIKE)])
    assert len(bank) == 10 and bank.counts() == {PERSON: 9, BIKE: 1}
    rng = np.random.default_rng(0)
    share = np.mean([int(bank.draw(rng).labels[0, 0]) == BIKE for _ in range(2000)])
    assert 0.45 < share < 0.55


def test_paste_writes_objects_with_their_labels_and_leaves_the_inputs() -> None:
    bank = ObjectBank(cut_objects(*_frame(), classes=(PERSON, BIKE)))
    h, w = 240, 320
    rgb = np.full((h, w, 3), 90, np.uint8)
    th = np.full((h, w), 60, np.uint8)
    lab = np.full((h, w), 5, np.uint8)
    cfg = PasteConfig(max_objects=4, height=(0.1, 0.25))
    pasted = 0
    for seed in range(20):
        out_rgb, out_th, out_lab = bank.paste(rgb, th, lab, np.random.default_rng(seed), cfg)
        assert (rgb == 90).all() and (th == 60).all() and (lab == 5).all()  # inputs untouched
        changed = out_lab != 5
        assert set(np.unique(out_lab[changed])) <= {PERSON, BIKE}
        assert (out_lab != PERSON).all() or out_th[out_lab == PERSON].mean() > 150
        assert (out_th[out_lab == 5] == 60).all()
        assert (out_rgb[out_lab == 5] == 90).all()
        if changed.any():
            pasted += 1
            rows = np.flatnonzero(changed.any(axis=1))
            assert rows.max() >= cfg.ground * h  # objects stand in the lower part of the frame
        again = bank.paste(rgb, th, lab, np.random.default_rng(seed), cfg)
        assert all((a == b).all() for a, b in zip(again, (out_rgb, out_th, out_lab), strict=True))
    assert pasted >= 10  # 0..4 objects a frame: most frames receive one
    none = bank.paste(rgb, th, lab, np.random.default_rng(0), PasteConfig(max_objects=0))
    assert none[2] is lab


def test_paste_options_are_checked() -> None:
    with pytest.raises(ValueError, match="paste_height"):
        TrainConfig(paste_height=(0.3, 0.1))
    with pytest.raises(ValueError, match="paste_objects"):
        TrainConfig(paste_objects=-1)
    with pytest.raises(ValueError, match="height"):
        PasteConfig(height=(0.0, 0.5))


def _folder(root: Path, with_objects: bool) -> None:
    for sub in ("ir", "vi", "Label"):
        (root / sub).mkdir(parents=True)
    for i in range(3):
        rgb, th, lab = _frame()
        if not with_objects:
            lab[lab != IGNORE_INDEX] = CAR
        cv2.imwrite(str(root / "vi" / f"p{i}.png"), rgb)
        cv2.imwrite(str(root / "ir" / f"p{i}.png"), th)
        cv2.imwrite(str(root / "Label" / f"p{i}.png"), lab)


def test_trainer_pastes_into_labelled_training_pairs(tmp_path: Path) -> None:
    _folder(tmp_path / "a", with_objects=True)
    kw = {"synthetic_train": 0, "synthetic_val": 0, "val_split": "none", "crop": (64, 96)}
    cfg = TrainConfig(msrs_root=str(tmp_path / "a"), paste_objects=3, paste_classes=(PERSON, BIKE), **kw)
    train, _, info = build_datasets(cfg)
    assert info["paste"]["objects_per_class"] == {str(PERSON): 3, str(BIKE): 3}
    assert train.datasets[0].paste is not None
    assert len(train[0]["labels"]) == 64
    _folder(tmp_path / "b", with_objects=False)
    with pytest.raises(ValueError, match="no object"):
        build_datasets(TrainConfig(msrs_root=str(tmp_path / "b"), paste_objects=3, **kw))
