"""Forward-pass benchmark of an SC-CoSF preset, with a per-module profile of where the time goes.

    python benchmarks/bench_model.py --preset tiny --threads 2 --size 480 640 --runs 10

Reports the median (and min, max) of ``--runs`` no-grad forwards, batch 1, fp32, and — because shared
machines make absolute numbers noisy — the same statistics for the bare MobileNetV2 trunk on both inputs
at full input resolution, measured in the same process, as a yardstick. The profile times each submodule
with forward hooks (children overlap their parents) and ranks the aten ops with ``torch.profiler``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

# Run from a checkout without `pip install -e .`: put the repository root on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sccosf_ros.model import PRESETS, build_model, fold_batchnorm_
from sccosf_ros.model.encoder import MobileNetV2Trunk
from sccosf_ros.model.profiling import count_flops, module_times, time_forward


def _stats(times: list[float]) -> str:
    return (
        f"median {statistics.median(times) * 1e3:7.1f} ms  min {min(times) * 1e3:7.1f} ms  "
        f"max {max(times) * 1e3:7.1f} ms  (n={len(times)})"
    )


def _trunk_times(h: int, w: int, runs: int) -> list[float]:
    trunk = MobileNetV2Trunk().eval()
    x = torch.rand(2, 3, h, w)
    out = []
    with torch.no_grad():
        trunk(x)
        for _ in range(runs):
            t0 = time.perf_counter()
            trunk(x)
            out.append(time.perf_counter() - t0)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--channels-last", action="store_true", help="model in channels_last memory format")
    parser.add_argument("--fold-bn", action="store_true", help="fold BatchNorm into convs (inference form)")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--no-yardstick", action="store_true", help="skip the full-resolution trunk timing")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be positive")

    torch.set_num_threads(args.threads)
    h, w = args.size
    model = build_model(args.preset).eval()
    if args.fold_bn:
        fold_batchnorm_(model)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    total, parts = count_flops(model, h, w)
    ih, iw = model.internal_size(h, w)
    print(
        f"preset {args.preset}: input {h}x{w}, network {ih}x{iw}, {total / 1e9:.2f} GFLOPs, "
        f"threads {args.threads}, torch {torch.__version__}"
    )
    times = time_forward(model, h, w, runs=args.runs)
    print(f"forward          {_stats(times)}")
    if not args.no_yardstick:
        trunk = _trunk_times(h, w, max(3, args.runs // 2))
        ratio = statistics.median(times) / statistics.median(trunk)
        print(f"trunk {h}x{w} x2  {_stats(trunk)}  -> forward/trunk = {ratio:.2f}")

    if args.no_profile:
        return 0
    print("\nper-module time (median of 5, forward hooks; nested modules overlap their parents):")
    mt = module_times(
        model, h, w, runs=5, depth_filter=lambda n: n.count(".") <= 2 and not n.startswith("encoder.")
    )
    whole = mt.pop("(total)")
    for name, sec in sorted(mt.items(), key=lambda kv: -kv[1])[:25]:
        flops = parts.get(name, 0)
        extra = f"  {flops / 1e9:6.3f} GFLOPs" if flops else ""
        print(f"  {name:28s} {sec * 1e3:8.1f} ms  {100 * sec / whole:5.1f}%{extra}")
    print(f"  {'(whole forward)':28s} {whole * 1e3:8.1f} ms")

    print("\ntop aten ops (torch.profiler, 3 forwards):")
    rgb, th = torch.rand(1, 3, h, w), torch.rand(1, 1, h, w)
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            model(rgb, th)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    return 0


if __name__ == "__main__":
    sys.exit(main())
