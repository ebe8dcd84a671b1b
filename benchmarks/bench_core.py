"""Timings of the ROS-free helpers the tests exercise without timing them (tests assert behaviour only).

    python benchmarks/bench_core.py [--runs 10]

* ``generate_scene`` at 480x640 (the demo bag and the trainer draw thousands; target about 50 ms);
* the nine fusion metrics on one 640x480 triple (the evaluator runs them on every frame).

Prints the median (min, max) of ``--runs`` calls, one torch/cv2 thread, and the load average, as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sccosf_ros.metrics.fusion import fusion_metrics, to_gray255
from sccosf_synth.scenes import generate_scene


def _times_ms(fn: Callable[[int], object], runs: int) -> dict[str, float]:
    fn(0)  # warm-up: imports, allocator, OpenCV's lazy init
    times = []
    for i in range(runs):
        t = time.perf_counter()
        fn(i + 1)
        times.append((time.perf_counter() - t) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "runs": runs}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    scene = generate_scene(0)
    fused = to_gray255(np.maximum(scene.rgb.mean(axis=2), scene.thermal).astype(np.uint8))
    ir, vi = to_gray255(scene.thermal), to_gray255(scene.rgb)
    result = {
        "generate_scene_480x640": _times_ms(lambda s: generate_scene(s), args.runs),
        "fusion_metrics_640x480": _times_ms(lambda _: fusion_metrics(fused, ir, vi), args.runs),
        "loadavg": os.getloadavg(),
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
