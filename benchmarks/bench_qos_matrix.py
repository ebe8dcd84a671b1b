"""Does the node get every pair from an ordinary camera driver? A matrix of publisher QoS, profile and rate.

    python benchmarks/bench_qos_matrix.py                              # the 12-run matrix, ~8 minutes
    python benchmarks/bench_qos_matrix.py --rates 2 --reliability reliable --profile none --duration 10
    python benchmarks/bench_qos_matrix.py --node-param input_qos:=sensor_data   # the node as before auto

Three processes per run, each with its own Fast DDS settings, on a fresh ``ROS_DOMAIN_ID``:

* ``fusion_node`` with its **default parameters** (the shipped model, ``device: auto``) plus any
  ``--node-param``; it loads the shipped Fast DDS profile itself, as it does by default;
* a camera process playing a driver: 640x480 ``rgb8`` and ``mono16`` with equal stamps at one rate, publishers
  with the given reliability and depth 50 (ROS 2's ordinary ``QoSProfile(depth=50)``), and either **no**
  Fast DDS profile (what ``usb_cam``, ``v4l2_camera`` or a vendor driver loads) or ours;
* this process, recording ``sccosf/fused`` (reliable) and ``/diagnostics`` with the shipped profile
  (``--recorder-profile none --recorder-qos best_effort``: what a viewer with Fast DDS's defaults sees).

The camera starts sending 3 s after the node's subscriptions match (the node's ``auto`` input QoS re-checks
the publishers every second; startup is not what this measures) and prints when it starts and stops.
Per run: pairs sent, frames and pairs the node received and formed, pairs out (fused images received here),
pairs the node dropped as slow, latency (RGB stamp -> fused received here, one clock) p50/p95 over the run and
p50 over its first and last third (growing latency shows as last >> first), and the node's CPU over the
sending window (% of one core; 200 % = both cores of the development machine).
"""

from __future__ import annotations

import argparse
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
from sccosf_ros.paths import FASTDDS_PROFILE_ENV, fastdds_profile_path

SETTLE_S = 3.0


