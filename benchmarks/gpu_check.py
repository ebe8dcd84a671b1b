"""The steps of ``benchmarks/gpu_check.sh``: one step per process, each writing ``OUT/steps/NAME.json``.

    python benchmarks/gpu_check.py STEP --out OUT [--dry-run] [--budget SECONDS]
    python benchmarks/gpu_check.py report --out OUT      # results.json + results.md from the step files

Steps: env, tests, precision, forward, onnx, node, scan, train, onnx_trt (see docs/gpu.md).
``--dry-run`` runs each step on the CPU with tiny sizes and short durations, so the whole script is
proven on a machine without a GPU; the JSON says ``"dry_run": true`` and every CUDA-only measurement is
reported as skipped there. A step that fails writes its error into its JSON and exits non-zero; the
shell script goes on regardless.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

CARRY = ROOT / "gpu_carry"  # what benchmarks/gpu_wheels.sh prepares (ignored by git, carried to the GPU)
MSRS_CANDIDATES = (ROOT.parent / "shared" / "data" / "msrs", CARRY / "msrs")
PRECISIONS = ("fp32", "fp16", "bf16")


class StepSkippedError(Exception):
    """The step cannot run here (reason in the message); not a failure."""


# ---- helpers ---------------------------------------------------------------------------------------------


def cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def pairs(n: int, h: int, w: int) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """``n`` (rgb, thermal uint8) pairs at h×w: real MSRS pairs if any folder has them, else synthetic."""
    from sample_pairs import sample_pairs

    return sample_pairs(MSRS_CANDIDATES, n, h, w, seed=3)


def random_checkpoint(preset: str, folder: Path) -> Path:
    """A seeded random-weight checkpoint (``base`` ships no weights; speed does not depend on them)."""
    import torch

    from sccosf_ros.checkpoint import CheckpointMeta, save_checkpoint
    from sccosf_ros.model import build_model

    path = folder / f"{preset}_random.safetensors"
    if not path.is_file():
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = build_model(preset, num_classes=9)
        meta = CheckpointMeta.for_model(model, preset=preset, training={"note": "random weights, gpu_check"})
        save_checkpoint(path, model, meta)
    return path


def diff(a: Any, b: Any) -> dict[str, float]:
    return {
        "fused_max_diff": int(np.abs(a.fused.astype(np.int16) - b.fused.astype(np.int16)).max()),
        "mask_differ_share": float((a.mask != b.mask).mean()),
    }


def timed(fn: Callable[[], Any], seconds: float, min_runs: int = 3) -> list[float]:
    """Call ``fn`` (synchronising CUDA) until ``seconds`` passed and at least ``min_runs`` ran; ms each."""
    out: list[float] = []
    t_end = time.perf_counter() + seconds
    while len(out) < min_runs or time.perf_counter() < t_end:
        t = time.perf_counter()
        fn()
        sync()
        out.append((time.perf_counter() - t) * 1e3)
    return out


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


# ---- steps -----------------------------------------------------------------------------------------------


def step_env(a: argparse.Namespace) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cpu_count": os.cpu_count(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        info["cuda_runtime"] = torch.version.cuda
        info["bf16_supported"] = torch.cuda.is_bf16_supported()
    for mod in ("triton", "onnxruntime", "onnx", "onnxscript", "cv2", "safetensors", "yaml", "tqdm", "rclpy"):
        try:
            m = __import__(mod)
            info[mod] = getattr(m, "__version__", "present")
        except Exception as exc:  # any import failure is "absent" here
            info[mod] = f"absent ({type(exc).__name__})"
    try:
        import onnxruntime as ort

        info["ort_providers"] = ort.get_available_providers()
    except ImportError:
        pass
    from sccosf_ros import scan
    from sccosf_ros.scan import mamba_triton

    info["scan_backends_cuda"] = scan.available_backends("cuda")
    info["mamba_triton"] = "available" if mamba_triton.is_available() else mamba_triton.unavailable_reason()
    info["pairs"] = pairs(1, 48, 64)[1]
    return info


def step_tests(a: argparse.Namespace) -> dict[str, Any]:
    """The CUDA tests (skipped on CPU machines) and the suites around the engine, with pytest."""
    import xml.etree.ElementTree as ET

    xml = a.out / "tests_junit.xml"
    files = ["test/test_scan.py", "test/test_engine.py", "test/test_model.py", "test/test_onnx.py"]
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", f"--junitxml={xml}", *files]
    if a.dry_run:
        cmd = [*cmd[: -len(files)], "test/test_scan.py", "-k", "cuda or triton or compile"]
    try:
        import pytest_timeout  # noqa: F401

        cmd.append("--timeout=45")  # one hanging test (a first torch.compile) must not take the others
    except ImportError:
        pass
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(30, a.budget - 5))
    (a.out / "logs").mkdir(exist_ok=True)
    (a.out / "logs" / "pytest.txt").write_text(proc.stdout + proc.stderr)
    cases = []
    if xml.is_file():
        for tc in ET.parse(xml).iter("testcase"):
            outcome = "passed"
            for tag in ("failure", "error", "skipped"):
                el = tc.find(tag)
                if el is not None:
                    outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                    reason = el.get("message", "")[:200]
                    break
            else:
                reason = ""
            name = f"{tc.get('classname', '').split('.')[-1]}::{tc.get('name')}"
            cases.append({"test": name, "outcome": outcome, "reason": reason})
    if not cases:
        raise RuntimeError(
            f"pytest ran no test (exit {proc.returncode}): {(proc.stdout + proc.stderr)[-300:]}"
        )
    counts = {k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failed", "error", "skipped")}
    gpu = [c for c in cases if any(k in c["test"].lower() for k in ("cuda", "triton", "compile"))]
    return {"returncode": proc.returncode, "counts": counts, "gpu_tests": gpu, "summary": proc.stdout[-400:]}


def step_precision(a: argparse.Namespace) -> dict[str, Any]:
    """The engine on CUDA in fp32/fp16/bf16 against CPU fp32, on the same pairs."""
    from sccosf_ros.engine import FusionEngine

    h, w, n = (96, 128, 1) if a.dry_run else (480, 640, 8)
    data, source = pairs(n, h, w)
    ref_engine = FusionEngine(device="cpu", precision="fp32")
    ref = [ref_engine.infer(*p) for p in data]
    ref_engine.close()
    rows = {}
    device = "cuda" if cuda() else "cpu"
    for prec in PRECISIONS:
        try:
            eng = FusionEngine(device=device, precision=prec)
        except ValueError as exc:
            rows[f"{device} {prec}"] = {"skipped": str(exc)}
            continue
        worst, share = 0, 0.0
        for r, p in zip(ref, data, strict=True):
            d = diff(eng.infer(*p), r)
            worst, share = max(worst, d["fused_max_diff"]), max(share, d["mask_differ_share"])
        rows[f"{device} {prec}"] = {"fused_max_diff": worst, "mask_differ_share_max": share}
        eng.close()
    targets = {"fp32": (1, 0.001), "fp16": (3, 0.01), "bf16": (3, 0.01)}
    for key, r in rows.items():
        prec = key.split()[1]
        if "fused_max_diff" in r and device == "cuda":
            g, m = targets[prec]
            r["meets_target"] = r["fused_max_diff"] <= g and r["mask_differ_share_max"] <= m
    return {"size": [h, w], "pairs": source, "reference": "cpu fp32", "rows": rows}


def step_forward(a: argparse.Namespace) -> dict[str, Any]:
    """tiny and base, batch 1 and 8, per precision, engine level (with pre/post): frames/s, GPU memory."""
    import torch

    from sccosf_ros.engine import FusionEngine
    from sccosf_ros.paths import default_checkpoint_path

    h, w = (32, 64) if a.dry_run else (480, 640)
    batches = (1, 2) if a.dry_run else (1, 8)
    seconds = 0.0 if a.dry_run else 2.0
    warmups, min_runs = (1, 1) if a.dry_run else (2, 3)
    device = "cuda" if cuda() else "cpu"
    data, source = pairs(8, h, w)
    rows = []
    for preset in ("tiny", "base"):
        ckpt = default_checkpoint_path() if preset == "tiny" else random_checkpoint(preset, a.out)
        for prec in PRECISIONS:
            try:
                eng = FusionEngine(ckpt, device=device, precision=prec)
            except ValueError as exc:
                rows.append({"preset": preset, "precision": prec, "skipped": str(exc)})
                continue
            for b in batches:
                batch = [data[i % len(data)] for i in range(b)]
                if device == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                for _ in range(warmups):  # cudnn autotuning, allocator
                    eng.infer_batch(batch, max_batch=b)
                ms = timed(
                    lambda eng=eng, batch=batch, b=b: eng.infer_batch(batch, max_batch=b), seconds, min_runs
                )
                med = statistics.median(ms)
                row = {
                    "preset": preset,
                    "precision": prec,
                    "batch": b,
                    "median_ms_per_batch": round(med, 2),
                    "frames_per_s": round(1000.0 * b / med, 1),
                    "runs": len(ms),
                }
                if device == "cuda":
                    row["peak_gpu_mem_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
                rows.append(row)
            eng.close()
    target = next(
        (r for r in rows if (r["preset"], r["precision"], r.get("batch")) == ("base", "bf16", 1)), None
    )
    out = {"device": device, "size": [h, w], "frames": source, "rows": rows}
    if target and device == "cuda" and "frames_per_s" in target:
        out["base_bf16_b1_meets_200fps"] = target["frames_per_s"] >= 200
    return out


class _Msg:
    """Duck-typed sensor_msgs/Image, as the node's PairProcessor reads it."""

    def __init__(self, array: np.ndarray, encoding: str) -> None:
        self.height, self.width = array.shape[:2]
        self.encoding = encoding
        self.is_bigendian = 0
        self.step = array.strides[0]
        self.data = array.tobytes()


