"""Shared fixtures.

``random_checkpoint`` is a real ``tiny`` SC-CoSF checkpoint with seeded random weights, written once per
test session (building and saving takes well under a second). It is shared: treat the file as read-only;
copy it to ``tmp_path`` before corrupting or modifying it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path to a seeded random-weight ``tiny`` checkpoint with MSRS class names and palette."""
    from sccosf_ros.checkpoint import CheckpointMeta, save_checkpoint
    from sccosf_ros.model import build_model

    with torch.random.fork_rng():  # seeded, without disturbing other tests' RNG state
        torch.manual_seed(0)
        model = build_model("tiny", num_classes=9)
    meta = CheckpointMeta.for_model(model, preset="tiny", training={"note": "random weights, test fixture"})
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_random.safetensors", model, meta)


@pytest.fixture(scope="session")
def onnx_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where ONNX exports of the tests live: pytest's cache (``.pytest_cache/d/sccosf_onnx``), so that an
    unchanged checkout does not export again (the key covers weights, size and the code; test_onnx.py)."""
    cache = getattr(request.config, "cache", None)
    return cache.mkdir("sccosf_onnx") if cache is not None else tmp_path_factory.mktemp("sccosf_onnx")


@pytest.fixture(scope="session", autouse=True)
def onnx_cache_env(onnx_cache: Path) -> Iterator[None]:
    """Nodes started by the tests with the default ``backend: auto`` export into that cache too, not the
    user's ``~/.cache`` (child processes inherit the variable)."""
    from sccosf_ros.backends.onnx_format import CACHE_ENV

    old = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(onnx_cache)
    yield
    if old is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = old


@pytest.fixture(scope="session")
def tiny_onnx_240(onnx_cache: Path) -> Path:
    """The shipped model exported at 240x320 with the refinement (the engine's cache mode)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from sccosf_ros.engine import FusionEngine

    with FusionEngine(device="cpu", backend="onnxruntime", onnx_cache=onnx_cache, num_threads=1) as engine:
        engine.warmup(240, 320, runs=1)
        (path,) = engine.describe()["onnx_files"]
    return Path(path)


@pytest.fixture(scope="session")
def tiny_int8_240(tiny_onnx_240: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """That float export quantised to INT8 (``export_int8``), calibrated on 8 real MSRS training pairs (the
    dev pairs left out) where ``../shared`` has them, else on 8 synthetic pairs written here."""
    from sccosf_ros.backends.onnx_int8 import export_int8

    root = Path(__file__).resolve().parents[1]
    msrs = root.parent / "shared" / "data" / "msrs"
    folder, exclude = msrs, root / "config" / "msrs_dev_split.txt"
    if not (msrs / "vi").is_dir():
        import cv2

        from sccosf_synth.scenes import generate_scene

        folder, exclude = tmp_path_factory.mktemp("calibration_240"), None
        for d in ("vi", "ir"):
            (folder / d).mkdir()
        for i in range(8):
            scene = generate_scene(800 + i, 240, 320, night=bool(i % 2))
            cv2.imwrite(str(folder / "vi" / f"p{i}.png"), cv2.cvtColor(scene.rgb, cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(folder / "ir" / f"p{i}.png"), scene.thermal)
    out = tmp_path_factory.mktemp("int8_240") / "sccosf_tiny_240x320_int8.onnx"
    export_int8(tiny_onnx_240, out, folder, pairs=8, exclude=exclude)
    return out
