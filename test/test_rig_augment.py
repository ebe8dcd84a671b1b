"""Camera-rig randomisation (sccosf_train.rig_augment) and the trainer options that use it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from sccosf_train.augment import AugmentConfig, augment_triple, geometry_matrix
from sccosf_train.config import TrainConfig
from sccosf_train.data import augment_config, parse_extra_real
from sccosf_train.dataset import MSRSFolderDataset
from sccosf_train.rig_augment import RigRandomization, random_agc, randomize_thermal, randomize_visible


def _scene(h: int = 96, w: int = 128) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    th = cv2.GaussianBlur(rng.integers(0, 256, (h, w), dtype=np.uint8), (0, 0), 3)
    th[30:60, 40:60] = 240  # a warm object
    rgb = np.stack([th, 255 - th, th // 2], -1).astype(np.uint8)
    return rgb, th


def test_every_agc_curve_is_monotonic_or_local_and_keeps_the_frame() -> None:
    _, th = _scene()
    seen = set()
    for seed in range(40):
        rng = np.random.default_rng(seed)
        kind = int(np.random.default_rng(seed).integers(0, 4))
        out = random_agc(th, rng)
        assert out.shape == th.shape and out.dtype == np.uint8
        if kind < 3:  # global curves never swap the order of two grey levels
            order = np.argsort(th.ravel(), kind="stable")
            assert (np.diff(out.ravel()[order].astype(int)) >= 0).all()
        seen.add(kind)
    assert seen == {0, 1, 2, 3}


def test_randomisation_is_reproducible_and_changes_only_values() -> None:
    rgb, th = _scene()
    cfg = RigRandomization(thermal_agc=1.0, thermal_jpeg=1.0, visible_jpeg=1.0)
    a = randomize_thermal(th, np.random.default_rng(5), cfg)
    b = randomize_thermal(th, np.random.default_rng(5), cfg)
    assert np.array_equal(a, b) and a.shape == th.shape and a.dtype == np.uint8
    assert not np.array_equal(a, th)
    v = randomize_visible(rgb, np.random.default_rng(5), cfg)
    assert v.shape == rgb.shape and v.dtype == np.uint8 and not np.array_equal(v, rgb)
    # the warm object stays where it was: its mean is still above the scene's
    assert a[30:60, 40:60].mean() > a.mean()


def test_augment_triple_with_rig_keeps_labels_aligned_and_aspect_is_anisotropic() -> None:
    rgb, th = _scene()
    labels = np.zeros(th.shape, np.uint8)
    labels[30:60, 40:60] = 2
    cfg = AugmentConfig(scale=(0.8, 1.2), aspect=0.2, rig=RigRandomization())
    for seed in range(5):
        r, t, lab = augment_triple(rgb, th, labels, (64, 96), np.random.default_rng(seed), cfg)
        assert r.shape == (64, 96, 3) and t.shape == (64, 96) and lab.shape == (64, 96)
        assert set(np.unique(lab)) <= {0, 2, 255}
    ratios = set()
    for seed in range(10):
        m = geometry_matrix(np.random.default_rng(seed), (96, 128), (64, 96), cfg)
        ratios.add(round(abs(m[1, 1] / m[0, 0]), 3))
    assert len(ratios) > 1 and all(np.exp(-0.2) - 1e-9 <= q <= np.exp(0.2) + 1e-9 for q in ratios)
    # without rig or aspect the old behaviour: equal scales
    m = geometry_matrix(np.random.default_rng(0), (96, 128), (64, 96), AugmentConfig())
    assert abs(m[1, 1]) == pytest.approx(abs(m[0, 0]))


def test_train_config_augmentation_options() -> None:
    cfg = TrainConfig(aug_scale=(0.4, 1.25), aug_aspect=0.15, aug_rig=True)
    aug = augment_config(cfg)
    assert aug.scale == (0.4, 1.25) and aug.aspect == 0.15 and isinstance(aug.rig, RigRandomization)
    assert augment_config(TrainConfig()).rig is None
    with pytest.raises(ValueError, match="aug_scale"):
        TrainConfig(aug_scale=(1.2, 0.5))
    with pytest.raises(ValueError, match="aug_aspect"):
        TrainConfig(aug_aspect=-1)


def test_extra_real_spec() -> None:
    assert parse_extra_real("root=a,labels=b,split=c.txt,repeat=3,scale=0.8:2") == {
        "root": "a",
        "labels": "b",
        "split": "c.txt",
        "repeat": 3,
        "scale": (0.8, 2.0),
    }
    assert parse_extra_real("some/dir")["root"] == "some/dir"
    for bad in ("labels=b", "root=a,colour=red", "root=a,repeat=", "root=a,scale=1", "root=a,repeat=x"):
        with pytest.raises(ValueError, match="extra_real"):
            parse_extra_real(bad)


def test_repeated_folder_draws_new_augmentation_per_repetition(tmp_path: Path) -> None:
    rgb, th = _scene()
    for sub in ("ir", "vi"):
        (tmp_path / sub).mkdir()
    cv2.imwrite(str(tmp_path / "ir" / "a.png"), th)
    cv2.imwrite(str(tmp_path / "vi" / "a.png"), rgb)
    ds = MSRSFolderDataset(tmp_path, crop=(64, 96), augment=AugmentConfig(rig=RigRandomization()), repeat=3)
    assert len(ds) == 3
    samples = [ds[i] for i in range(3)]
    assert {s["name"] for s in samples} == {"a"}
    assert not np.array_equal(samples[0]["thermal"].numpy(), samples[1]["thermal"].numpy())
