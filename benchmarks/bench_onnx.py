"""ONNX Runtime against PyTorch, engine level (``FusionEngine.infer``, with pre/post), side by side.

    python benchmarks/bench_onnx.py --threads 2 --rounds 40 --json out/bench_onnx.json

Every variant runs the same frame once per round, variants in a rotating order, so machine load (this
machine is shared) falls on all of them alike; each call is timed on its own and the table gives the
median, the 10th percentile and frames/s = 1000 / median. Before timing, the script compares every
onnxruntime variant with the torch engine on all frames used (max fused difference in grey levels, share
of equal mask pixels). Frames: real MSRS pairs from ``../shared/data/msrs`` (``--pairs`` of them) when
present, otherwise synthetic scenes. The ONNX model is the engine's cache-mode export of ``--checkpoint``
(the first run exports it, 20-40 s) or ``--onnx FILE``.

Variants: ``torch`` (``--threads`` threads; the reference), ``ort`` (the engine's defaults: graph
optimisation all, sequential, no spinning, same threads), and with ``--variants all`` also ORT with
spinning, with the extended (no NCHWc layout) and basic optimisation levels, with parallel execution, and
both backends at one thread. ``--int8 FILE`` (an INT8 file from ``sccosf-export --int8``) adds ``ort int8``
at ``--threads`` and at one thread, with ``torch`` and ``ort`` at one thread beside it: INT8 against float
ONNX Runtime against torch, one and two threads, in one run::

    python benchmarks/bench_onnx.py --onnx tiny_480x640.onnx --int8 tiny_480x640_int8.onnx --rounds 40

``/proc/loadavg`` is recorded before and after.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sample_pairs import sample_pairs

from sccosf_ros.engine import FusionEngine

MSRS = Path(__file__).resolve().parents[2] / "shared" / "data" / "msrs"


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "n/a"


def frames(n: int, height: int, width: int) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    return sample_pairs([MSRS], n, height, width, seed=1)


def variants(args: argparse.Namespace) -> dict[str, dict]:
    t = args.threads
    out: dict[str, dict] = {
        "torch": {"backend": "torch", "num_threads": t},
        "ort": {"backend": "onnxruntime", "num_threads": t},
    }
    if args.variants == "all":
        out.update(
            {
                "ort spin": {"backend": "onnxruntime", "num_threads": t, "ort_session": {"spinning": True}},
                "ort extended": {
                    "backend": "onnxruntime",
                    "num_threads": t,
                    "ort_session": {"opt_level": "extended"},
                },
                "ort basic": {
                    "backend": "onnxruntime",
                    "num_threads": t,
                    "ort_session": {"opt_level": "basic"},
                },
                "ort parallel": {
                    "backend": "onnxruntime",
                    "num_threads": t,
                    "ort_session": {"parallel": True},
                },
            }
        )
    if args.int8:
        out["ort int8"] = {"backend": "onnxruntime", "num_threads": t, "onnx": args.int8, "precision": "int8"}
    if t != 1 and (args.variants == "all" or args.int8):
        out["torch 1t"] = {"backend": "torch", "num_threads": 1}
        out["ort 1t"] = {"backend": "onnxruntime", "num_threads": 1}
        if args.int8:
            out["ort int8 1t"] = {**out["ort int8"], "num_threads": 1}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", default=None, help="default: the shipped tiny model")
    parser.add_argument(
        "--onnx", default=None, help="an exported .onnx file instead of the cache-mode export"
    )
    parser.add_argument(
        "--onnx-cache", default=None, help="cache folder for the export (default: the engine's)"
    )
    parser.add_argument(
        "--int8", default=None, help="an INT8 .onnx file (sccosf-export --int8): adds 'ort int8' rows"
    )
    parser.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for both backends")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=10, help="frames to cycle through (and to compare)")
    parser.add_argument("--variants", choices=("main", "all"), default="main")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, help="write the results here (also printed)")
    args = parser.parse_args(argv)

    import onnxruntime
    import torch

    h, w = args.size
    load_start = loadavg()
    pairs, source = frames(args.pairs, h, w)
    specs = variants(args)
    engines: dict[str, FusionEngine] = {}
    t_export = time.perf_counter()
    for name, spec in specs.items():
        ckpt = args.onnx if (spec["backend"] == "onnxruntime" and args.onnx) else args.checkpoint
        ckpt = spec.get("onnx", ckpt)
        # torch's thread count is process-wide and set before each torch call; ORT's is per session.
        kw = {k: v for k, v in spec.items() if k != "num_threads" or spec["backend"] == "onnxruntime"}
        kw.pop("onnx", None)
        engines[name] = FusionEngine(ckpt, device=args.device, onnx_cache=args.onnx_cache, **kw)
        if spec["backend"] == "onnxruntime":
            engines[name].warmup(h, w, runs=1)  # cache mode: exports on the first run
    setup_s = time.perf_counter() - t_export
    threads = {name: spec["num_threads"] for name, spec in specs.items()}

    def call(name: str, pair: tuple[np.ndarray, np.ndarray]):
        if specs[name]["backend"] == "torch":
            torch.set_num_threads(threads[name])  # process-wide: set before each torch call
        return engines[name].infer(*pair)

    # Agreement with the torch engine on every frame used.
    agreement = {}
    ref = [call("torch", p) for p in pairs]
    for name, spec in specs.items():
        if spec["backend"] != "onnxruntime":
            continue
        worst, agree = 0, 1.0
        for r, p in zip(ref, pairs, strict=True):
            o = call(name, p)
            worst = max(worst, int(np.abs(o.fused.astype(np.int16) - r.fused.astype(np.int16)).max()))
            agree = min(agree, float((o.mask == r.mask).mean()))
        agreement[name] = {"fused_max_diff": worst, "mask_agreement_min": agree}

    names = list(specs)
    for i in range(args.warmup):
        for name in names:
            call(name, pairs[i % len(pairs)])
    times: dict[str, list[float]] = {n: [] for n in names}
    stages: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    load_timed = loadavg()
    t_all = time.perf_counter()
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]  # rotate who goes first
        pair = pairs[r % len(pairs)]
        for name in order:
            t = time.perf_counter()
            res = call(name, pair)
            times[name].append((time.perf_counter() - t) * 1e3)
            stages[name].append(res.timings)
    wall = time.perf_counter() - t_all
    load_end = loadavg()

    rows = [result_row(name, specs, times, stages, agreement) for name in names]
    result = {
        "benchmark": "FusionEngine.infer, torch vs onnxruntime, interleaved",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "checkpoint": str(engines["torch"].checkpoint),
        "onnx_files": sorted({f for e in engines.values() for f in e.describe().get("onnx_files", [])}),
        "size": [h, w],
        "frames": source,
        "rounds": args.rounds,
        "wall_s": round(wall, 1),
        "setup_s": round(setup_s, 1),
        "loadavg": {"start": load_start, "timed_start": load_timed, "end": load_end},
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": _cores()},
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "rows": rows,
    }
    print(table(result))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    return 0


def result_row(
    name: str,
    specs: dict[str, dict],
    times: dict[str, list[float]],
    stages: dict[str, list[dict[str, float]]],
    agreement: dict[str, dict],
) -> dict:
    """One variant's figures; its speed-ups against torch and float ONNX Runtime at the same threads."""

    def same_threads(backend: str, precision: str) -> float | None:
        for other, spec in specs.items():
            same = spec["backend"] == backend and spec.get("precision", "fp32") == precision
            if same and spec["num_threads"] == specs[name]["num_threads"]:
                return statistics.median(times[other])
        return None

    ms = times[name]
    med = statistics.median(ms)
    torch_ms, ort_ms = same_threads("torch", "fp32"), same_threads("onnxruntime", "fp32")
    return {
        "variant": name,
        "backend": specs[name]["backend"],
        "precision": specs[name].get("precision", "fp32"),
        "threads": specs[name]["num_threads"],
        "session": specs[name].get("ort_session", {}),
        "median_ms": round(med, 1),
        "p10_ms": round(float(np.percentile(ms, 10)), 1),
        "p90_ms": round(float(np.percentile(ms, 90)), 1),
        "fps": round(1000.0 / med, 2),
        "speedup_vs_torch": round(torch_ms / med, 2) if torch_ms else None,
        "speedup_vs_ort_fp32": round(ort_ms / med, 2) if ort_ms else None,
        "inference_median_ms": round(statistics.median(s["inference"] for s in stages[name]), 1),
        "runs": len(ms),
        **({"agreement": agreement[name]} if name in agreement else {}),
    }


def _cores() -> int | None:
    import os

    return os.cpu_count()


def table(result: dict) -> str:
    lines = [
        f"FusionEngine.infer at {result['size'][0]}x{result['size'][1]}, {result['frames']}, "
        f"{result['rounds']} interleaved rounds; loadavg {result['loadavg']['timed_start']} -> "
        f"{result['loadavg']['end']}",
        "",
        "| variant | threads | median ms | p10 ms | p90 ms | frames/s | × torch | × ort fp32 | network ms "
        "| fused max diff | mask agreement |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        a = r.get("agreement", {})
        diff = a.get("fused_max_diff", "–")
        agree = f"{a['mask_agreement_min']:.4%}" if a else "–"
        lines.append(
            f"| {r['variant']} | {r['threads']} | {r['median_ms']} | {r['p10_ms']} | {r['p90_ms']} "
            f"| {r['fps']} | {r['speedup_vs_torch'] or '–'} | {r['speedup_vs_ort_fp32'] or '–'} "
            f"| {r['inference_median_ms']} | {diff} | {agree} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
