"""The synthetic generator: determinism, label range, class coverage, misregistration, speed."""

import numpy as np
import pytest

from sccosf_synth.scenes import NUM_CLASSES, generate_scene


def test_same_seed_identical_and_seeds_differ():
    a, b, c = generate_scene(7, 96, 128), generate_scene(7, 96, 128), generate_scene(8, 96, 128)
    for name in ("rgb", "thermal", "labels"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.night == b.night
    assert not np.array_equal(a.rgb, c.rgb)
    assert not np.array_equal(a.thermal, c.thermal)


def test_shapes_dtypes_and_label_range():
    s = generate_scene(3, 120, 160, night=True)
    assert s.rgb.shape == (120, 160, 3) and s.rgb.dtype == np.uint8
    assert s.thermal.shape == (120, 160) and s.thermal.dtype == np.uint8
    assert s.labels.shape == (120, 160) and s.labels.dtype == np.uint8
    assert s.labels.max() < NUM_CLASSES
    assert s.night is True


def test_all_classes_appear_over_a_few_seeds():
    seen = np.zeros(NUM_CLASSES, bool)
    for seed in range(12):
        seen |= np.bincount(generate_scene(seed, 240, 320).labels.ravel(), minlength=NUM_CLASSES) > 0
    assert seen.all(), f"classes never drawn: {np.flatnonzero(~seen).tolist()}"


def test_night_visible_is_darker_and_persons_hot_in_thermal():
    day = [generate_scene(s, 240, 320, night=False) for s in range(4)]
    night = [generate_scene(s, 240, 320, night=True) for s in range(4)]
    assert np.mean([d.rgb.mean() for d in day]) > 2 * np.mean([n.rgb.mean() for n in night])
    for sc in night:
        person = sc.labels == 2
        if person.sum() > 50:
            assert sc.thermal[person].mean() > sc.thermal[sc.labels == 0].mean() + 50


def test_misregistration_shifts_thermal_only():
    a = generate_scene(5, 120, 160, misregistration_px=0.0)
    b = generate_scene(5, 120, 160, misregistration_px=3.0)
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.thermal, b.thermal)
    assert np.hypot(*b.thermal_shift) == pytest.approx(3.0)
