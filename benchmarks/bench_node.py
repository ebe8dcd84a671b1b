"""End-to-end benchmark of the fusion node over loopback DDS, with the real engine.

    python benchmarks/bench_node.py --duration 60            # 1-minute run
    python benchmarks/bench_node.py --duration 600           # soak: RSS at 1 min vs end

Starts ``fusion_node`` in a subprocess (as ``ros2 run`` would, own ROS_DOMAIN_ID), plays 640x480 rgb8 at
30 Hz and mono16 thermal at 9 Hz (``--rgb-hz``, ``--thermal-hz``) into it, and records:

* end-to-end latency, RGB stamp -> ``sccosf/fused`` received here (same clock), p50/p95;
* throughput (fused outputs per second), pairs and drops as the node counts them in ``/diagnostics``;
* node overhead per pair excluding inference (conversion, encoding, publishing) and the callback time of
  pairing, both measured inside the node and read from ``/diagnostics``;
* the node's resident memory after 60 s and at the end (leaks show up in ``--duration 600``).

Without ``--checkpoint`` the shipped model is used, or, if there is none, a random-weight ``tiny`` checkpoint
written to a temp dir (same compute, meaningless output): the report says which.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sccosf_ros import topics
from sccosf_ros.backends import backend_names


def _checkpoint(arg: str | None, tmp: Path) -> tuple[str, str]:
    if arg:
        return arg, "given"
    from sccosf_ros.paths import default_checkpoint_path

    shipped = default_checkpoint_path()
    if shipped is not None:
        return str(shipped), "shipped"
    import torch

    from sccosf_ros.checkpoint import CheckpointMeta, save_checkpoint
    from sccosf_ros.model import build_model

    torch.manual_seed(0)
    model = build_model("tiny", num_classes=9)
    meta = CheckpointMeta.for_model(model, preset="tiny", training={"note": "random weights, benchmark"})
    return str(
        save_checkpoint(tmp / "tiny_random.safetensors", model, meta)
    ), "random tiny (no shipped model)"


def _rss_mb(pid: int) -> float:
    """VmRSS of pid and its children (the ROS wheels bootstrapper may re-exec into a child)."""
    total = 0.0
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total


def _frames(h: int, w: int, th_h: int, th_w: int, n: int = 8) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    rgbs, ths = [], []
    for i in range(n):
        base = ((xx + 8 * i) % w) * 255 // w
        rgb = np.stack([base, (yy * 255) // h, 255 - base], axis=2).astype(np.uint8)
        rgbs.append(np.clip(rgb + rng.integers(0, 20, rgb.shape), 0, 255).astype(np.uint8))
        ty, tx = np.mgrid[0:th_h, 0:th_w]
        blob = np.exp(-(((tx - (th_w / 2 + 10 * i)) / 40.0) ** 2 + ((ty - th_h / 2) / 60.0) ** 2))
        ths.append((7000 + 3000 * blob + rng.normal(0, 30, blob.shape)).astype(np.uint16))
    return rgbs, ths


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of camera data to play")
    ap.add_argument("--rgb-hz", type=float, default=30.0, help="RGB camera rate")
    ap.add_argument("--thermal-hz", type=float, default=9.0, help="thermal camera rate (gpu_check: 30)")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--backend", default="auto", choices=backend_names(), help="the node's backend")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--num-threads", type=int, default=0)
    ap.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    ap.add_argument("--thermal-size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    ap.add_argument(
        "--input-qos", default="reliable", help="node's input QoS (the player publishes reliable)"
    )
    ap.add_argument(
        "--fastdds-profile",
        default="shipped",
        help="Fast DDS XML profile for the player and the node: shipped "
        "(config/fastdds_large_images.xml), none (Fast DDS defaults), or a path",
    )
    ap.add_argument(
        "--seg-refine",
        choices=("true", "false"),
        default="true",
        help="the node's seg_refine parameter (false: the coarse mask, faster on a slow CPU)",
    )
    ap.add_argument("--out", type=Path, default=None, help="write the report as JSON here")
    args = ap.parse_args()
    from sccosf_ros.paths import FASTDDS_PROFILE_ENV, fastdds_profile_path

    # Set before this process creates its first participant; the node inherits it.
    os.environ.pop(FASTDDS_PROFILE_ENV, None)
    if args.fastdds_profile != "none":
        profile = fastdds_profile_path() if args.fastdds_profile == "shipped" else Path(args.fastdds_profile)
        if profile is None or not Path(profile).is_file():
            ap.error(f"Fast DDS profile not found: {args.fastdds_profile}")
        os.environ[FASTDDS_PROFILE_ENV] = str(profile)

    import rclpy
    from node_rig import OutputRecorder, image_message, tear_down
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    domain = 10 + os.getpid() % 80
    tmp = Path(tempfile.mkdtemp(prefix="bench_node_"))
    ckpt, ckpt_kind = _checkpoint(args.checkpoint, tmp)
    params = tmp / "params.yaml"
    params.write_text(
        "/**:\n  ros__parameters:\n"
        f"    checkpoint: '{ckpt}'\n    device: '{args.device}'\n    precision: '{args.precision}'\n"
        f"    num_threads: {args.num_threads}\n    input_qos: '{args.input_qos}'\n"
        f"    seg_refine: {args.seg_refine}\n    backend: '{args.backend}'\n"
        f"    warmup_size: '{args.size[0]}x{args.size[1]}'\n"  # prepared (ONNX: exported) before the clock
    )
    log = open(tmp / "node.log", "w")  # noqa: SIM115 - lives as long as the subprocess
    node_proc = subprocess.Popen(
        [sys.executable, "-m", "sccosf_ros.node.fusion_node", "--ros-args", "--params-file", str(params)],
        env=dict(os.environ, ROS_DOMAIN_ID=str(domain)),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    peer = rclpy.create_node("bench_player", context=ctx)
    outputs = OutputRecorder(peer, QoSProfile(depth=10))
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    pubs = {s: peer.create_publisher(Image, f"{s}/image", qos) for s in ("rgb", "thermal")}
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(peer)
    spin_thread = threading.Thread(target=executor.spin, daemon=True)
    spin_thread.start()

    report: dict[str, object] = {
        "checkpoint": ckpt_kind,
        "duration_s": args.duration,
        "input_qos": args.input_qos,
        "fastdds_profile": args.fastdds_profile,
        "seg_refine": args.seg_refine == "true",
    }
    try:
        t_wait = time.monotonic()
        while not (pubs["rgb"].get_subscription_count() and peer.count_publishers(topics.OUTPUTS["fused"])):
            if node_proc.poll() is not None or time.monotonic() - t_wait > 120:
                raise RuntimeError(f"node did not come up; see {tmp / 'node.log'}")
            time.sleep(0.2)
        report["startup_s"] = round(time.monotonic() - t_wait, 2)
        time.sleep(1.0)
        h, w = args.size
        rgbs, ths = _frames(h, w, *args.thermal_size)

        msgs = {
            "rgb": [image_message(x, "rgb8", "bench") for x in rgbs],
            "thermal": [image_message(x, "mono16", "bench") for x in ths],
        }
        events = sorted(
            [(i / args.rgb_hz, "rgb", i) for i in range(int(args.duration * args.rgb_hz))]
            + [(i / args.thermal_hz, "thermal", i) for i in range(int(args.duration * args.thermal_hz))]
        )
        sent = {"rgb": 0, "thermal": 0}
        rss_1min = None
        start = time.monotonic()
        for t, stream, i in events:
            delay = start + t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            m = msgs[stream][i % len(msgs[stream])]
            m.header.stamp = peer.get_clock().now().to_msg()
            pubs[stream].publish(m)
            sent[stream] += 1
            if rss_1min is None and time.monotonic() - start >= 60:
                rss_1min = _rss_mb(node_proc.pid)
        play_s = time.monotonic() - start
        time.sleep(3.0)  # let the last pair finish and one more /diagnostics arrive
        rss_end = _rss_mb(node_proc.pid)
        fused = outputs.fused()
        lat = np.array([(r - s) / 1e6 for s, r in fused])
        last = outputs.last_diagnostics()
        report.update(
            sent=sent,
            play_s=round(play_s, 1),
            fused_received=len(fused),
            throughput_hz=round(len(fused) / play_s, 2),
            latency_ms_p50=round(float(np.percentile(lat, 50)), 1) if lat.size else None,
            latency_ms_p95=round(float(np.percentile(lat, 95)), 1) if lat.size else None,
            rss_mb_1min=None if rss_1min is None else round(rss_1min, 1),
            rss_mb_end=round(rss_end, 1),
            node={
                k: last.get(k)
                for k in (
                    "device",
                    "rgb_received",
                    "thermal_received",
                    "matched",
                    "unmatched_rgb",
                    "unmatched_thermal",
                    "pairs_dropped_slow",
                    "pairs_processed",
                    "bad_inputs_total",
                    "infer_p50_ms",
                    "infer_p95_ms",
                    "overhead_p50_ms",
                    "overhead_p95_ms",
                    "callback_p50_ms",
                    "callback_p95_ms",
                    "latency_p50_ms",
                    "latency_p95_ms",
                )
            },
        )
    finally:
        tear_down(node_proc, log, executor, spin_thread, peer, ctx)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