def step_node(a: argparse.Namespace) -> dict[str, Any]:
    """The node at 640×480, 30 Hz RGB + 30 Hz thermal: over loopback DDS when rclpy imports, else the
    node's worker path (conversion, pairing, engine, output conversion) driven at that rate."""
    duration = 2.0 if a.dry_run else 60.0
    h, w = (120, 160) if a.dry_run else (480, 640)
    try:
        import rclpy  # noqa: F401

        has_ros = True
    except ImportError:
        has_ros = False
    if has_ros and not a.dry_run:
        report = a.out / "node_bench.json"
        cmd = [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_node.py"),
            "--duration",
            str(duration),
            "--size",
            str(h),
            str(w),
            "--thermal-size",
            str(h),
            str(w),
            "--rgb-hz",
            "30",
            "--thermal-hz",
            "30",
            "--device",
            "cuda" if cuda() else "cpu",
            "--input-qos",
            "reliable",
            "--out",
            str(report),
        ]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(30, a.budget - 5))
        (a.out / "logs").mkdir(exist_ok=True)
        (a.out / "logs" / "bench_node.txt").write_text(proc.stdout + proc.stderr)
        if proc.returncode == 0 and report.is_file():
            return {"mode": "real node over loopback DDS (bench_node.py)", **json.loads(report.read_text())}
        note = f"bench_node.py failed (rc {proc.returncode}); fell back to the worker path"
    else:
        note = (
            "rclpy not importable: the node's worker path, driven at the camera rate" if not has_ros else ""
        )
    return {"mode": "worker path (no DDS)", "note": note, **worker_path(h, w, duration)}


