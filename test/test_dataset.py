"""Datasets and augmentation: pairing, clear errors naming files, unlabelled pairs, geometric consistency."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from sccosf_train.augment import IGNORE_INDEX, AugmentConfig, augment_triple
from sccosf_train.dataset import (
    DatasetError,
    MixedDataset,
    MSRSFolderDataset,
    SyntheticDataset,
    seafusion_split,
)

MSRS = Path(__file__).resolve().parents[2] / "shared" / "data" / "msrs"


def _make_root(tmp_path: Path, names=("a", "b", "c"), labelled=("a",), size=(24, 32)) -> Path:
    rng = np.random.default_rng(0)
    for sub in ("ir", "vi", "Label"):
        (tmp_path / sub).mkdir(parents=True)
    for n in names:
        cv2.imwrite(str(tmp_path / "ir" / f"{n}.png"), rng.integers(0, 255, size, dtype=np.uint8))
        cv2.imwrite(str(tmp_path / "vi" / f"{n}.png"), rng.integers(0, 255, (*size, 3), dtype=np.uint8))
        if n in labelled:
            cv2.imwrite(str(tmp_path / "Label" / f"{n}.png"), rng.integers(0, 9, size, dtype=np.uint8))
    return tmp_path


def test_pairs_by_name_and_unlabelled_pairs_are_ignore(tmp_path):
    ds = MSRSFolderDataset(_make_root(tmp_path))
    assert ds.names == ["a", "b", "c"] and ds.num_labelled == 1
    a, b = ds[0], ds[1]
    assert a["rgb"].shape == (3, 24, 32) and a["thermal"].shape == (1, 24, 32)
    assert bool(a["has_labels"]) and int(a["labels"].max()) < 9
    assert not bool(b["has_labels"]) and bool((b["labels"] == IGNORE_INDEX).all())
    assert float(a["rgb"].min()) >= 0.0 and float(a["rgb"].max()) <= 1.0


def test_unpaired_file_is_named(tmp_path):
    root = _make_root(tmp_path)
    cv2.imwrite(str(root / "ir" / "lonely.png"), np.zeros((24, 32), np.uint8))
    with pytest.raises(DatasetError, match=r"lonely\.png"):
        MSRSFolderDataset(root)


def test_unreadable_file_is_named(tmp_path):
    root = _make_root(tmp_path)
    (root / "vi" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    ds = MSRSFolderDataset(root)
    with pytest.raises(DatasetError, match=r"b\.png.*unreadable"):
        ds[1]


def test_bad_labels_and_size_mismatch_are_named(tmp_path):
    root = _make_root(tmp_path)
    cv2.imwrite(str(root / "Label" / "a.png"), np.full((24, 32), 17, np.uint8))
    with pytest.raises(DatasetError, match=r"a\.png.*17"):
        MSRSFolderDataset(root)[0]
    cv2.imwrite(str(root / "ir" / "c.png"), np.zeros((20, 32), np.uint8))
    with pytest.raises(DatasetError, match=r"c\.png"):
        MSRSFolderDataset(root)[2]
    with pytest.raises(DatasetError, match="nope"):
        MSRSFolderDataset(root, split_names=["a", "nope"])


def test_augmentation_moves_images_and_labels_together():
    """Every geometric draw keeps label regions and image content aligned pixel for pixel."""
    h, w = 60, 80
    labels = np.zeros((h, w), np.uint8)
    labels[10:30, 5:35] = 1
    labels[35:55, 40:75] = 2
    labels[5:20, 50:70] = 3
    code = (labels.astype(np.float32) * 60).astype(np.uint8)
    rgb = np.stack([code, code, code], -1)
    cfg = AugmentConfig(
        brightness=0,
        contrast=0,
        saturation=0,
        gamma=(1, 1),
        thermal_gain=0,
        thermal_offset=0,
        thermal_noise=0,
        scale=(0.6, 1.6),
        hflip=0.5,
    )
    changed = 0
    for seed in range(12):
        rng = np.random.default_rng(seed)
        r, t, lab = augment_triple(rgb, code, labels, (40, 48), rng, cfg)
        assert r.shape == (40, 48, 3) and t.shape == (40, 48) and lab.shape == (40, 48)
        inside = lab != IGNORE_INDEX
        # Interior pixels (away from region borders, where interpolation blends) must match exactly.
        interior = cv2.erode(inside.astype(np.uint8) * (lab + 1), np.ones((3, 3), np.uint8)) == lab + 1
        interior &= cv2.dilate((lab + 1) * inside.astype(np.uint8), np.ones((3, 3), np.uint8)) == lab + 1
        interior[[0, -1], :] = interior[:, [0, -1]] = False  # a region edge may lie just outside the crop
        expect = lab[interior].astype(np.float32) * 60 / 255
        assert np.allclose(t[interior], expect, atol=1.5 / 255)
        assert np.allclose(r[interior, 1], expect, atol=1.5 / 255)
        assert (t[~inside] == 0).all()  # padding is black where labels are ignore
        changed += int(not np.array_equal(lab, labels[10:50, 16:64]))
    assert changed >= 10


def test_photometric_jitter_touches_intensity_not_geometry():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    th = rng.integers(0, 255, (32, 32), dtype=np.uint8)
    lab = rng.integers(0, 9, (32, 32), dtype=np.uint8)
    cfg = AugmentConfig(scale=(1, 1), hflip=0.0)
    r, t, lab2 = augment_triple(rgb, th, lab, None, np.random.default_rng(3), cfg)
    assert np.array_equal(lab2, lab)
    assert not np.allclose(r, rgb / 255) and not np.allclose(t, th / 255)
    assert r.min() >= 0 and r.max() <= 1 and t.min() >= 0 and t.max() <= 1


def test_synthetic_dataset_deterministic_and_epoch_varies_augmentation():
    ds = SyntheticDataset(3, seed=2, size=(48, 64), crop=(32, 48), augment=True)
    a, b = ds[1], ds[1]
    assert (a["rgb"] == b["rgb"]).all() and (a["labels"] == b["labels"]).all()
    ds.set_epoch(1)
    c = ds[1]
    assert not (a["rgb"] == c["rgb"]).all()
    mixed = MixedDataset([ds, SyntheticDataset(2, seed=3, size=(32, 48))])
    assert len(mixed) == 5
    mixed.set_epoch(4)
    assert ds.epoch == 4


def test_fresh_synthetic_scenes_change_with_the_epoch_and_stay_reproducible():
    fixed = SyntheticDataset(3, seed=2, size=(48, 64))
    fresh = SyntheticDataset(3, seed=2, size=(48, 64), fresh_each_epoch=True)
    assert (fixed[1]["labels"] == fresh[1]["labels"]).all()  # epoch 0: the same stream
    fixed.set_epoch(1)
    fresh.set_epoch(1)
    assert fixed.scene_seed(1) == 2 * 1_000_003 + 1 and fresh.scene_seed(1) == 2 * 1_000_003 + 4
    assert (fresh[1]["name"] != fixed[1]["name"]) and not (fresh[1]["thermal"] == fixed[1]["thermal"]).all()
    again = SyntheticDataset(3, seed=2, size=(48, 64), fresh_each_epoch=True)
    again.set_epoch(1)
    assert (again[1]["thermal"] == fresh[1]["thermal"]).all()


@pytest.mark.skipif(not (MSRS / "seafusion").is_dir(), reason="../shared/data/msrs not present")
def test_seafusion_split_on_the_shared_pairs():
    train, val = seafusion_split(MSRS)
    assert len(val) == 61 and len(train) == 180 and not set(train) & set(val)
    ds = MSRSFolderDataset(MSRS, val[:1])
    s = ds[0]
    assert s["rgb"].shape == (3, 480, 640) and not bool(s["has_labels"])


def test_labels_from_a_folder_outside_the_data_root(tmp_path):
    root = _make_root(tmp_path / "data", labelled=())
    pseudo = tmp_path / "pseudo"
    pseudo.mkdir()
    cv2.imwrite(str(pseudo / "b.png"), np.full((24, 32), 2, np.uint8))
    ds = MSRSFolderDataset(root, label_root=pseudo)
    assert ds.num_labelled == 1 and ds.label_dir == pseudo
    assert bool(ds[1]["has_labels"]) and int(ds[1]["labels"].max()) == 2 and not bool(ds[0]["has_labels"])
    with pytest.raises(DatasetError, match="not found"):
        MSRSFolderDataset(root, label_root=tmp_path / "missing")


def test_holdout_pairs_neither_train_nor_validate(tmp_path):
    from sccosf_train.config import TrainConfig
    from sccosf_train.data import real_split

    root = _make_root(tmp_path / "data", names=("a", "b", "c", "d", "e"))
    val_file, held_file = tmp_path / "val.txt", tmp_path / "held.txt"
    val_file.write_text("b\n# a comment\nc\n")
    held_file.write_text("c\nd\n")
    train, val, held = real_split(TrainConfig(val_split=str(val_file), holdout=str(held_file)), root)
    assert (train, val, held) == (["a", "e"], ["b"], ["c", "d"])
    assert real_split(TrainConfig(val_split="none", holdout="none"), root) == (list("abcde"), [], [])
