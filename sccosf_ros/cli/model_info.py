"""``sccosf-model-info``: parameters and FLOPs of every SC-CoSF preset (optionally forward timings).

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` at batch 1 (2 FLOPs per multiply-add,
matmuls/convolutions/attention only). The SSD scan's element-wise work is not counted; ``--scan`` prints,
per SS2D call, what the counter sees inside the scan next to the analytic cost of the recurrence.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence

import torch

from sccosf_ros.model import PRESETS, build_model
from sccosf_ros.model.profiling import count_flops, scan_flop_report, time_forward


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sccosf-model-info", description=__doc__)
    parser.add_argument(
        "--preset", action="append", choices=sorted(PRESETS), help="preset(s) to report (default: all)"
    )
    parser.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    parser.add_argument("--num-classes", type=int, default=9)
    parser.add_argument("--scan", action="store_true", help="per-SS2D scan FLOPs: counted vs analytic")
    parser.add_argument("--time", action="store_true", help="also time the forward pass (median of --runs)")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="one JSON object per preset instead of text")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    h, w = args.size
    for name in args.preset or sorted(PRESETS):
        model = build_model(name, num_classes=args.num_classes).eval()
        cfg = model.config
        total, parts = count_flops(model, h, w)
        info: dict[str, object] = {
            "preset": name,
            "params": sum(p.numel() for p in model.parameters()),
            "size": [h, w],
            "internal_size": list(model.internal_size(h, w)),
            "gflops": round(total / 1e9, 3),
            "gflops_by_module": {k: round(v / 1e9, 3) for k, v in parts.items()},
            "scan_levels": [4 * 2**i for i, d in enumerate(cfg.vss_depths) if d],
        }
        scans = scan_flop_report(model, h, w) if args.scan else []
        if args.scan:
            info["scan"] = scans
        if args.time:
            times = time_forward(model, h, w, runs=args.runs)
            info["forward_s_median"] = round(statistics.median(times), 4)
            info["forward_s_min"] = round(min(times), 4)
            info["threads"] = args.threads
        if args.json:
            print(json.dumps(info))
            continue
        ih, iw = model.internal_size(h, w)
        print(
            f"{name}: {info['params'] / 1e6:.2f} M params, {total / 1e9:.2f} GFLOPs at {h}x{w} "
            f"(network at {ih}x{iw}, scans at strides {info['scan_levels']})"
        )
        for key, val in parts.items():
            print(f"    {key:8s} {val / 1e9:8.3f} GFLOPs")
        for row in scans:
            gh, gw = row["grid"]
            print(
                f"    scan {gh}x{gw} ({row['tokens']} tokens, {row['heads']} heads): counted "
                f"{row['counted'] / 1e6:.1f} MFLOPs, recurrence {row['recurrence'] / 1e6:.1f} MFLOPs"
            )
        if args.time:
            print(
                f"    forward median {info['forward_s_median']:.3f} s, min {info['forward_s_min']:.3f} s "
                f"({args.runs} runs, {args.threads} threads, batch 1, fp32)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
