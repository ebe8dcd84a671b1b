"""A synthetic two-camera rosbag2 (``sccosf-demo-bag``): the input of ``make demo`` and of the tests.

RGB at 30 Hz and thermal at 9 Hz run free with a phase offset, stamps jitter and log times lag the stamps,
as USB/GigE drivers deliver them; labels (mono8 MSRS class ids) carry exactly the RGB frame's stamp, which is
how the evaluator finds the ground truth for a pair. Scenes come from :mod:`sccosf_synth.scenes`.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sccosf_ros import topics
from sccosf_ros.bags import DEMO_T0_NS, RGB_FRAME, STORAGES, THERMAL_FRAME, BagWriter
from sccosf_ros.cli.bag import parse_size
from sccosf_ros.errors import BagError, SccosfError
from sccosf_synth.scenes import generate_scene


@dataclass
class SyntheticBagSpec:
    """A two-camera rig as drivers deliver it: unsynchronised, with jitter and transport delay.

    RGB and thermal run free at their own rates with a fixed phase offset; header stamps jitter by a few ms
    and log (receipt) times lag the stamps, thermal more than RGB, as USB/GigE thermal drivers do. The scene
    pans smoothly (a crop sliding over a wider generated scene) and cuts to a new scene every
    ``scene_period_s``, which keeps generation cheap while giving the pairer and the network motion to handle.
    """

    seconds: float = 10.0
    height: int = 480
    width: int = 640
    seed: int = 0
    rgb_hz: float = 30.0
    thermal_hz: float = 9.0
    thermal_encoding: str = "mono8"  # or "16UC1": raw counts as a microbolometer driver publishes them
    thermal_offset_s: float = 0.013
    jitter_s: float = 0.0015
    rgb_delay_s: float = 0.008
    thermal_delay_s: float = 0.025
    scene_period_s: float = 2.0
    pan_px_per_s: float = 12.0
    labels: bool = True
    storage: str = "mcap"


def _scene_frames(spec: SyntheticBagSpec) -> Any:
    """``frame(t)`` -> (rgb, thermal u8, labels) of the scene at ``t`` seconds; caches one scene at a time."""
    margin = math.ceil(spec.pan_px_per_s * spec.scene_period_s) + 1
    cache: dict[int, Any] = {}

    def frame(t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        index = max(0, int(t // spec.scene_period_s))
        if index not in cache:
            cache.clear()
            cache[index] = generate_scene(spec.seed * 1000 + index, spec.height, spec.width + margin)
        scene = cache[index]
        x = min(margin - 1, round(spec.pan_px_per_s * (t - index * spec.scene_period_s)))
        cut = slice(x, x + spec.width)
        return scene.rgb[:, cut], scene.thermal[:, cut], scene.labels[:, cut]

    return frame


def _thermal_counts(thermal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """8-bit thermal to plausible 16-bit raw counts (offset, gain, read noise), as a Boson Y16 stream."""
    counts = 21000.0 + thermal.astype(np.float32) * 14.0 + rng.normal(0.0, 3.0, thermal.shape)
    return np.clip(counts, 0, 65535).astype(np.uint16)


def write_synthetic_bag(out: str | Path, spec: SyntheticBagSpec | None = None) -> dict[str, int]:
    """Write a demo bag of synthetic scenes on the default topics; return messages written per topic.

    Labels (mono8 MSRS class ids) go on :data:`topics.LABELS` with exactly the RGB frame's stamp, which is how
    the evaluator finds the ground truth for a pair.
    """
    spec = spec or SyntheticBagSpec()
    if spec.thermal_encoding not in ("mono8", "16UC1", "mono16"):
        raise BagError(f"thermal_encoding must be mono8, mono16 or 16UC1, got {spec.thermal_encoding!r}")
    if spec.seconds <= 0 or spec.height < 16 or spec.width < 16:
        raise BagError(f"need seconds > 0 and a size of at least 16x16, got {spec}")
    rng = np.random.default_rng(spec.seed)
    frame = _scene_frames(spec)
    events: list[tuple[float, str, int]] = []  # (stamp seconds, stream, index)
    for k in range(int(spec.seconds * spec.rgb_hz)):
        events.append((k / spec.rgb_hz + rng.normal(0.0, spec.jitter_s / 3), "rgb", k))
    for k in range(int((spec.seconds - spec.thermal_offset_s) * spec.thermal_hz)):
        t = spec.thermal_offset_s + k / spec.thermal_hz + rng.normal(0.0, spec.jitter_s)
        events.append((t, "thermal", k))
    with BagWriter(out, spec.storage) as w:
        for t, stream, _ in sorted(events):
            t = max(0.0, t)
            stamp = DEMO_T0_NS + round(t * 1e9)
            rgb, thermal, labels = frame(t)
            if stream == "rgb":
                log = stamp + round(abs(rng.normal(spec.rgb_delay_s, spec.rgb_delay_s / 8)) * 1e9)
                w.write_image(topics.CAMERA_RGB, np.ascontiguousarray(rgb), "rgb8", stamp, RGB_FRAME, log)
                if spec.labels:
                    labels = np.ascontiguousarray(labels)
                    w.write_image(topics.LABELS, labels, "mono8", stamp, RGB_FRAME, log + 1)
            else:
                log = stamp + round(abs(rng.normal(spec.thermal_delay_s, spec.thermal_delay_s / 8)) * 1e9)
                image = np.ascontiguousarray(thermal)
                if spec.thermal_encoding != "mono8":
                    image = _thermal_counts(image, rng)
                w.write_image(topics.CAMERA_THERMAL, image, spec.thermal_encoding, stamp, THERMAL_FRAME, log)
        return dict(w.counts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sccosf-demo-bag", description=__doc__)
    parser.add_argument("out", help="output bag directory (must not exist)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", type=parse_size, default=(480, 640), help="HEIGHTxWIDTH (default 480x640)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--thermal-encoding",
        choices=("mono8", "16UC1", "mono16"),
        default="mono8",
        help="16UC1/mono16 write raw 16-bit counts as thermal drivers do",
    )
    parser.add_argument("--rgb-hz", type=float, default=30.0)
    parser.add_argument("--thermal-hz", type=float, default=9.0)
    parser.add_argument("--no-labels", action="store_true", help=f"omit {topics.LABELS}")
    parser.add_argument("--storage", choices=sorted(STORAGES), default="mcap")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    spec = SyntheticBagSpec(
        seconds=args.seconds,
        height=args.size[0],
        width=args.size[1],
        seed=args.seed,
        rgb_hz=args.rgb_hz,
        thermal_hz=args.thermal_hz,
        thermal_encoding=args.thermal_encoding,
        labels=not args.no_labels,
        storage=args.storage,
    )
    try:
        counts = write_synthetic_bag(args.out, spec)
    except SccosfError as exc:
        print(f"sccosf-demo-bag: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: " + ", ".join(f"{t} x{n}" for t, n in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