def worker_path(h: int, w: int, duration: float) -> dict[str, Any]:
    """Player thread at 30+30 Hz → ApproximateTimePairer → latest pair → worker: PairProcessor (message
    conversion, engine, output conversion), as ``FusionNode`` does (its single worker keeps the newest
    pair; an older waiting pair is dropped as slow)."""
    from sccosf_ros.engine import FusionEngine
    from sccosf_ros.imaging.palette import MSRS_PALETTE
    from sccosf_ros.node.params import SPECS, thermal_normalizer
    from sccosf_ros.pairing import ApproximateTimePairer
    from sccosf_ros.pipeline import OUTPUTS, PairProcessor

    engine = FusionEngine(device="cuda" if cuda() else "cpu")
    engine.warmup(h, w, runs=3 if cuda() else 1)
    proc = PairProcessor(engine, thermal_normalizer(), np.asarray(MSRS_PALETTE, np.uint8), set(OUTPUTS[:3]))
    pairer = ApproximateTimePairer(SPECS["sync_queue_size"].default, SPECS["sync_slop"].default)
    data, _ = pairs(8, h, w)
    msgs = [(_Msg(r, "rgb8"), _Msg((t.astype(np.uint16) * 257), "mono16")) for r, t in data]
    cond = threading.Condition()
    latest: list[Any] = []
    stats = {"pairs_in": 0, "pairs_out": 0, "dropped_slow": 0, "errors": 0}
    lat_ms: list[float] = []
    proc_ms: list[float] = []
    done = threading.Event()

    def worker() -> None:
        while True:
            with cond:
                while not latest and not done.is_set():
                    cond.wait(0.1)
                if not latest:
                    return
                pair, t_arrival = latest.pop()
            t = time.perf_counter()
            try:
                proc.process(pair.rgb, pair.thermal)
            except Exception:  # counted like the node counts bad pairs
                stats["errors"] += 1
                continue
            now = time.perf_counter()
            proc_ms.append((now - t) * 1e3)
            lat_ms.append((now - t_arrival) * 1e3)  # newest frame of the pair arrived -> outputs ready
            stats["pairs_out"] += 1

    th = threading.Thread(target=worker, daemon=True)
    th.start()
    period = 1.0 / 30
    t0 = time.perf_counter()
    n = int(duration * 30)
    for i in range(n):
        target = t0 + i * period
        while (d := target - time.perf_counter()) > 0:
            time.sleep(min(d, 0.005))
        stamp = int(target * 1e9)
        rgb_msg, th_msg = msgs[i % len(msgs)]
        arrivals = pairer.add("rgb", stamp, rgb_msg) + pairer.add("thermal", stamp + 1_000_000, th_msg)
        for pair in arrivals:
            stats["pairs_in"] += 1
            with cond:
                if latest:
                    stats["dropped_slow"] += 1
                    latest.clear()
                latest.append((pair, time.perf_counter()))
                cond.notify()
    play_s = time.perf_counter() - t0
    done.set()
    th.join(timeout=10)
    engine.close()
    return {
        "size": [h, w],
        "rate_hz": {"rgb": 30, "thermal": 30},
        "duration_s": round(play_s, 1),
        **stats,
        "frames_played": {"rgb": n, "thermal": n},
        "output_hz": round(stats["pairs_out"] / play_s, 2),
        "latency_ms_p50": pct(lat_ms, 50),
        "latency_ms_p95": pct(lat_ms, 95),
        "processing_ms_p50": pct(proc_ms, 50),
        "processing_ms_p95": pct(proc_ms, 95),
        "kept_every_pair": stats["pairs_out"] == stats["pairs_in"],
    }