def camera(args: argparse.Namespace) -> int:
    """The camera role: wait for the node, settle, send ``rate * duration`` pairs, report on stdout."""
    import rclpy
    from node_rig import image_message
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("bench_camera")
    reliability = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT}
    qos = QoSProfile(depth=args.depth, reliability=reliability[args.reliability])
    pubs = {s: node.create_publisher(Image, topics.INPUTS[s], qos) for s in topics.INPUTS}
    deadline = time.monotonic() + 120
    while not all(p.get_subscription_count() for p in pubs.values()):
        if time.monotonic() > deadline:
            print(json.dumps({"error": "node never subscribed"}), flush=True)
            return 1
        time.sleep(0.05)
    time.sleep(SETTLE_S)
    h, w = args.size
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for i in range(8):  # a few distinct frames, so nothing downstream can cache one
        base = ((xx + 8 * i) % w) * 255 // w
        rgb = np.stack([base, yy * 255 // h, 255 - base], axis=2).astype(np.uint8)
        blob = np.exp(-(((xx - (w / 2 + 10 * i)) / 40.0) ** 2 + ((yy - h / 2) / 60.0) ** 2))
        th = (7000 + 3000 * blob + rng.normal(0, 30, blob.shape)).astype(np.uint16)
        frames.append((rgb, th))

    msgs = [
        (image_message(r, "rgb8", "bench_camera"), image_message(t, "mono16", "bench_camera"))
        for r, t in frames
    ]
    n = round(args.rate * args.duration)
    print("START", flush=True)
    t0 = time.monotonic()
    for i in range(n):
        delay = t0 + i / args.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        rgb, th = msgs[i % len(msgs)]
        stamp = node.get_clock().now().to_msg()
        rgb.header.stamp = th.header.stamp = stamp
        pubs["rgb"].publish(rgb)
        pubs["thermal"].publish(th)
    send_s = time.monotonic() - t0
    print("STOP " + json.dumps({"sent": n, "send_s": round(send_s, 2)}), flush=True)
    time.sleep(2.0)  # a reliable writer may still be repairing the last samples
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (the ROS wheels' re-exec keeps the pid)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(x: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(x, q)), 1) if x.size else None


def _figures(report: dict, got: list[tuple[int, int]], last: dict[str, str], cpu_pct: float) -> dict:
    """One matrix row's figures from the camera's report, the outputs (stamp, receipt) and /diagnostics."""
    lat = np.array([(r - s) / 1e6 for s, r in got])
    third = max(len(lat) // 3, 1)
    return {
        "sent": report["sent"],
        "rgb_received": int(last.get("rgb_received", -1)),
        "thermal_received": int(last.get("thermal_received", -1)),
        "pairs_in": int(last.get("matched", -1)),
        "pairs_out": len(got),
        "dropped_slow": int(last.get("pairs_dropped_slow", -1)),
        "latency_p50_ms": _pct(lat, 50),
        "latency_p95_ms": _pct(lat, 95),
        "latency_p50_first_third_ms": _pct(lat[:third], 50),
        "latency_p50_last_third_ms": _pct(lat[-third:], 50),
        "infer_p50_ms": float(last.get("infer_p50_ms", "nan")),
        "node_cpu_pct": round(cpu_pct, 0),
        "node_reliability": f"{last.get('input_reliability_rgb')}/{last.get('input_reliability_thermal')}",
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
    }


def run_one(args: argparse.Namespace, reliability: str, profile: str, rate: float, index: int) -> dict:
    import rclpy
    from node_rig import OutputRecorder, tear_down
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    domain = 10 + (os.getpid() + 7 * index) % 80
    tmp = Path(tempfile.mkdtemp(prefix="bench_qos_"))
    base_env = {k: v for k, v in os.environ.items() if k != FASTDDS_PROFILE_ENV}
    base_env["ROS_DOMAIN_ID"] = str(domain)
    node_cmd = [sys.executable, "-m", "sccosf_ros.node.fusion_node", "--ros-args"]
    for p in args.node_param:
        node_cmd += ["-p", p]
    log = open(tmp / "node.log", "w")  # noqa: SIM115 - lives as long as the subprocess
    node_env = dict(base_env)
    if args.node_fastdds_profile is not None:
        node_env[FASTDDS_PROFILE_ENV] = args.node_fastdds_profile
    node_proc = subprocess.Popen(node_cmd, env=node_env, stdout=log, stderr=subprocess.STDOUT)
    cam_env = dict(base_env)
    if profile == "ours":
        cam_env[FASTDDS_PROFILE_ENV] = str(fastdds_profile_path())
    for item in args.camera_env:
        key, _, value = item.partition("=")
        cam_env[key] = value
    cam_cmd = [sys.executable, __file__, "--role", "camera", "--reliability", reliability]
    cam_cmd += ["--rate", str(rate), "--duration", str(args.duration), "--size", *map(str, args.size)]
    cam_cmd += ["--depth", str(args.depth)]

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    rec = rclpy.create_node("bench_recorder", context=ctx)
    rec_reliability = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT}
    outputs = OutputRecorder(rec, QoSProfile(depth=10, reliability=rec_reliability[args.recorder_qos]))
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(rec)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    row: dict[str, object] = {"publisher": reliability, "profile": profile, "rate_hz": rate}
    cam = None
    try:
        t_wait = time.monotonic()
        while not rec.count_publishers(topics.OUTPUTS["fused"]):
            if node_proc.poll() is not None or time.monotonic() - t_wait > 120:
                raise RuntimeError(f"node did not come up; see {tmp / 'node.log'}")
            time.sleep(0.1)
        cam = subprocess.Popen(cam_cmd, env=cam_env, stdout=subprocess.PIPE, text=True)
        assert cam.stdout is not None
        line = cam.stdout.readline()
        if not line.startswith("START"):
            raise RuntimeError(f"camera: {line!r}")
        cpu0, t0 = _cpu_s(node_proc.pid), time.monotonic()
        line = cam.stdout.readline()
        cpu1, t1 = _cpu_s(node_proc.pid), time.monotonic()
        if not line.startswith("STOP "):
            raise RuntimeError(f"camera: {line!r}")
        report = json.loads(line[5:])
        cam.wait(30)
        time.sleep(3.0)  # the last pair's inference and one more /diagnostics message
        got = sorted(outputs.fused())
        row.update(_figures(report, got, outputs.last_diagnostics(), 100 * (cpu1 - cpu0) / (t1 - t0)))
    finally:
        if cam is not None and cam.poll() is None:
            cam.kill()
        tear_down(node_proc, log, executor, spin, rec, ctx)
    return row


COLUMNS = (
    ("publisher", "publisher"),
    ("profile", "pub. profile"),
    ("node_reliability", "node subscribed"),
    ("rate_hz", "Hz"),
    ("sent", "pairs sent"),
    ("pairs_in", "pairs in"),
    ("pairs_out", "pairs out"),
    ("dropped_slow", "dropped as slow"),
    ("latency_p50_ms", "latency p50 ms"),
    ("latency_p95_ms", "p95 ms"),
    ("latency_p50_first_third_ms", "p50 first / last third"),
    ("node_cpu_pct", "node CPU %"),
)


def table(rows: list[dict]) -> str:
    out = ["| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = []
        for key, _ in COLUMNS:
            if key == "latency_p50_first_third_ms":
                cells.append(f"{r.get(key)} / {r.get('latency_p50_last_third_ms')}")
            elif key == "pairs_out":
                pct = 100 * r["pairs_out"] / r["sent"] if r.get("sent") else 0
                cells.append(f"{r['pairs_out']} ({pct:.0f} %)")
            else:
                cells.append(str(r.get(key)))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--role", choices=("matrix", "camera"), default="matrix")
    ap.add_argument("--reliability", nargs="+", default=["reliable", "best_effort"])
    ap.add_argument("--profile", nargs="+", default=["none", "ours"], help="camera's Fast DDS profile")
    ap.add_argument("--rates", type=float, nargs="+", default=[2.0, 10.0, 30.0])
    ap.add_argument("--rate", type=float, default=2.0, help=argparse.SUPPRESS)
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of sending per run")
    ap.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    ap.add_argument("--depth", type=int, default=50, help="camera publishers' history depth")
    ap.add_argument(
        "--node-param", action="append", default=[], metavar="NAME:=VALUE", help="extra node parameter"
    )
    ap.add_argument(
        "--node-fastdds-profile",
        default=None,
        metavar="PATH",
        help="FASTRTPS_DEFAULT_PROFILES_FILE for the node ('' = none); default: unset, so the node loads "
        "the shipped profile itself",
    )
    ap.add_argument(
        "--camera-env", action="append", default=[], metavar="KEY=VALUE", help="extra camera environment"
    )
    ap.add_argument(
        "--recorder-profile", choices=("ours", "none"), default="ours", help="this process's Fast DDS profile"
    )
    ap.add_argument("--recorder-qos", choices=("reliable", "best_effort"), default="reliable")
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = ap.parse_args()
    if args.role == "camera":
        args.reliability = args.reliability[0]
        return camera(args)
    # This process records with the shipped profile (or none); each child gets its own setting explicitly.
    if args.recorder_profile == "ours":
        os.environ[FASTDDS_PROFILE_ENV] = str(fastdds_profile_path())
    else:
        os.environ.pop(FASTDDS_PROFILE_ENV, None)
    print(f"loadavg at start: {Path('/proc/loadavg').read_text().strip()}", flush=True)
    rows = []
    index = 0
    for reliability in args.reliability:
        for profile in args.profile:
            for rate in args.rates:
                row = run_one(args, reliability, profile, rate, index)
                index += 1
                print(json.dumps(row), flush=True)
                rows.append(row)
                if args.out:
                    args.out.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"loadavg at end: {Path('/proc/loadavg').read_text().strip()}")
    print(" ".join(sys.argv))
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
