"""Where do input frames go missing? Image delivery over loopback DDS, without and with inference load.

    python benchmarks/bench_transport.py                       # the whole table, ~2 minutes
    python benchmarks/bench_transport.py --size 480 640 --rate 30 --seconds 10

A publisher process sends ``rgb8`` images at a fixed rate (reliable, as ``sccosf-replay`` does). This process
subscribes with a chosen input QoS and executor, optionally while a worker thread runs the shipped model in a
loop (what ``fusion_node``'s worker does), and counts the frames that arrive and their latency. Each row
isolates one cause: transport alone (no load), the executor's own cost, and the inference thread's
competition for the GIL and the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def publish(size: tuple[int, int], rate: float, seconds: float, topic: str) -> None:
    """Publisher role: wait for a subscriber, then send ``rate * seconds`` frames at ``rate``."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("bench_transport_pub")
    pub = node.create_publisher(Image, topic, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    deadline = time.monotonic() + 20
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    h, w = size
    data = np.random.default_rng(0).integers(0, 256, h * w * 3, dtype=np.uint8).tobytes()
    n = int(rate * seconds)
    t0 = time.monotonic()
    for i in range(n):
        msg = Image(height=h, width=w, encoding="rgb8", step=w * 3, data=data)
        msg.header.frame_id = str(i)
        msg.header.stamp = node.get_clock().now().to_msg()
        pub.publish(msg)
        time.sleep(max(0.0, t0 + (i + 1) / rate - time.monotonic()))
    time.sleep(1.0)  # let reliable retransmissions finish
    node.destroy_node()
    rclpy.shutdown()


def _load_thread(stop: threading.Event, size: tuple[int, int], counter: list[int]) -> threading.Thread:
    """A worker that runs the shipped model back to back, like the node's inference thread."""
    import torch

    from sccosf_ros.engine import FusionEngine

    torch.set_num_threads(1)
    engine = FusionEngine(device="cpu")
    rgb = np.zeros((*size, 3), np.uint8)
    ir = np.zeros(size, np.uint8)

    def run() -> None:
        while not stop.is_set():
            engine.infer(rgb, ir)
            counter[0] += 1

    return threading.Thread(target=run, daemon=True)


def subscribe_once(args: argparse.Namespace, qos_name: str, executor_name: str, load: bool) -> dict:
    import rclpy
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image

    topic = "/bench_transport/image"
    env = dict(os.environ, ROS_DOMAIN_ID=os.environ["ROS_DOMAIN_ID"])
    rclpy.init()
    node = rclpy.create_node("bench_transport_sub")
    got: dict[int, float] = {}

    def on_image(msg: Image) -> None:
        now = node.get_clock().now().nanoseconds
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        got[int(msg.header.frame_id)] = (now - stamp) / 1e6

    qos = (
        qos_profile_sensor_data
        if qos_name == "sensor_data"
        else QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    )
    node.create_subscription(Image, topic, on_image, qos)
    if executor_name == "events":
        from rclpy.experimental import EventsExecutor

        executor = EventsExecutor()
    elif executor_name == "multi":
        executor = MultiThreadedExecutor(num_threads=2)
    else:
        executor = SingleThreadedExecutor()
    executor.add_node(node)
    stop = threading.Event()
    infers = [0]
    worker = _load_thread(stop, tuple(args.size), infers) if load else None
    if worker is not None:
        worker.start()
    pub_cmd = [
        sys.executable,
        __file__,
        "--role",
        "pub",
        "--size",
        *map(str, args.size),
        "--rate",
        str(args.rate),
        "--seconds",
        str(args.seconds),
        "--topic",
        topic,
    ]
    pub = subprocess.Popen(pub_cmd, env=env)
    t_end = time.monotonic() + args.seconds + 30
    while pub.poll() is None and time.monotonic() < t_end:
        executor.spin_once(timeout_sec=0.1)
    if pub.poll() is None:
        pub.kill()
    stop.set()
    if worker is not None:
        worker.join(timeout=5)
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown()
    sent = int(args.rate * args.seconds)
    lat = np.array(list(got.values())) if got else np.array([np.nan])
    return {
        "qos": qos_name,
        "executor": executor_name,
        "inference_load": load,
        "sent": sent,
        "received": len(got),
        "latency_p50_ms": round(float(np.percentile(lat, 50)), 1),
        "latency_p95_ms": round(float(np.percentile(lat, 95)), 1),
        "inferences_per_s": round(infers[0] / args.seconds, 1) if load else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--role", choices=("table", "pub", "sub"), default="table")
    ap.add_argument("--size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"))
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--topic", default="/bench_transport/image")
    ap.add_argument("--qos", default="sensor_data")
    ap.add_argument("--executor", default="single")
    ap.add_argument("--load", action="store_true")
    ap.add_argument(
        "--rows",
        default="sensor_data:single:0,sensor_data:multi:0,sensor_data:events:0,"
        "sensor_data:single:1,sensor_data:multi:1,sensor_data:events:1,reliable:multi:1,"
        "reliable:events:1",
        help="qos:executor:load,... for --role table",
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    os.environ.setdefault("ROS_DOMAIN_ID", str(60 + os.getpid() % 40))
    if args.role == "pub":
        publish(tuple(args.size), args.rate, args.seconds, args.topic)
        return 0
    if args.role == "sub":
        print(json.dumps(subscribe_once(args, args.qos, args.executor, args.load)), flush=True)
        return 0
    rows = []
    for spec in args.rows.split(","):
        qos, ex, load = spec.split(":")
        # one subprocess per row: rclpy init/shutdown and the worker's threads start clean each time
        cmd = [
            sys.executable,
            __file__,
            "--role",
            "sub",
            "--size",
            *map(str, args.size),
            "--rate",
            str(args.rate),
            "--seconds",
            str(args.seconds),
            "--qos",
            qos,
            "--executor",
            ex,
        ]
        out = subprocess.run(
            cmd + (["--load"] if load == "1" else []),
            capture_output=True,
            text=True,
            timeout=args.seconds + 120,
        )
        line = next((ln for ln in out.stdout.splitlines()[::-1] if ln.startswith("{")), None)
        row = json.loads(line) if line else {"spec": spec, "error": out.stderr[-400:]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        args.out.write_text(
            json.dumps(
                {"size": args.size, "rate": args.rate, "seconds": args.seconds, "rows": rows}, indent=1
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