def step_onnx(a: argparse.Namespace) -> dict[str, Any]:
    """The exported model in ONNX Runtime: fp32 with the CUDA and CPU providers, fp16 with CUDA (a float16
    copy of the graph), and the INT8 file on this machine's CPU against fp32 at the same threads."""
    return _onnx(a, ("CUDA", "CUDA fp16", "CPU", "CPU INT8"))


def step_onnx_trt(a: argparse.Namespace) -> dict[str, Any]:
    """The same with TensorRT, fp16 first (its engine builds can take minutes: a step of its own, near the
    end); engines are cached on disk, and a second session shows the cache being used."""
    return _onnx(a, ("TensorRT fp16", "TensorRT"))


TRT = "TensorrtExecutionProvider"
ROW_PROVIDERS = {
    "TensorRT": [TRT],
    "TensorRT fp16": [TRT],
    "CUDA": ["CUDAExecutionProvider"],
    "CUDA fp16": ["CUDAExecutionProvider"],
    "CPU": ["CPUExecutionProvider"],
}


def _onnx_files(a: argparse.Namespace) -> tuple[Path | None, Path | None]:
    """(float, INT8) model files: ``--onnx`` / ``--int8``, else the carried ones by their metadata."""
    import onnxruntime as ort

    from sccosf_ros.backends.onnx_format import EXPORT_KEY

    fp32, int8 = a.onnx, a.int8
    for path in sorted((CARRY / "onnx").glob("*.onnx")):
        if path.stem.endswith(FP16_SUFFIX):  # the float16 copy (gpu_wheels.sh --fp16): CUDA fp16 row only
            continue
        meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta()
        precision = json.loads(meta.custom_metadata_map.get(EXPORT_KEY, "{}")).get("precision", "fp32")
        if precision == "int8":
            int8 = int8 or path
        else:
            fp32 = fp32 or path
    return fp32, int8


FP16_SUFFIX = "_fp16"


def float16_copy(model: Path, out: Path) -> Path:
    """The graph with float16 weights and arithmetic inside, float32/uint8 at its inputs and outputs
    (onnxruntime.transformers' converter; needs the onnx package, which the GPU machine may lack: there the
    copy ``benchmarks/gpu_wheels.sh --fp16`` made beside the float file is used)."""
    path = out / f"{model.stem}{FP16_SUFFIX}.onnx"
    carried = model.with_name(path.name)
    if carried.is_file():
        return carried
    try:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError as exc:
        raise StepSkippedError(
            f"the float16 conversion needs the onnx package ({exc}); gpu_wheels.sh --fp16 carries the copy"
        ) from None
    if not path.is_file():
        converted = convert_float_to_float16(onnx.load(str(model)), keep_io_types=True)
        onnx.save(converted, str(path))
    return path


