"""An ordinary camera driver, as a separate process, for test_node.py (not collected by pytest).

    python test/camera_process.py --pairs 10 --rate 2 [--extra-rgb 2] [--passes 2]

Publishes 640x480 ``rgb8`` on ``rgb/image`` and ``mono16`` on ``thermal/image`` with equal stamps, the way a
driver written with ROS 2's defaults does: ``QoSProfile(depth=50)`` (reliable), and no Fast DDS profile of
ours (whatever ``FASTRTPS_DEFAULT_PROFILES_FILE`` the caller's environment has; the test clears it).
``--extra-rgb N`` adds N RGB frames between pairs, evenly spaced in time and stamp (an RGB camera faster
than the thermal one, as every real rig has); they have no thermal partner. ``--passes 2`` then sends the
same stamps again, as ``ros2 bag play --loop`` or a restarted bag does.

It starts sending once the node subscribes with the reliability it will keep (the node's ``input_qos: auto``
re-subscribes reliable within a second of seeing a reliable publisher; frames sent before that would test
discovery, not delivery). It sends one warm-up pair and waits for its fused output (the model's first run is
slow), then ``--pairs`` pairs at ``--rate`` per pass, and prints ``{"stamps": [...], "late": N}`` (every pair
stamp sent, warm-up first, passes in order) as its last line.

Paced by the node on a slow machine: a pair is sent at its ``--rate`` slot or once the last pair's fused
image has come out (or ``--pair-timeout`` has passed: a lost pair), whichever is later (``late`` counts the
waits). On an idle machine the model keeps up with 2 Hz and this never waits; on a loaded one inference can
take longer than the period, and the node then replaces a waiting pair by design (test_node's busy-worker
test covers that), which is not what the delivery test is about.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--rate", type=float, default=2.0)
    ap.add_argument("--extra-rgb", type=int, default=0, help="RGB-only frames between pairs")
    ap.add_argument("--passes", type=int, default=1, help="send the same stamps this many times")
    ap.add_argument("--timeout", type=float, default=120.0, help="for discovery and the warm-up output")
    ap.add_argument("--pair-timeout", type=float, default=30.0, help="longest wait for a pair's output")
    return ap.parse_args()


def frames() -> dict[str, tuple[np.ndarray, str]]:
    """A 640x480 rgb8 gradient and a mono16 thermal ramp."""
    h, w = 480, 640
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([xx * 255 // w, yy * 255 // h, 255 - xx * 255 // w], axis=2).astype(np.uint8)
    thermal = (7000 + 10 * xx + 5 * yy).astype(np.uint16)
    return {"rgb": (rgb, "rgb8"), "thermal": (thermal, "mono16")}


class Camera:
    """The driver node: publishers, a recorder of the fused stamps, and the pacing."""

    def __init__(self, args: argparse.Namespace) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import Image

        from sccosf_ros import topics

        self.args = args
        rclpy.init()
        self.node = rclpy.create_node("camera_driver")
        self.pubs = {
            s: self.node.create_publisher(Image, topics.INPUTS[s], QoSProfile(depth=50))
            for s in topics.INPUTS
        }
        self.fused: list[int] = []
        self.node.create_subscription(
            Image,
            topics.OUTPUTS["fused"],
            lambda m: self.fused.append(m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec),
            QoSProfile(depth=50),
        )
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.msgs = {}
        for stream, (img, encoding) in frames().items():
            m = Image(height=img.shape[0], width=img.shape[1], encoding=encoding, step=img.strides[0])
            m.data = img.tobytes()
            m.header.frame_id = f"{stream}_camera"
            self.msgs[stream] = m
        self.stamps: list[int] = []
        self.late = 0

    def spin_until(self, predicate, what: str, timeout: float | None = None) -> bool:
        """Spin until ``predicate``; past ``timeout`` False, or (without one) exit after ``--timeout``."""
        end = time.monotonic() + (self.args.timeout if timeout is None else timeout)
        while not predicate():
            if time.monotonic() > end:
                if timeout is not None:
                    return False
                raise SystemExit(f"camera_process: timed out waiting for {what}")
            self.executor.spin_once(timeout_sec=0.05)
        return True

    def wait_for_node(self) -> None:
        from rclpy.qos import ReliabilityPolicy

        def reliable_subscriber(topic: str) -> bool:
            infos = self.node.get_subscriptions_info_by_topic(self.node.resolve_topic_name(topic))
            return any(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)

        self.spin_until(
            lambda: all(
                reliable_subscriber(p.topic_name) and p.get_subscription_count() > 0
                for p in self.pubs.values()
            ),
            "a reliable subscription on both inputs",
        )

    def publish(self, stream: str, stamp_ns: int) -> None:
        from builtin_interfaces.msg import Time

        msg = self.msgs[stream]
        msg.header.stamp = Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
        self.pubs[stream].publish(msg)

    def caught_up(self) -> bool:
        """The last pair's output is out (its stamp may have been sent in an earlier pass too)."""
        return self.fused.count(self.stamps[-1]) >= self.stamps.count(self.stamps[-1])

    def send_pair(self, stamp_ns: int) -> None:
        """Once the last pair's output is out (or ``--pair-timeout`` passed: a lost pair)."""
        if self.stamps and not self.caught_up():
            self.late += 1  # the node is still on the last pair: wait rather than make it drop one
            self.spin_until(self.caught_up, "the output of the last pair", self.args.pair_timeout)
        for stream in ("rgb", "thermal"):
            self.publish(stream, stamp_ns)
        self.stamps.append(stamp_ns)

    def play_pass(self, first_ns: int) -> None:
        """``--pairs`` pairs at ``--rate``, each followed by its ``--extra-rgb`` RGB-only frames."""
        a = self.args
        period_ns, slots = round(1e9 / a.rate), a.extra_rgb + 1
        t0 = time.monotonic()
        for i in range(a.pairs):
            for k in range(slots):
                while time.monotonic() < t0 + (i + k / slots) / a.rate:
                    self.executor.spin_once(timeout_sec=0.01)
                stamp = first_ns + i * period_ns + k * period_ns // slots
                if k == 0:
                    self.send_pair(stamp)
                else:
                    self.publish("rgb", stamp)

    def close(self) -> None:
        import rclpy

        end = time.monotonic() + 2.0  # a reliable writer may still be repairing the last samples
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.05)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown()


def main() -> int:
    args = parse_args()
    cam = Camera(args)
    cam.wait_for_node()
    cam.send_pair(cam.node.get_clock().now().nanoseconds)  # warm-up
    cam.spin_until(cam.caught_up, "the warm-up pair's fused output")
    first = cam.node.get_clock().now().nanoseconds + round(1e9 / args.rate)
    for _ in range(args.passes):
        cam.play_pass(first)
    cam.close()
    print(json.dumps({"stamps": cam.stamps, "late": cam.late}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
