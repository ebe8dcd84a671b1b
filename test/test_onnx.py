"""ONNX export and the onnxruntime backend on CPU, against the torch engine.

The shipped model is exported twice per checkout (with and without the segmentation refinement) at 240×320
through the engine's own cache mode, into pytest's cache directory (``.pytest_cache/d/sccosf_onnx``,
fixtures in conftest.py; test_gpu_check.py's dry run uses the same file). The
cache key is the checkpoint's content, the size, the refinement switch and a fingerprint of the network
and export code plus the torch/onnx/onnxscript versions, so a change to any of them exports (and checks)
again; an unchanged checkout reuses the files, and every comparison below runs every time. A cold run
costs about 45 s of exporting on 2 cores.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from sccosf_ros.backends import BackendUnavailableError, onnx_exporter, onnx_format
from sccosf_ros.checkpoint import CheckpointError, read_checkpoint_meta
from sccosf_ros.engine import FusionEngine
from sccosf_ros.paths import default_checkpoint_path

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

SHIPPED = default_checkpoint_path()
pytestmark = pytest.mark.skipif(SHIPPED is None, reason="no shipped model in this installation")
MSRS = Path(__file__).resolve().parents[2] / "shared" / "data" / "msrs"
H, W = 240, 320
REAL_PAIRS = ("00004N", "00016N", "00055D", "00081D")


def _ort(onnx_cache: Path, seg_refine: bool) -> FusionEngine:
    engine = FusionEngine(
        device="cpu", backend="onnxruntime", seg_refine=seg_refine, onnx_cache=onnx_cache, num_threads=1
    )
    engine.warmup(H, W, runs=1)  # exports into the cache on a cold run
    return engine


@pytest.fixture(scope="session")
def ort_refine(onnx_cache: Path) -> FusionEngine:
    return _ort(onnx_cache, True)


@pytest.fixture(scope="session")
def ort_coarse(onnx_cache: Path) -> FusionEngine:
    return _ort(onnx_cache, False)


@pytest.fixture(scope="module")
def torch_refine() -> FusionEngine:
    return FusionEngine(device="cpu", num_threads=1)


@pytest.fixture(scope="module")
def torch_coarse() -> FusionEngine:
    return FusionEngine(device="cpu", num_threads=1, seg_refine=False)


@pytest.fixture(scope="session")
def onnx_file(ort_refine: FusionEngine, tiny_onnx_240: Path) -> Path:
    assert ort_refine.describe()["onnx_files"] == [str(tiny_onnx_240)]  # one export, shared via the cache
    return tiny_onnx_240


def _scenes(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sccosf_synth.scenes import generate_scene

    scenes = [generate_scene(700 + i, H, W, night=bool(i % 2)) for i in range(n)]
    return [(s.rgb, s.thermal) for s in scenes]


def _agreement(
    a: FusionEngine, b: FusionEngine, pairs: list[tuple[np.ndarray, np.ndarray]]
) -> tuple[int, float]:
    """Max fused difference (grey levels) and the lowest per-frame share of equal mask pixels."""
    worst, agree = 0, 1.0
    for rgb, th in pairs:
        ra, rb = a.infer(rgb, th), b.infer(rgb, th)
        worst = max(worst, int(np.abs(ra.fused.astype(np.int16) - rb.fused.astype(np.int16)).max()))
        agree = min(agree, float((ra.mask == rb.mask).mean()))
    return worst, agree


# ---- the export ---------------------------------------------------------------------------------------


def test_export_file_metadata_and_its_own_check(onnx_file: Path) -> None:
    import onnx

    model = onnx.load(str(onnx_file))
    props = {p.key: p.value for p in model.metadata_props}
    meta = read_checkpoint_meta(SHIPPED)
    assert json.loads(props["sccosf"])["class_names"] == meta.class_names
    info = onnx_format.ExportInfo.from_json(props["sccosf_onnx"])
    assert (info.height, info.width, info.batch, info.seg_refine, info.has_refine) == (H, W, 1, True, True)
    assert info.opset == 18 and {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {18}
    assert info.source_sha256 == onnx_format.file_sha256(SHIPPED)
    c = info.check  # ONNX Runtime against PyTorch at export time, on synthetic frames of this size
    assert c["finite"] and c["fused_max_diff"] <= 1 and c["mask_agreement"] >= 0.995, c
    io = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.input}
    assert io == {"rgb": [1, 3, H, W], "thermal": [1, H, W]}  # planar colour (EngineGraph)
    assert [o.name for o in model.graph.output] == ["fused", "mask", "seg_logits"]
    # The scan's einsums are decomposed (ONNX Runtime's Einsum kernel took over half the forward).
    assert not any(n.op_type == "Einsum" for n in model.graph.node)


def test_uint8_thermal_division_is_bit_identical_to_torch() -> None:
    """The onnxruntime backend divides uint8 thermal on the host; the torch backend on the device."""
    import torch

    values = np.arange(256, dtype=np.uint8)
    on_host = values.astype(np.float32) / np.float32(255.0)
    assert np.array_equal(torch.from_numpy(values).float().div_(255.0).numpy(), on_host)


def test_cache_key_follows_content_size_and_refine(tmp_path: Path) -> None:
    copy = tmp_path / "renamed.safetensors"
    shutil.copy(SHIPPED, copy)
    a = onnx_format.cached_export_path(SHIPPED, H, W, True, tmp_path)
    assert a.parent == tmp_path and f"{H}x{W}-refine" in a.name
    assert (
        onnx_format.file_sha256(copy)[:16] in onnx_format.cached_export_path(copy, H, W, True, tmp_path).name
    )
    assert a.name.split("-")[1] == onnx_format.file_sha256(SHIPPED)[:16]
    others = {
        onnx_format.cached_export_path(SHIPPED, H, W + 32, True, tmp_path),
        onnx_format.cached_export_path(SHIPPED, H, W, False, tmp_path),
    }
    assert a not in others and len(others) == 2


def test_cache_dir_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(onnx_format.CACHE_ENV, str(tmp_path / "env"))
    assert onnx_format.onnx_cache_dir() == tmp_path / "env"
    assert onnx_format.onnx_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv(onnx_format.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert onnx_format.onnx_cache_dir() == tmp_path / "xdg" / "sccosf_ros" / "onnx"


# ---- the backend against the torch engine ---------------------------------------------------------------


def test_onnxruntime_engine_matches_torch_on_synthetic_scenes(
    ort_refine: FusionEngine, torch_refine: FusionEngine
) -> None:
    assert ort_refine.backend == "onnxruntime" and torch_refine.backend == "torch"
    assert ort_refine.class_names == torch_refine.class_names
    assert np.array_equal(ort_refine.palette, torch_refine.palette)
    assert ort_refine.seg_refine and ort_refine.precision == "fp32" and ort_refine.device.type == "cpu"
    assert ort_refine.describe()["providers"] == ["CPUExecutionProvider"]
    worst, agree = _agreement(ort_refine, torch_refine, _scenes(3))
    assert worst <= 1 and agree >= 0.995, (worst, agree)


@pytest.mark.skipif(not (MSRS / "vi").is_dir(), reason="../shared/data/msrs not present")
def test_onnxruntime_engine_matches_torch_on_real_pairs(
    ort_refine: FusionEngine, torch_refine: FusionEngine
) -> None:
    pairs = []
    for name in REAL_PAIRS:
        rgb = cv2.cvtColor(cv2.imread(str(MSRS / "vi" / f"{name}.png")), cv2.COLOR_BGR2RGB)
        th = cv2.imread(str(MSRS / "ir" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
        # Half size (the session's export is 240x320); the benchmark compares at 480x640.
        pairs.append((cv2.resize(rgb, (W, H), interpolation=cv2.INTER_AREA), cv2.resize(th, (W, H))))
    worst, agree = _agreement(ort_refine, torch_refine, pairs)
    assert worst <= 1 and agree >= 0.995, (worst, agree)


def test_seg_refine_off_matches_torch_and_keeps_the_fused_image(
    ort_coarse: FusionEngine, ort_refine: FusionEngine, torch_coarse: FusionEngine
) -> None:
    assert not ort_coarse.seg_refine
    assert "coarse" in ort_coarse.describe()["onnx_files"][0]
    pairs = _scenes(2)
    worst, agree = _agreement(ort_coarse, torch_coarse, pairs)
    assert worst <= 1 and agree >= 0.995, (worst, agree)
    rgb, th = pairs[0]
    a, b = ort_coarse.infer(rgb, th), ort_refine.infer(rgb, th)
    assert np.array_equal(a.fused, b.fused) and (a.mask != b.mask).mean() > 0.001


def test_probs_batches_and_thermal_forms(ort_refine: FusionEngine, torch_refine: FusionEngine) -> None:
    (rgb, th), (rgb2, th2) = _scenes(2)
    r = ort_refine.infer(rgb, th, return_probs=True)
    t = torch_refine.infer(rgb, th, return_probs=True)
    assert r.probs is not None and r.probs.shape == (9, H, W) and r.probs.dtype == np.float32
    np.testing.assert_allclose(r.probs.sum(axis=0), 1.0, atol=1e-4)
    np.testing.assert_allclose(r.probs, t.probs, atol=2e-3)
    assert set(r.timings) == {"preprocess", "inference", "postprocess"}
    # uint8, float and 3-channel thermal are the same frame; a batch equals single calls (a batch-1 file
    # runs frame by frame); a smaller thermal frame is resized onto the RGB grid as with torch.
    for variant in (th.astype(np.float32) / 255.0, np.repeat(th[:, :, None], 3, axis=2)):
        assert np.array_equal(ort_refine.infer(rgb, variant).fused, r.fused)
    batch = ort_refine.infer_batch([(rgb, th), (rgb2, th2)])
    assert np.array_equal(batch[0].fused, r.fused) and np.array_equal(batch[0].mask, r.mask)
    assert np.array_equal(batch[1].fused, ort_refine.infer(rgb2, th2).fused)
    small = cv2.resize(th, (W // 2, H // 2))
    a, b = ort_refine.infer(rgb, small), torch_refine.infer(rgb, small)
    assert np.abs(a.fused.astype(np.int16) - b.fused).max() <= 1


BAD_INPUTS = [
    ("not an array", np.zeros((H, W), np.uint8)),
    (np.zeros((H, W, 4), np.uint8), np.zeros((H, W), np.uint8)),
    (np.zeros((H, W, 3), np.float32), np.zeros((H, W), np.uint8)),
    (np.zeros((0, W, 3), np.uint8), np.zeros((H, W), np.uint8)),
    (np.zeros((H, W, 3), np.uint8), np.zeros((H, W), np.uint16)),
    (np.zeros((H, W, 3), np.uint8), np.full((H, W), np.nan, np.float32)),
    (np.zeros((H, W, 3), np.uint8), np.full((H, W), 2.0, np.float32)),
    (np.zeros((H, W, 3), np.uint8), np.zeros((H, W, 2), np.uint8)),
]


@pytest.mark.parametrize(("rgb", "thermal"), BAD_INPUTS)
def test_bad_input_errors_are_identical(
    ort_refine: FusionEngine, torch_refine: FusionEngine, rgb: object, thermal: object
) -> None:
    messages = []
    for engine in (torch_refine, ort_refine):
        with pytest.raises(ValueError) as err:
            engine.infer(rgb, thermal)  # type: ignore[arg-type]
        messages.append(str(err.value))
    assert messages[0] == messages[1]


# ---- an .onnx file as the checkpoint ----------------------------------------------------------------------


def test_onnx_file_as_checkpoint(onnx_file: Path, ort_refine: FusionEngine) -> None:
    rgb, th = _scenes(1)[0]
    with FusionEngine(onnx_file, device="cpu", backend="onnxruntime", num_threads=1) as engine:
        assert engine.describe()["model"] == "file" and engine.checkpoint == onnx_file
        assert engine.class_names == ort_refine.class_names and engine.seg_refine
        assert np.array_equal(engine.infer(rgb, th).fused, ort_refine.infer(rgb, th).fused)
        with pytest.raises(ValueError, match=rf"exported for {H}x{W}.*--size 96 128"):
            engine.infer(np.zeros((96, 128, 3), np.uint8), np.zeros((96, 128), np.uint8))
    with pytest.raises(ValueError, match=r"exported with the segmentation refinement.*--no-seg-refine"):
        FusionEngine(onnx_file, device="cpu", backend="onnxruntime", seg_refine=False)


def test_unusable_onnx_files(tmp_path: Path, onnx_file: Path) -> None:
    import onnx

    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a protobuf at all")
    with pytest.raises(CheckpointError, match="not a loadable ONNX model"):
        FusionEngine(garbage, device="cpu", backend="onnxruntime")
    with pytest.raises(CheckpointError, match="not found"):
        FusionEngine(tmp_path / "none.onnx", device="cpu", backend="onnxruntime")
    model = onnx.load(str(onnx_file))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    with pytest.raises(CheckpointError, match=r"no 'sccosf' metadata.*sccosf-export"):
        FusionEngine(bare, device="cpu", backend="onnxruntime")


def test_bad_checkpoint_errors_are_identical(tmp_path: Path) -> None:
    """Cache mode loads the checkpoint at construction, so a bad one fails there, as with torch."""
    bad = tmp_path / "truncated.safetensors"
    bad.write_bytes(SHIPPED.read_bytes()[:5000])
    for path in (bad, tmp_path / "missing.safetensors"):
        messages = []
        for backend in ("torch", "onnxruntime"):
            with pytest.raises(CheckpointError) as err:
                FusionEngine(path, device="cpu", backend=backend, onnx_cache=tmp_path)
            messages.append(str(err.value))
        assert messages[0] == messages[1]


def test_backend_precision_and_device_errors(onnx_file: Path) -> None:
    with pytest.raises(ValueError, match="backend must be one of"):
        FusionEngine(device="cpu", backend="tensorrt")
    with pytest.raises(ValueError, match="precision 'bf16' is not available with backend 'onnxruntime'"):
        FusionEngine(onnx_file, device="cpu", backend="onnxruntime", precision="bf16")
    messages = []
    for backend in ("torch", "onnxruntime"):
        with pytest.raises(ValueError) as err:
            FusionEngine(onnx_file, device="tpu", backend=backend)
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(ValueError, match=r"no CUDAExecutionProvider.*onnxruntime-gpu"):
            FusionEngine(onnx_file, device="cuda", backend="onnxruntime")
        # auto: no GPU provider here, so CPU only
        with FusionEngine(onnx_file, device="auto", backend="onnxruntime") as engine:
            assert engine.describe()["providers"] == ["CPUExecutionProvider"]
    with pytest.raises(BackendUnavailableError, match="TensorrtExecutionProvider"):
        FusionEngine(onnx_file, backend="onnxruntime", ort_providers=["TensorrtExecutionProvider"])


def test_provider_order() -> None:
    from sccosf_ros.backends.ort_backend import select_providers

    every = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert select_providers("auto", every) == every
    assert select_providers("cuda:1", every[1:]) == every[1:]
    assert select_providers("cpu", every) == every[2:]
    assert select_providers("auto", every[2:]) == every[2:]
    assert select_providers("auto", every, ["CUDAExecutionProvider"]) == every[1:]


def test_provider_options_cache_tensorrt_engines_and_take_extras(tmp_path: Path) -> None:
    """TensorRT engines and timing caches go to disk under the ONNX cache (a restart loads them);
    ``ort_provider_options`` adds per-provider options on top, as strings (fp16 TensorRT engines)."""
    from sccosf_ros.backends.ort_backend import _provider_options

    trt, cuda, cpu = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
    plain = _provider_options([trt, cuda, cpu], 1, tmp_path)
    assert plain[0]["trt_engine_cache_enable"] == "True" and plain[0]["device_id"] == "1"
    assert plain[0]["trt_engine_cache_path"] == str(tmp_path / "trt") and "trt_fp16_enable" not in plain[0]
    assert plain[1:] == [{"device_id": "1"}, {}]
    fp16 = _provider_options([trt, cpu], 0, tmp_path, {trt: {"trt_fp16_enable": True}, cuda: {"x": 1}})
    assert fp16[0]["trt_fp16_enable"] == "True" and fp16[0]["trt_engine_cache_enable"] == "True"
    assert fp16[1] == {}  # options of a provider not in the list are ignored


def test_missing_onnxruntime_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(BackendUnavailableError, match=r"onnxruntime.*not installed.*sccosf_ros\[onnx\]"):
        FusionEngine(device="cpu", backend="onnxruntime")
    with pytest.raises(BackendUnavailableError, match=r"needs onnxruntime.*sccosf_ros\[onnx\]"):
        onnx_exporter.export_onnx(SHIPPED, tmp_path / "x.onnx")
    from sccosf_ros.cli.export import main as export_main
    from sccosf_ros.cli.fuse import main as fuse_main

    (tmp_path / "vi").mkdir()
    (tmp_path / "ir").mkdir()
    cv2.imwrite(str(tmp_path / "vi" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "ir" / "a.png"), np.zeros((8, 8), np.uint8))
    args = ["--rgb", str(tmp_path / "vi"), "--thermal", str(tmp_path / "ir"), "--out", str(tmp_path / "o")]
    assert fuse_main([*args, "--backend", "onnxruntime", "--quiet"]) == 2
    assert export_main(["--onnx", str(tmp_path / "x.onnx")]) == 2
    assert not (tmp_path / "x.onnx").exists()
    # The default path never needs it.
    with FusionEngine(device="cpu", num_threads=1) as engine:
        assert engine.backend == "torch"


def test_cache_mode_exports_once_and_reuses(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, onnx_file: Path
) -> None:
    """A miss exports (here: a stand-in that copies the session's file), a second engine reuses the file."""
    calls: list[tuple] = []

    def fake_export(checkpoint, out, height, width, seg_refine=True, **kwargs):
        calls.append((Path(checkpoint), height, width, seg_refine))
        shutil.copy(onnx_file, out)

    monkeypatch.setattr(onnx_exporter, "export_onnx", fake_export)
    rgb, th = _scenes(1)[0]
    with FusionEngine(device="cpu", backend="onnxruntime", onnx_cache=tmp_path) as engine:
        assert engine.describe()["onnx_files"] == []  # nothing exported before the first frame
        engine.infer(rgb, th)
        engine.infer(rgb, th)
    assert calls == [(SHIPPED, H, W, True)]
    with FusionEngine(device="cpu", backend="onnxruntime", onnx_cache=tmp_path) as engine:
        engine.infer(rgb, th)
        (path,) = engine.describe()["onnx_files"]
    assert len(calls) == 1 and Path(path).parent == tmp_path


def test_cache_mode_does_not_retry_a_failed_export(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An export that fails (here: a full disk) is not tried again for every later frame of that size (each
    try takes ~20 s in a node); those frames get one clear error, and other sizes still export."""
    calls: list[tuple[int, int]] = []

    def failing_export(checkpoint, out, height, width, seg_refine=True, **kwargs):
        calls.append((height, width))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnx_exporter, "export_onnx", failing_export)
    rgb, th = _scenes(1)[0]
    with FusionEngine(device="cpu", backend="onnxruntime", onnx_cache=tmp_path) as engine:
        with pytest.raises(OSError, match="No space left"):
            engine.infer(rgb, th)
        for _ in range(3):
            with pytest.raises(BackendUnavailableError, match=rf"{H}x{W} frames: its export failed.*space"):
                engine.infer(rgb, th)
        assert calls == [(H, W)]
        small = (rgb[::2, ::2].copy(), th[::2, ::2].copy())
        with pytest.raises(OSError):
            engine.infer(*small)
    assert calls == [(H, W), (H // 2, W // 2)]


def test_export_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, onnx_file: Path, capsys) -> None:
    """Argument handling and the report; the export itself is the session's (see the module docstring)."""
    from sccosf_ros.cli import export as cli

    seen: dict = {}

    def fake_export(checkpoint, out, height, width, **kwargs):
        seen.update(checkpoint=Path(checkpoint), size=(height, width), **kwargs)
        shutil.copy(onnx_file, out)
        import onnx

        props = {p.key: p.value for p in onnx.load(str(onnx_file)).metadata_props}
        return onnx_format.ExportInfo.from_json(props["sccosf_onnx"])

    monkeypatch.setattr(cli, "export_onnx", fake_export)
    out = tmp_path / "m.onnx"
    assert cli.main(["--onnx", str(out), "--size", "120", "160", "--no-seg-refine", "--dynamic-batch"]) == 0
    assert seen == {
        "checkpoint": SHIPPED,
        "size": (120, 160),
        "seg_refine": False,
        "dynamic_batch": True,
        "opset": 18,
        "check": True,
    }
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and "fused max diff" in text and "mask agreement" in text
    assert cli.main(["--onnx", str(tmp_path / "m.txt")]) == 2
    assert cli.main(["--onnx", str(out), "--opset", "17"]) == 2
    monkeypatch.undo()
    assert cli.main(["--onnx", str(out), "--checkpoint", str(tmp_path / "none.safetensors")]) == 2
    assert "checkpoint file not found" in capsys.readouterr().err


def test_fuse_cli_with_onnxruntime(tmp_path: Path, onnx_file: Path, ort_refine: FusionEngine) -> None:
    from sccosf_ros.cli.fuse import main

    rgb, th = _scenes(1)[0]
    (tmp_path / "vi").mkdir()
    (tmp_path / "ir").mkdir()
    cv2.imwrite(str(tmp_path / "vi" / "a.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "ir" / "a.png"), th)
    args = ["--rgb", str(tmp_path / "vi"), "--thermal", str(tmp_path / "ir"), "--out", str(tmp_path / "o")]
    assert main([*args, "--checkpoint", str(onnx_file), "--backend", "onnxruntime", "--quiet"]) == 0
    fused = cv2.cvtColor(cv2.imread(str(tmp_path / "o" / "fused" / "a.png")), cv2.COLOR_BGR2RGB)
    # (the CLI's thermal normaliser rescales in float, so allow the backends' one grey level)
    assert np.abs(fused.astype(np.int16) - ort_refine.infer(rgb, th).fused).max() <= 1


def test_eval_cli_and_node_take_the_backend() -> None:
    from sccosf_ros.cli.evaluate import config_from_args
    from sccosf_ros.node.params import SPECS, ParameterError, validate

    assert SPECS["backend"].default == "auto"
    assert validate({"backend": "onnxruntime"})["backend"] == "onnxruntime"
    with pytest.raises(ParameterError, match="backend"):
        validate({"backend": "tensorrt"})
    import argparse

    ns = argparse.Namespace(
        rgb_topic="a",
        thermal_topic="b",
        label_topic="",
        checkpoint=None,
        device="cpu",
        threads=1,
        slop=0.05,
        queue_size=5,
        storage="mcap",
        no_progress=True,
        backend="onnxruntime",
    )
    assert config_from_args(ns).backend == "onnxruntime"


def test_auto_backend_is_onnxruntime_on_a_cpu_where_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from sccosf_ros.backends import ONNX_PACKAGES, resolve_backend

    for name in ("torch", "onnxruntime"):
        assert resolve_backend(name, on_cpu=True) == name  # explicit names are kept
    assert resolve_backend("auto", on_cpu=True) == "onnxruntime"  # this venv has all three packages
    assert resolve_backend("auto", on_cpu=False) == "torch"  # a GPU: the CUDA path of torch
    assert resolve_backend("auto", on_cpu=True, precision="bf16") == "torch"  # the graph is fp32
    assert resolve_backend("auto", on_cpu=False, checkpoint="/m/tiny.ONNX") == "onnxruntime"
    real = importlib.util.find_spec
    for missing in ONNX_PACKAGES:  # any one of the runtime and the exporter missing: torch
        monkeypatch.setattr(importlib.util, "find_spec", lambda n, m=missing: None if n == m else real(n))
        assert resolve_backend("auto", on_cpu=True) == "torch"


def test_engine_resolves_auto(random_checkpoint: Path, onnx_cache: Path) -> None:
    with FusionEngine(random_checkpoint, device="cpu", backend="auto", onnx_cache=onnx_cache) as engine:
        assert engine.backend == "onnxruntime"
    with FusionEngine(random_checkpoint, device="cpu", backend="auto", precision="bf16") as engine:
        assert engine.backend == "torch"
    with pytest.raises(ValueError, match="backend must be one of"):
        FusionEngine(random_checkpoint, device="cpu", backend="tensorrt")


def test_node_passes_the_backend_to_the_engine() -> None:
    rclpy = pytest.importorskip("rclpy")
    import os

    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from sccosf_ros.node.fusion_node import FusionNode

    seen: dict = {}

    class Engine:
        def __init__(self, **kwargs):
            seen.update(kwargs)
            self.class_names = ["a", "b"]
            self.palette = np.zeros((2, 3), np.uint8)
            self.device = "fake"

        def close(self) -> None:
            pass

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=10 + os.getpid() % 80)
    try:
        node = FusionNode(
            context=ctx,
            engine_factory=Engine,
            parameter_overrides=[Parameter("backend", value="onnxruntime")],
        )
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert seen["backend"] == "onnxruntime"
        node.trigger_deactivate()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)