def _provider_row(
    label: str, model: Path, data: list, ref: list, seconds: float, cache: Path
) -> dict[str, Any]:
    """One provider: start (TensorRT: engine build), agreement with torch CPU fp32, speed; for TensorRT a
    second session, which loads the engine from the cache instead of building it."""
    from sccosf_ros.engine import FusionEngine

    extra = {TRT: {"trt_fp16_enable": True}} if label == "TensorRT fp16" else {}
    kw = {"ort_providers": ROW_PROVIDERS[label], "ort_provider_options": extra, "onnx_cache": cache}
    t = time.perf_counter()
    eng = FusionEngine(model, device="auto", backend="onnxruntime", **kw)
    eng.infer(*data[0])  # TensorRT builds its engine here (cached under the ONNX cache dir's trt/)
    start_s = time.perf_counter() - t
    used = eng.describe()["providers"]
    worst, share = 0, 0.0
    for r, p in zip(ref, data, strict=True):
        d = diff(eng.infer(*p), r)
        worst, share = max(worst, d["fused_max_diff"]), max(share, d["mask_differ_share"])
    ms = timed(lambda eng=eng: eng.infer(*data[0]), seconds)
    eng.close()
    row = {
        "model": model.name,
        "providers_in_use": used,
        "first_call_s": round(start_s, 1),
        "median_ms": round(statistics.median(ms), 2),
        "frames_per_s": round(1000.0 / statistics.median(ms), 1),
        "vs_torch_cpu_fp32": {"fused_max_diff": worst, "mask_differ_share_max": share},
    }
    if label.startswith("TensorRT"):
        t = time.perf_counter()
        with FusionEngine(model, device="auto", backend="onnxruntime", **kw) as again:
            again.infer(*data[0])
        row["cached_engine_first_call_s"] = round(time.perf_counter() - t, 1)
        row["engine_cache"] = str(cache / "trt")
    return row


