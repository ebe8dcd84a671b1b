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
both backends at one thread. ``/proc/loadavg`` is recorded before and after.
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
        if t != 1:
            out["torch 1t"] = {"backend": "torch", "num_threads": 1}
            out["ort 1t"] = {"backend": "onnxruntime", "num_threads": 1}
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
        # torch's thread count is process-wide and set before each torch call; ORT's is per session.
        kw = {k: v for k, v in spec.items() if k != "num_threads" or spec["backend"] == "onnxruntime"}
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

    ref_ms = statistics.median(times["torch"])
    rows = []
    for name in names:
        ms = times[name]
        med = statistics.median(ms)
        rows.append(
            {
                "variant": name,
                "backend": specs[name]["backend"],
                "threads": threads[name],
                "session": specs[name].get("ort_session", {}),
                "median_ms": round(med, 1),
                "p10_ms": round(float(np.percentile(ms, 10)), 1),
                "p90_ms": round(float(np.percentile(ms, 90)), 1),
                "fps": round(1000.0 / med, 2),
                "speedup_vs_torch": round(ref_ms / med, 2),
                "inference_median_ms": round(statistics.median(s["inference"] for s in stages[name]), 1),
                "runs": len(ms),
                **({"agreement": agreement[name]} if name in agreement else {}),
            }
        )
    result = {
        "benchmark": "FusionEngine.infer, torch vs onnxruntime, interleaved",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "checkpoint": str(engines["torch"].checkpoint),
        "onnx_files": engines["ort"].describe().get("onnx_files"),
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


def _cores() -> int | None:
    import os

    return os.cpu_count()


def table(result: dict) -> str:
    lines = [
        f"FusionEngine.infer at {result['size'][0]}x{result['size'][1]}, {result['frames']}, "
        f"{result['rounds']} interleaved rounds; loadavg {result['loadavg']['timed_start']} -> "
        f"{result['loadavg']['end']}",
        "",
        "| variant | threads | median ms | p10 ms | p90 ms | frames/s | × torch | network ms "
        "| fused max diff | mask agreement |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        a = r.get("agreement", {})
        diff = a.get("fused_max_diff", "–")
        agree = f"{a['mask_agreement_min']:.4%}" if a else "–"
        lines.append(
            f"| {r['variant']} | {r['threads']} | {r['median_ms']} | {r['p10_ms']} | {r['p90_ms']} "
            f"| {r['fps']} | {r['speedup_vs_torch']} | {r['inference_median_ms']} | {diff} | {agree} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
