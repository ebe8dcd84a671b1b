"""FusionEngine on CPU with the real tiny network (random weights): shapes, registration, batching,
precision rules, input validation, lifetime; and where the shipped model is looked up."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sccosf_ros import engine as engine_mod
from sccosf_ros import paths
from sccosf_ros.checkpoint import CheckpointError
from sccosf_ros.engine import FusionEngine, FusionResult
from sccosf_ros.imaging.palette import MSRS_CLASSES, MSRS_PALETTE

H, W = 97, 131  # odd on purpose: not a multiple of the network's size_multiple


@pytest.fixture(scope="module")
def engine(random_checkpoint: Path) -> FusionEngine:
    return FusionEngine(random_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    thermal = rng.integers(0, 256, (H, W), dtype=np.uint8)
    return rgb, thermal


def _check_result(r: FusionResult, h: int, w: int, k: int = 9) -> None:
    assert r.fused.shape == (h, w, 3) and r.fused.dtype == np.uint8
    assert r.mask.shape == (h, w) and r.mask.dtype == np.uint8
    assert int(r.mask.max()) < k
    assert set(r.timings) == {"preprocess", "inference", "postprocess"}
    assert all(v >= 0 for v in r.timings.values())


def test_properties(engine: FusionEngine, random_checkpoint: Path) -> None:
    assert engine.device == torch.device("cpu")
    assert engine.precision == "fp32"
    assert engine.class_names == list(MSRS_CLASSES)
    assert np.array_equal(engine.palette, MSRS_PALETTE) and engine.palette.dtype == np.uint8
    assert engine.meta.preset == "tiny" and engine.num_classes == 9
    assert engine.checkpoint == random_checkpoint
    assert not engine.model.training


def test_shapes_odd_size_and_other_thermal_size(engine: FusionEngine, pair: tuple) -> None:
    rgb, _ = pair
    small_thermal = np.random.default_rng(1).integers(0, 256, (40, 53), dtype=np.uint8)
    r = engine.infer(rgb, small_thermal, return_probs=True)
    _check_result(r, H, W)
    assert r.probs is not None and r.probs.shape == (9, H, W) and r.probs.dtype == np.float32
    np.testing.assert_allclose(r.probs.sum(axis=0), 1.0, atol=1e-4)
    assert np.array_equal(r.probs.argmax(axis=0), r.mask)
    assert engine.infer(rgb, small_thermal).probs is None


def test_thermal_representations_agree(engine: FusionEngine, pair: tuple) -> None:
    """uint8, float [0, 1], (H, W, 1) and grey replicated to 3 channels are the same frame."""
    rgb, th = pair
    ref = engine.infer(rgb, th)
    for variant in (th.astype(np.float32) / 255.0, th[:, :, None], np.repeat(th[:, :, None], 3, axis=2)):
        r = engine.infer(rgb, variant)
        assert np.array_equal(r.fused, ref.fused)
        assert np.array_equal(r.mask, ref.mask)


def test_homography_identity_equals_none(random_checkpoint: Path, engine: FusionEngine, pair: tuple) -> None:
    rgb, th = pair
    with FusionEngine(random_checkpoint, device="cpu", homography=np.eye(3)) as registered:
        assert np.array_equal(registered.homography, np.eye(3))
        a, b = registered.infer(rgb, th), engine.infer(rgb, th)
        assert np.array_equal(a.fused, b.fused) and np.array_equal(a.mask, b.mask)
        shift = np.array([[1.0, 0, 20], [0, 1, 0], [0, 0, 1]])
        registered.homography = shift
        assert not np.array_equal(registered.infer(rgb, th).fused, b.fused)
    with pytest.raises(ValueError, match="3x3"):
        engine.homography = np.eye(2)


def test_batch_equals_single(engine: FusionEngine, pair: tuple) -> None:
    rgb, th = pair
    rng = np.random.default_rng(2)
    rgb2 = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    rgb3 = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    th3 = rng.integers(0, 256, (32, 40), dtype=np.uint8)
    pairs = [(rgb, th), (rgb3, th3), (rgb2, th)]
    batched = engine.infer_batch(pairs, return_probs=True)
    assert len(batched) == 3
    for (r, t), b in zip(pairs, batched, strict=True):
        s = engine.infer(r, t, return_probs=True)
        _check_result(b, *r.shape[:2])
        assert np.abs(b.fused.astype(int) - s.fused).max() <= 1
        np.testing.assert_allclose(b.probs, s.probs, atol=1e-4)
        assert (b.mask == s.mask).mean() > 0.999
    assert engine.infer_batch([]) == []
    with pytest.raises(ValueError, match="pair 1"):
        engine.infer_batch([(rgb, th), (rgb, th.astype(np.uint16))])


def test_bf16_on_cpu_runs_close_to_fp32(random_checkpoint: Path, engine: FusionEngine, pair: tuple) -> None:
    rgb, th = pair[0][:48, :80], pair[1][:48, :80]  # bf16 on CPU is slow; keep it small
    with FusionEngine(random_checkpoint, device="cpu", precision="bf16") as bf16:
        assert bf16.precision == "bf16"
        r = bf16.infer(rgb, th)
    _check_result(r, 48, 80)
    ref = engine.infer(rgb, th)
    assert np.abs(r.fused.astype(int) - ref.fused).mean() < 8.0


def test_precision_and_device_errors(random_checkpoint: Path) -> None:
    with pytest.raises(ValueError, match=r"fp16.*needs a CUDA device"):
        FusionEngine(random_checkpoint, device="cpu", precision="fp16")
    with pytest.raises(ValueError, match="precision must be one of"):
        FusionEngine(random_checkpoint, device="cpu", precision="int4")
    with pytest.raises(
        ValueError, match=r"'int8' is not available with backend 'torch'.*sccosf-export .*--int8"
    ):
        FusionEngine(random_checkpoint, device="cpu", precision="int8", backend="torch")
    with pytest.raises(ValueError, match="device must be"):
        FusionEngine(random_checkpoint, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            FusionEngine(random_checkpoint, device="cuda")
        assert FusionEngine(random_checkpoint, device="auto").device.type == "cpu"


@pytest.mark.parametrize(
    ("rgb", "thermal", "message"),
    [
        (np.zeros((H, W), np.uint8), np.zeros((H, W), np.uint8), r"rgb must be \(H, W, 3\)"),
        (np.zeros((H, W, 4), np.uint8), np.zeros((H, W), np.uint8), r"rgb must be \(H, W, 3\)"),
        (np.zeros((H, W, 3), np.float32), np.zeros((H, W), np.uint8), "rgb must be uint8"),
        (np.zeros((0, W, 3), np.uint8), np.zeros((H, W), np.uint8), "rgb image is empty"),
        ([[0]], np.zeros((H, W), np.uint8), "rgb must be a numpy array"),
        (np.zeros((H, W, 3), np.uint8), np.zeros((H, W), np.uint16), "ThermalNormalizer"),
        (np.zeros((H, W, 3), np.uint8), np.full((H, W), np.nan, np.float32), "NaN"),
        (np.zeros((H, W, 3), np.uint8), np.full((H, W), 300.0, np.float32), r"must be in \[0, 1\]"),
        (np.zeros((H, W, 3), np.uint8), np.zeros((H, W, 2), np.uint8), "thermal must be"),
        (np.zeros((H, W, 3), np.uint8), np.zeros((0, 5), np.uint8), "thermal image is empty"),
    ],
)
def test_input_validation(engine: FusionEngine, rgb: object, thermal: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        engine.infer(rgb, thermal)  # type: ignore[arg-type]


def test_warmup(engine: FusionEngine) -> None:
    assert engine.warmup(64, 64, runs=1) > 0


def test_close(random_checkpoint: Path, pair: tuple) -> None:
    eng = FusionEngine(random_checkpoint, device="cpu", num_threads=torch.get_num_threads())
    eng.close()
    assert eng.closed
    eng.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        eng.infer(*pair)
    with FusionEngine(random_checkpoint, device="cpu") as ctx:
        assert not ctx.closed
    assert ctx.closed


def test_no_checkpoint_and_no_shipped_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_mod, "default_checkpoint_path", lambda: None)
    with pytest.raises(CheckpointError, match="no shipped model"):
        FusionEngine(None, device="cpu")


def test_default_checkpoint_is_used(monkeypatch: pytest.MonkeyPatch, random_checkpoint: Path) -> None:
    monkeypatch.setattr(engine_mod, "default_checkpoint_path", lambda: random_checkpoint)
    assert FusionEngine(device="cpu").checkpoint == random_checkpoint


def test_missing_checkpoint_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        FusionEngine(tmp_path / "none.safetensors", device="cpu")


def test_default_checkpoint_lookup_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """ament share dir first, then <sys.prefix>/share/sccosf_ros, then the source checkout."""
    ament, prefix = tmp_path / "ament_share", tmp_path / "prefix"
    for share in (ament, prefix / "share" / "sccosf_ros"):
        (share / "models").mkdir(parents=True)
        (share / "models" / paths.DEFAULT_MODEL_NAME).write_bytes(b"x")
    monkeypatch.setattr(sys, "prefix", str(prefix))
    monkeypatch.setattr(paths, "_SOURCE_ROOT", tmp_path / "checkout")
    monkeypatch.setattr(paths, "_ament_share", lambda: ament)
    assert paths.default_checkpoint_path() == ament / "models" / paths.DEFAULT_MODEL_NAME
    monkeypatch.setattr(paths, "_ament_share", lambda: None)
    in_prefix = prefix / "share" / "sccosf_ros" / "models" / paths.DEFAULT_MODEL_NAME
    assert paths.default_checkpoint_path() == in_prefix
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "empty"))
    assert paths.default_checkpoint_path() is None
    (tmp_path / "checkout" / "config").mkdir(parents=True)
    assert paths.share_dir("config") == tmp_path / "checkout" / "config"