def cpu_flags() -> dict[str, Any]:
    """The CPU's model name and the instruction sets that decide INT8 speed (VNNI: 8-bit dot products)."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    name = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "")
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
    return {
        "cpu": name or platform.processor(),
        "cores": os.cpu_count(),
        "flags": [f for f in wanted if f in flags],
    }


def _int8_row(fp32: Path, int8: Path, data: list, seconds: float) -> dict[str, Any]:
    """INT8 and fp32 on this CPU, interleaved, at 2 threads and at all cores; agreement of the two."""
    from sccosf_ros.engine import FusionEngine

    rows: dict[str, Any] = {**cpu_flags(), "model": int8.name}
    for threads in dict.fromkeys((2, os.cpu_count() or 2)):
        kw = {"device": "cpu", "backend": "onnxruntime", "num_threads": threads}
        with FusionEngine(fp32, **kw) as e32, FusionEngine(int8, precision="int8", **kw) as e8:
            if "vs_float" not in rows:
                fused, agree = [], []
                for p in data:
                    r32, r8 = e32.infer(*p), e8.infer(*p)
                    fused.append(float(np.abs(r8.fused.astype(np.int16) - r32.fused.astype(np.int16)).mean()))
                    agree.append(float((r8.mask == r32.mask).mean()))
                rows["vs_float"] = {"fused_mean_abs_diff": max(fused), "mask_agreement_min": min(agree)}
            ms32: list[float] = []
            ms8: list[float] = []
            t_end = time.perf_counter() + seconds
            while len(ms8) < 3 or time.perf_counter() < t_end:
                for eng, out in ((e32, ms32), (e8, ms8)):
                    t = time.perf_counter()
                    eng.infer(*data[0])
                    out.append((time.perf_counter() - t) * 1e3)
        m32, m8 = statistics.median(ms32), statistics.median(ms8)
        rows[f"threads_{threads}"] = {
            "fp32_median_ms": round(m32, 2),
            "int8_median_ms": round(m8, 2),
            "int8_speedup": round(m32 / m8, 2),
        }
    return rows


def _onnx(a: argparse.Namespace, labels: tuple[str, ...]) -> dict[str, Any]:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise StepSkippedError(f"onnxruntime not importable ({exc})") from None
    from sccosf_ros.backends.onnx_format import read_onnx_metadata
    from sccosf_ros.engine import FusionEngine

    model, int8 = _onnx_files(a)
    if model is None:
        raise StepSkippedError("no ONNX model: pass --onnx or run benchmarks/gpu_wheels.sh (it exports one)")
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    _, info = read_onnx_metadata(dict(sess.get_modelmeta().custom_metadata_map), str(model))
    del sess
    h, w = info.height, info.width
    data, source = pairs(2 if a.dry_run else 6, h, w)
    seconds = 0.3 if a.dry_run else 2.0
    ref_engine = FusionEngine(device="cpu", seg_refine=info.seg_refine)
    ref = [ref_engine.infer(*p) for p in data]
    ref_engine.close()
    available = ort.get_available_providers()
    cache = Path(os.environ.get("SCCOSF_ONNX_CACHE") or a.out / "onnx_cache")
    rows: dict[str, Any] = {}
    for label in labels:
        try:
            if label == "CPU INT8":
                if int8 is None:
                    raise StepSkippedError("no INT8 file (benchmarks/gpu_wheels.sh --int8, or --int8 FILE)")
                rows[label] = _int8_row(model, int8, data, seconds)
                continue
            provider = ROW_PROVIDERS[label][0]
            if provider not in available:
                raise StepSkippedError(f"{provider} not in this onnxruntime build")
            if a.dry_run and provider != "CPUExecutionProvider":
                continue
            path = float16_copy(model, a.out) if label == "CUDA fp16" else model
            sub = cache / "fp16" if label == "TensorRT fp16" else cache  # one engine cache per precision
            rows[label] = _provider_row(label, path, data, ref, seconds, sub)
        except StepSkippedError as exc:
            rows[label] = {"skipped": str(exc)}
        except Exception as exc:  # a provider that does not load is a result, not a crash
            rows[label] = {"failed": f"{type(exc).__name__}: {exc}"[:400]}
    return {
        "model": str(model),
        "int8_model": str(int8) if int8 else None,
        "size": [h, w],
        "seg_refine": info.seg_refine,
        "frames": source,
        "rows": rows,
    }


def step_scan(a: argparse.Namespace) -> dict[str, Any]:
    """Scan backends on CUDA (chunked, compile, triton) against the float64 sequential reference."""
    import torch
    from bench_scan import fwd, fwd_bwd, make_inputs, time_fn

    from sccosf_ros.scan import available_backends, ssd_scan, ssd_scan_sequential

    device = "cuda" if cuda() else "cpu"
    lengths = (64, 256) if a.dry_run else (1200, 4800, 19200)
    channels = 64
    p, state = 16, 16
    backends = [b for b in available_backends(device) if b != "sequential"]
    rows = []
    for length in lengths:
        x64 = make_inputs(length, channels, p, state)
        with torch.no_grad():
            ref = ssd_scan_sequential(*x64)
        xs = tuple(t.float().to(device) for t in x64)
        for backend in backends:

            def scan(*t: torch.Tensor, backend: str = backend) -> torch.Tensor:
                return ssd_scan(*t, chunk_size=None if device == "cpu" else 128, backend=backend)

            try:
                t0 = time.perf_counter()
                fwd_bwd(scan, xs)()
                fwd(scan, xs)()
                sync()
                first = time.perf_counter() - t0
                with torch.no_grad():
                    err = float((scan(*xs).double().cpu() - ref).abs().max())
                reps = 3 if a.dry_run else 20
                f_ms = 1e3 * time_fn(fwd(scan, xs), reps, device)
                b_ms = 1e3 * time_fn(fwd_bwd(scan, xs), reps, device)
                rows.append(
                    {
                        "L": length,
                        "channels": channels,
                        "backend": backend,
                        "max_abs_err_vs_f64_sequential": err,
                        "fwd_ms": round(f_ms, 3),
                        "fwd_bwd_ms": round(b_ms, 3),
                        "first_call_s": round(first, 2),
                    }
                )
            except Exception as exc:  # one backend failing must not hide the others
                rows.append({"L": length, "backend": backend, "failed": f"{type(exc).__name__}: {exc}"[:300]})
    return {"device": device, "dtype": "float32", "rows": rows}


def step_train(a: argparse.Namespace) -> dict[str, Any]:
    """``sccosf-train`` on synthetic scenes, base with AMP, for a fixed time; images/s from its step log."""
    out = a.out / "train_run"
    if a.dry_run:
        args = [
            "--preset",
            "tiny",
            "--synthetic-train",
            "8",
            "--synthetic-size",
            "64",
            "80",
            "--crop",
            "64",
            "80",
            "--batch-size",
            "2",
            "--max-steps-per-epoch",
            "2",
            "--workers",
            "0",
            "--log-every",
            "1",
        ]
        seconds = a.budget - 5
    else:
        args = [
            "--preset",
            "base",
            "--synthetic-train",
            "100000",
            "--synthetic-size",
            "480",
            "640",
            "--crop",
            "384",
            "480",
            "--batch-size",
            "16",
            "--workers",
            str(min(12, os.cpu_count() or 4)),
            "--log-every",
            "5",
        ]
        seconds = min(150.0, a.budget - 5)  # two minutes of steps plus start-up
    cmd = [
        sys.executable,
        "-m",
        "sccosf_train.cli",
        *args,
        "--epochs",
        "1",
        "--amp",
        "auto",
        "--synthetic-val",
        "0",
        "--val-split",
        "none",
        "--pretrained-encoder",
        "none",
        "--tensorboard",
        "false",
        "--progress",
        "false",
        "--out",
        str(out),
    ]
    t0 = time.perf_counter()
    (a.out / "logs").mkdir(exist_ok=True)
    with open(a.out / "logs" / "train.txt", "w") as log:
        # Own session, so that the trainer's data-loader workers are stopped with it at the time limit.
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc: int | str = proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:  # the expected end of a timed run
            rc = "stopped after the time budget"
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                try:
                    proc.wait(timeout=10)
                    break
                except subprocess.TimeoutExpired:
                    continue
    wall = time.perf_counter() - t0
    csv = out / "train_log.csv"
    if not csv.is_file():
        raise RuntimeError(f"no train_log.csv (rc {rc}); see logs/train.txt")
    import csv as csvmod

    rows = list(csvmod.DictReader(csv.open()))
    ips = [float(r["images_per_s"]) for r in rows[1:] if r.get("images_per_s")]
    return {
        "command": " ".join(cmd[1:]),
        "returncode": rc,
        "wall_s": round(wall, 1),
        "logged_steps": len(rows),
        "last_step": int(rows[-1]["step"]) if rows else 0,
        "images_per_s_median": round(statistics.median(ips), 2) if ips else None,
        "images_per_s_p10": pct(ips, 10),
        "images_per_s_p90": pct(ips, 90),
        "note": "per logged step, first step excluded; synthetic scenes generated by the data-loader workers",
    }


STEPS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "env": step_env,
    "tests": step_tests,
    "precision": step_precision,
    "forward": step_forward,
    "node": step_node,
    "onnx": step_onnx,
    "scan": step_scan,
    "train": step_train,
    "onnx_trt": step_onnx_trt,
}


# ---- report ----------------------------------------------------------------------------------------------


def report(out: Path) -> dict[str, Any]:
    steps = {}
    for name in STEPS:
        f = out / "steps" / f"{name}.json"
        steps[name] = json.loads(f.read_text()) if f.is_file() else {"step": name, "status": "missing"}
    env = steps["env"].get("data", {})
    result = {
        "tool": "benchmarks/gpu_check.sh",
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "gpu": env.get("gpu", "none (CPU)"),
        "dry_run": any(s.get("dry_run") for s in steps.values()),
        "steps": steps,
    }
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "results.md").write_text(markdown(result))
    return result


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def _md_tests(d: dict[str, Any]) -> list[str]:
    lines = ["", f"**tests**: {d['counts']}", ""]
    return lines + [f"- {c['test']}: {c['outcome']} {c['reason'][:80]}" for c in d["gpu_tests"]]


def _md_precision(d: dict[str, Any]) -> list[str]:
    lines = ["", f"**engine vs CPU fp32** ({d['pairs']}, {d['size'][0]}×{d['size'][1]})", ""]
    lines += [
        "| run | fused max diff (grey levels) | mask pixels differing (max per pair) |",
        "|---|---|---|",
    ]
    for k, v in d["rows"].items():
        diff = v.get("fused_max_diff", v.get("skipped", ""))
        lines.append(f"| {k} | {diff} | {_fmt(v.get('mask_differ_share_max', ''))} |")
    return lines


def _md_forward(d: dict[str, Any]) -> list[str]:
    lines = ["", f"**forward with pre/post** ({d['device']}, {d['size'][0]}×{d['size'][1]})", ""]
    lines += [
        "| preset | precision | batch | frames/s | ms/batch | peak GPU MiB |",
        "|---|---|---|---|---|---|",
    ]
    for row in d["rows"]:
        lines.append(
            f"| {row['preset']} | {row['precision']} | {row.get('batch', '–')} "
            f"| {row.get('frames_per_s', row.get('skipped', ''))} "
            f"| {row.get('median_ms_per_batch', '')} | {row.get('peak_gpu_mem_mib', '–')} |"
        )
    return lines


def _md_node(d: dict[str, Any]) -> list[str]:
    keys = ("mode", "sent", "fused_received", "pairs_in", "pairs_out", "output_hz", "throughput_hz",
            "latency_ms_p50", "latency_ms_p95")  # fmt: skip
    return ["", "**node**: " + ", ".join(f"{k} {d[k]}" for k in keys if k in d)]


def _md_onnx(d: dict[str, Any]) -> list[str]:
    lines = ["", f"**ONNX Runtime** ({Path(d['model']).name})", ""]
    return lines + [
        f"- {k}: " + ", ".join(f"{kk} {_fmt(vv)}" for kk, vv in v.items()) for k, v in d["rows"].items()
    ]  # nested values (threads, agreement) print as their dicts


def _md_scan(d: dict[str, Any]) -> list[str]:
    lines = ["", f"**scan** ({d['device']})", "", "| L | backend | err | fwd ms | fwd+bwd ms | first s |"]
    lines += ["|---|---|---|---|---|---|"]
    for row in d["rows"]:
        lines.append(
            f"| {row['L']} | {row['backend']} "
            f"| {_fmt(row.get('max_abs_err_vs_f64_sequential', row.get('failed', '')))} "
            f"| {row.get('fwd_ms', '')} | {row.get('fwd_bwd_ms', '')} | {row.get('first_call_s', '')} |"
        )
    return lines


def _md_train(d: dict[str, Any]) -> list[str]:
    return [
        "",
        f"**training**: {d['images_per_s_median']} images/s (median of {d['logged_steps']} logged steps)",
    ]


_SECTIONS = {
    "tests": _md_tests,
    "precision": _md_precision,
    "forward": _md_forward,
    "node": _md_node,
    "onnx": _md_onnx,
    "onnx_trt": _md_onnx,
    "scan": _md_scan,
    "train": _md_train,
}


def markdown(r: dict[str, Any]) -> str:
    s = r["steps"]
    lines = [
        f"# gpu_check — {r['gpu']}, {r['generated']}" + (" (CPU dry run)" if r["dry_run"] else ""),
        "",
        "| step | status | seconds |",
        "|---|---|---|",
    ]
    for name, st in s.items():
        lines.append(f"| {name} | {st.get('status')} | {_fmt(st.get('seconds', ''))} |")
    for name, section in _SECTIONS.items():
        d = s.get(name, {}).get("data")
        if d:
            lines += section(d)
    for name, st in s.items():
        if st.get("status") not in ("ok", "skipped"):
            lines += ["", f"**{name}** {st.get('status')}: {str(st.get('error', ''))[:300]}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=[*STEPS, "report"])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, short durations")
    ap.add_argument("--budget", type=float, default=120.0, help="seconds this step may take (from the shell)")
    ap.add_argument("--onnx", type=Path, default=None, help="float ONNX model for the onnx steps")
    ap.add_argument(
        "--int8", type=Path, default=None, help="INT8 ONNX model for the onnx step's CPU INT8 row"
    )
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    if a.dry_run:  # one thread: on a busy 2-core machine two torch threads can be 10x slower, not faster
        import torch

        torch.set_num_threads(1)
    if a.step == "report":
        report(a.out)
        return 0
    (a.out / "steps").mkdir(exist_ok=True)
    record: dict[str, Any] = {"step": a.step, "dry_run": a.dry_run, "budget_s": a.budget}
    t0 = time.perf_counter()
    rc = 0
    try:
        record["data"] = STEPS[a.step](a)
        record["status"] = "ok"
    except StepSkippedError as exc:
        record["status"], record["error"] = "skipped", str(exc)
    except Exception as exc:  # the record is the point
        record["status"], record["error"] = "failed", f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc()[-3000:]
        rc = 1
    record["seconds"] = round(time.perf_counter() - t0, 1)
    (a.out / "steps" / f"{a.step}.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"gpu_check {a.step}: {record['status']} in {record['seconds']} s", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
