"""benchmarks/gpu_check.sh --cpu-dry-run: every step of the GPU check runs on the CPU with tiny sizes and
short durations and writes the JSON and markdown the GPU run will write (docs/gpu.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("env", "tests", "precision", "forward", "onnx", "node", "scan", "train", "onnx_trt")


@pytest.mark.slow
@pytest.mark.timeout(240, func_only=True)  # the INT8 fixture's export (once a session) is not the dry run's
def test_cpu_dry_run_writes_every_step(tmp_path: Path, tiny_onnx_240: Path, tiny_int8_240: Path) -> None:
    out = tmp_path / "gpu_check"
    env = dict(
        os.environ,
        PYTHON=sys.executable,
        GPU_CHECK_ONNX=str(tiny_onnx_240),
        GPU_CHECK_INT8=str(tiny_int8_240),
        GPU_CHECK_WORK=str(tmp_path / "work"),
    )
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu-dry-run", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Three files come back (a device run returns at most 8); the work folder keeps the rest.
    assert sorted(p.name for p in out.iterdir()) == ["details.tar.gz", "results.json", "results.md"]
    with tarfile.open(out / "details.tar.gz") as tar:
        names = tar.getnames()
    assert all(f"steps/{s}.json" in names for s in STEPS) and "logs/gpu_check.txt" in names
    result = json.loads((out / "results.json").read_text())
    assert result["dry_run"] and result["gpu"] == "none (CPU)"
    steps = result["steps"]
    assert set(steps) == set(STEPS)
    failed = {k: (v.get("status"), v.get("error")) for k, v in steps.items() if v.get("status") != "ok"}
    assert not failed, failed
    d = {k: v["data"] for k, v in steps.items()}
    assert d["env"]["cuda_available"] is False
    # The CUDA tests are collected and skip here; nothing fails.
    assert d["tests"]["counts"]["failed"] == 0 and d["tests"]["counts"]["error"] == 0
    assert any(
        "cuda_backend_matches_sequential" in t["test"] and t["outcome"] == "skipped"
        for t in d["tests"]["gpu_tests"]
    )
    rows = d["precision"]["rows"]
    assert rows["cpu fp32"]["fused_max_diff"] == 0 and rows["cpu fp32"]["mask_differ_share_max"] == 0
    assert "CUDA" in rows["cpu fp16"]["skipped"] and rows["cpu bf16"]["fused_max_diff"] >= 0
    measured = [r for r in d["forward"]["rows"] if "frames_per_s" in r]
    assert {(r["preset"], r["batch"]) for r in measured} == {
        ("tiny", 1),
        ("tiny", 2),
        ("base", 1),
        ("base", 2),
    }
    assert all(r["frames_per_s"] > 0 for r in measured)
    node = d["node"]
    assert node["mode"].startswith("worker path") and node["pairs_in"] > 0 and node["pairs_out"] > 0
    assert node["latency_ms_p95"] >= node["latency_ms_p50"] > 0
    cpu = d["onnx"]["rows"]["CPU"]
    assert cpu["providers_in_use"] == ["CPUExecutionProvider"] and cpu["frames_per_s"] > 0
    assert cpu["vs_torch_cpu_fp32"]["fused_max_diff"] <= 1
    assert "not in this onnxruntime build" in d["onnx_trt"]["rows"]["TensorRT"]["skipped"]
    assert "not in this onnxruntime build" in d["onnx_trt"]["rows"]["TensorRT fp16"]["skipped"]
    assert "not in this onnxruntime build" in d["onnx"]["rows"]["CUDA fp16"]["skipped"]
    int8 = d["onnx"]["rows"]["CPU INT8"]  # INT8 against fp32 on this CPU, interleaved
    assert int8["threads_2"]["int8_median_ms"] > 0 and int8["threads_2"]["fp32_median_ms"] > 0
    assert int8["vs_float"]["fused_mean_abs_diff"] <= 2 and "cpu" in int8 and "flags" in int8
    assert {r["backend"] for r in d["scan"]["rows"]} == {"chunked"}
    assert all(r["max_abs_err_vs_f64_sequential"] < 1e-3 for r in d["scan"]["rows"])
    assert d["train"]["logged_steps"] >= 1 and d["train"]["images_per_s_median"] > 0
    md = (out / "results.md").read_text()
    for heading in (
        "engine vs CPU fp32",
        "forward with pre/post",
        "**node**",
        "ONNX Runtime",
        "**scan**",
        "training",
    ):
        assert heading in md


@pytest.mark.slow
def test_float16_copy_keeps_the_graph_io_and_is_carried(
    tmp_path: Path, tiny_onnx_240: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The "CUDA fp16" row's graph (gpu_wheels.sh --fp16 makes it beside the float file): float16 inside,
    the engine's uint8/float32 inputs and outputs kept, so the engine runs it as it is (here on the CPU
    provider: its values on a GPU are what the GPU check measures); the float file is picked, not it."""
    import argparse
    import shutil

    import onnxruntime as ort

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_check

    carry = tmp_path / "gpu_carry"
    (carry / "onnx").mkdir(parents=True)
    model = Path(shutil.copy(tiny_onnx_240, carry / "onnx" / "sccosf_tiny_240x320.onnx"))
    copy = gpu_check.float16_copy(model, model.parent)
    assert copy.name == "sccosf_tiny_240x320_fp16.onnx" and copy.stat().st_size < 0.7 * model.stat().st_size
    stamp = copy.stat().st_mtime_ns
    assert gpu_check.float16_copy(model, tmp_path / "elsewhere") == copy and copy.stat().st_mtime_ns == stamp
    session = ort.InferenceSession(str(copy), providers=["CPUExecutionProvider"])
    assert [i.type for i in session.get_inputs()] == ["tensor(uint8)", "tensor(float)"]
    assert [o.type for o in session.get_outputs()][:2] == ["tensor(uint8)", "tensor(uint8)"]
    monkeypatch.setattr(gpu_check, "CARRY", carry)
    assert gpu_check._onnx_files(argparse.Namespace(onnx=None, int8=None)) == (model, None)
