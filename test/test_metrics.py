"""Fusion and segmentation metrics pinned on cases whose answer is known by hand."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from sccosf_ros.metrics import (
    FUSION_METRICS,
    ConfusionMatrix,
    average_gradient,
    entropy,
    fusion_metrics,
    mutual_information,
    qabf,
    scd,
    spatial_frequency,
    ssim,
    standard_deviation,
    to_gray255,
    vif,
)
from sccosf_ros.metrics.fusion import _valid_filter

RNG = np.random.default_rng(1)
MSRS = Path(__file__).resolve().parents[2] / "shared" / "data" / "msrs"
# Best possible Qabf per pixel with the standard constants: strength ratio 1, orientation agreement 1.
Q_PERFECT = 0.9994 / (1 + math.exp(-15 * 0.5)) * 0.9879 / (1 + math.exp(-22 * 0.2))


def _texture(h: int = 64, w: int = 80) -> np.ndarray:
    """Smooth random texture in 0-255 (blurred noise), so every metric has structure to see."""
    noise = RNG.random((h, w)) * 255
    return np.clip(cv2.GaussianBlur(noise, (0, 0), 2.0) * 3 - 255, 0, 255)


def test_entropy_known_values() -> None:
    two_level = np.zeros((8, 8))
    two_level[:, 4:] = 200
    assert entropy(two_level) == pytest.approx(1.0)
    assert entropy(np.full((5, 5), 17.0)) == 0.0
    assert entropy(np.arange(256, dtype=float).reshape(16, 16)) == pytest.approx(8.0)


def test_sd_sf_ag_by_hand() -> None:
    assert standard_deviation(np.array([[0.0, 10.0], [0.0, 10.0]])) == pytest.approx(5.0)
    i, j = np.mgrid[0:20, 0:30].astype(float)
    ramp = 3.0 * j  # horizontal differences 3, vertical 0
    assert spatial_frequency(ramp) == pytest.approx(3.0)
    assert average_gradient(ramp) == pytest.approx(3.0 / math.sqrt(2))
    plane = 3.0 * j + 2.0 * i
    assert spatial_frequency(plane) == pytest.approx(math.sqrt(9 + 4))
    assert average_gradient(plane) == pytest.approx(math.sqrt((9 + 4) / 2))


def test_mutual_information() -> None:
    x = np.round(_texture())
    assert mutual_information(x, x) == pytest.approx(entropy(x) * math.log(2))  # MI(x, x) = H(x), nats
    cols = np.tile([0.0, 255.0], (8, 4))  # depends on column parity only
    rows = cols.T.copy()  # row parity only: independent of `cols`
    assert mutual_information(cols, rows) == pytest.approx(0.0, abs=1e-12)
    assert mutual_information(cols, 255 - cols) == pytest.approx(math.log(2))


def test_ssim() -> None:
    x = _texture()
    assert ssim(x, x) == pytest.approx(1.0)
    noisy = np.clip(x + RNG.normal(0, 20, x.shape), 0, 255)
    assert 0.0 < ssim(x, noisy) < 0.9
    assert ssim(x, noisy) == pytest.approx(ssim(noisy, x))
    flat = np.full((16, 16), 100.0)
    # Flat vs flat at another level: only the luminance term, (2ab + C1) / (a^2 + b^2 + C1).
    c1 = (0.01 * 255) ** 2
    assert ssim(flat, flat + 20) == pytest.approx((2 * 100 * 120 + c1) / (100**2 + 120**2 + c1))


def test_vif() -> None:
    x = _texture()
    assert vif(x, x) == pytest.approx(1.0, abs=1e-9)
    assert vif(x, np.full_like(x, 128.0)) == 0.0  # nothing of the reference survives
    blurred = cv2.GaussianBlur(x, (0, 0), 2.0)
    assert 0.0 < vif(x, blurred) < 1.0
    assert math.isnan(vif(np.full_like(x, 5.0), x))
    with pytest.raises(ValueError, match="at least 32x32"):
        vif(np.zeros((20, 40)), np.zeros((20, 40)))


def test_valid_filter_matches_direct_sum() -> None:
    a = RNG.random((13, 17))
    k = RNG.random((5, 5))
    k = (k + k[::-1, ::-1]) / 2  # point-symmetric, as all kernels used with it
    direct = np.array([[np.sum(a[r : r + 5, c : c + 5] * k) for c in range(17 - 4)] for r in range(13 - 4)])
    np.testing.assert_allclose(_valid_filter(a, k), direct, rtol=1e-12)


def test_qabf() -> None:
    edges = _texture()
    flat = np.full_like(edges, 90.0)
    # F = the only source with edges: every edge kept with equal strength and orientation.
    assert qabf(edges, edges, flat) == pytest.approx(Q_PERFECT)
    assert qabf(edges, flat, edges) == pytest.approx(Q_PERFECT)
    assert pytest.approx(0.9748, abs=1e-4) == Q_PERFECT
    assert qabf(flat, edges, _texture()) < 1e-3  # a flat F keeps no edge
    half = 0.5 * edges
    assert 0.1 < qabf(half, edges, flat) < Q_PERFECT
    assert math.isnan(qabf(flat, flat, flat))


def test_scd() -> None:
    a, b = _texture(), _texture()
    assert scd(a + b, a, b) == pytest.approx(2.0)  # F - B = A and F - A = B exactly
    assert scd(a + b, b, a) == pytest.approx(2.0)
    assert scd(a, a, np.full_like(a, 3.0)) == pytest.approx(1.0)  # corr(A, A - c) = 1; F - A = 0 adds 0


def test_to_gray255() -> None:
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    grey = to_gray255(rgb)
    assert grey.dtype == np.float64 and grey[0, 0] == round(0.299 * 255)
    ref = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(float)
    np.testing.assert_array_equal(grey, ref)
    np.testing.assert_allclose(to_gray255(np.array([[0.0, 0.5, 1.0]])), [[0, 127.5, 255]])
    np.testing.assert_allclose(to_gray255(np.array([[0.0, 255.0]]), float_range=255.0), [[0, 255]])
    with pytest.raises(ValueError, match="float_range=255"):
        to_gray255(np.array([[0.0, 200.0]]))
    with pytest.raises(ValueError, match="NaN"):
        to_gray255(np.array([[np.nan, 0.5]]))


def test_fusion_metrics_contract_and_errors() -> None:
    ir, vi = _texture(), _texture()
    fused = (ir + vi) / 2
    scores = fusion_metrics(fused, ir, vi)
    assert tuple(scores) == FUSION_METRICS
    assert all(math.isfinite(v) for v in scores.values())
    # Identities of the summed convention: F = IR gives MI = H(IR) + MI(IR, VI) and SSIM = 1 + SSIM(IR, VI).
    same = fusion_metrics(ir, ir, vi)
    assert same["MI"] == pytest.approx(entropy(ir) * math.log(2) + mutual_information(ir, vi))
    assert same["SSIM"] == pytest.approx(1.0 + ssim(ir, vi))
    assert same["VIF"] == pytest.approx(1.0 + vif(vi, ir))
    with pytest.raises(ValueError, match="shapes differ"):
        fusion_metrics(fused, ir[:-1], vi)
    with pytest.raises(ValueError, match="NaN"):
        fusion_metrics(np.where(fused > 100, np.nan, fused), ir, vi)
    with pytest.raises(ValueError, match="2-D grey"):
        fusion_metrics(np.dstack([fused] * 3), ir, vi)


@pytest.mark.skipif(not (MSRS / "seafusion").is_dir(), reason="shared MSRS data not present")
def test_real_pair_against_seafusion() -> None:
    name = sorted(p.name for p in (MSRS / "seafusion").glob("*.png"))[0]

    def rgb(path: Path) -> np.ndarray:
        return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    ir = to_gray255(cv2.imread(str(MSRS / "ir" / name), cv2.IMREAD_GRAYSCALE))
    vi = to_gray255(rgb(MSRS / "vi" / name))
    fused = to_gray255(rgb(MSRS / "seafusion" / name))
    assert fused.shape == ir.shape == vi.shape == (480, 640)
    scores = fusion_metrics(fused, ir, vi)  # its speed: benchmarks/bench_core.py
    assert 0 < scores["EN"] <= 8 and scores["SD"] > 0 and scores["SF"] > 0 and scores["AG"] > 0
    assert 0 < scores["MI"] < entropy(fused) * math.log(2) * 2
    assert 0 < scores["SSIM"] < 2 and 0 < scores["VIF"] < 2 and 0 < scores["Qabf"] < Q_PERFECT
    # A real fusion keeps more of both sources than either source alone keeps of the other.
    assert scores["SCD"] > scd(ir, ir, vi)
    assert scores["SCD"] > scd(vi, ir, vi)


def test_confusion_matrix_by_hand() -> None:
    target = np.array([[0, 0, 1], [1, 2, 255]], np.uint8)
    pred = np.array([[0, 1, 1], [1, 0, 2]], np.uint8)
    cm = ConfusionMatrix(4).update(pred, target)
    np.testing.assert_array_equal(cm.matrix[:3, :3], [[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    assert cm.total == 5
    iou = cm.iou()
    np.testing.assert_allclose(iou[:3], [1 / 3, 2 / 3, 0.0])
    assert math.isnan(iou[3])  # class 3 neither in target nor predicted
    assert cm.miou() == pytest.approx(1 / 3)
    assert cm.pixel_accuracy() == pytest.approx(3 / 5)
    np.testing.assert_allclose(cm.class_accuracy()[:3], [0.5, 1.0, 0.0])
    summary = cm.as_dict(["bg", "car", "person", "bike"])
    assert summary["IoU/car"] == pytest.approx(2 / 3) and summary["mIoU"] == pytest.approx(1 / 3)
    other = ConfusionMatrix(4).update(pred.astype(np.int64), target.astype(np.int64))
    np.testing.assert_array_equal(cm.merge(other).matrix[:3, :3], [[2, 2, 0], [0, 4, 0], [2, 0, 0]])


def test_confusion_matrix_validation() -> None:
    empty = ConfusionMatrix(3)
    assert math.isnan(empty.miou()) and math.isnan(empty.pixel_accuracy())
    with pytest.raises(ValueError, match="target holds class id 7"):
        empty.update(np.zeros((1, 2), np.uint8), np.array([[0, 7]], np.uint8))
    with pytest.raises(ValueError, match="pred holds class id 3"):
        empty.update(np.array([[3]]), np.array([[0]]))
    with pytest.raises(ValueError, match="shape"):
        empty.update(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8))
    with pytest.raises(ValueError, match="integer"):
        empty.update(np.zeros((2, 2)), np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="collides"):
        ConfusionMatrix(9, ignore_index=0)
    with pytest.raises(ValueError, match="different"):
        empty.merge(ConfusionMatrix(4))
    with pytest.raises(ValueError, match="2 class names"):
        empty.as_dict(["a", "b"])
