"""An ordinary camera driver, as a separate process, for test_node.py (not collected by pytest).

    python test/camera_process.py --pairs 10 --rate 2

Publishes 640x480 ``rgb8`` on ``rgb/image`` and ``mono16`` on ``thermal/image`` with equal stamps, the way a
driver written with ROS 2's defaults does: ``QoSProfile(depth=50)`` (reliable), and no Fast DDS profile of
ours (whatever ``FASTRTPS_DEFAULT_PROFILES_FILE`` the caller's environment has; the test clears it).

It starts sending once the node subscribes with the reliability it will keep (the node's ``input_qos: auto``
re-subscribes reliable within a second of seeing a reliable publisher; frames sent before that would test
discovery, not delivery). It sends one warm-up pair and waits for its fused output (the model's first run is
slow), then ``--pairs`` pairs at ``--rate``, and prints ``{"stamps": [...], "late": N}`` (every stamp sent,
warm-up first) as its last line.

Paced by the node on a slow machine: a pair is sent at its ``--rate`` slot or once the last pair's fused
image has come out, whichever is later (``late`` counts the waits). On an idle machine the model keeps up
with 2 Hz and this never waits; on a loaded one inference can take longer than the period, and the node then
replaces a waiting pair by design (test_node's busy-worker test covers that), which is not what the delivery
test is about.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--rate", type=float, default=2.0)
    ap.add_argument("--timeout", type=float, default=120.0, help="for discovery and the warm-up output")
    args = ap.parse_args()

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from sccosf_ros import topics

    rclpy.init()
    node = rclpy.create_node("camera_driver")
    pubs = {s: node.create_publisher(Image, topics.INPUTS[s], QoSProfile(depth=50)) for s in topics.INPUTS}
    fused: list[int] = []
    node.create_subscription(
        Image,
        topics.OUTPUTS["fused"],
        lambda m: fused.append(m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec),
        QoSProfile(depth=50),
    )
    executor = SingleThreadedExecutor()
    executor.add_node(node)

    def spin_until(predicate, what: str) -> None:
        end = time.monotonic() + args.timeout
        while not predicate():
            if time.monotonic() > end:
                raise SystemExit(f"camera_process: timed out waiting for {what}")
            executor.spin_once(timeout_sec=0.05)

    def reliable_subscriber(topic: str) -> bool:
        infos = node.get_subscriptions_info_by_topic(node.resolve_topic_name(topic))
        return any(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)

    spin_until(
        lambda: (
            all(reliable_subscriber(t) for t in topics.INPUTS.values())
            and all(p.get_subscription_count() > 0 for p in pubs.values())
        ),
        "a reliable subscription on both inputs",
    )
    h, w = 480, 640
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([xx * 255 // w, yy * 255 // h, 255 - xx * 255 // w], axis=2).astype(np.uint8)
    thermal = (7000 + 10 * xx + 5 * yy).astype(np.uint16)
    msgs = {}
    for stream, img, encoding in (("rgb", rgb, "rgb8"), ("thermal", thermal, "mono16")):
        m = Image(height=h, width=w, encoding=encoding, step=img.strides[0], data=img.tobytes())
        m.header.frame_id = f"{stream}_camera"
        msgs[stream] = m
    stamps: list[int] = []

    def send() -> None:
        stamp = node.get_clock().now().to_msg()
        for stream in ("rgb", "thermal"):
            msgs[stream].header.stamp = stamp
            pubs[stream].publish(msgs[stream])
        stamps.append(stamp.sec * 1_000_000_000 + stamp.nanosec)

    send()  # warm-up
    spin_until(lambda: stamps[0] in fused, "the warm-up pair's fused output")
    t0 = time.monotonic()
    late = 0
    for i in range(args.pairs):
        while time.monotonic() < t0 + i / args.rate:
            executor.spin_once(timeout_sec=0.01)
        if stamps[-1] not in fused:
            late += 1  # the node is still on the last pair: wait for it rather than make it drop one
            spin_until(lambda: stamps[-1] in fused, "the output of the last pair")
        send()
    end = time.monotonic() + 2.0  # a reliable writer may still be repairing the last samples
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)
    print(json.dumps({"stamps": stamps, "late": late}), flush=True)
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
