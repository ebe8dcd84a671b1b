"""The ROS side of the replay: publish a bag's frames on time and record what the node publishes back.

It is ``ros2 bag play`` + ``ros2 bag record`` in one process (neither has a wheel), with two additions: the
publish wall time of every RGB frame is remembered, so latency is the receipt wall time of an output minus the
publish time of the RGB input with the same header stamp (the node copies the RGB stamp to its outputs); and
messages are published and recorded as serialised CDR bytes, exactly as the bag stores them, so nothing is
re-encoded on the way. The original header stamps are kept (no ``/clock``): the node pairs by header stamp
only. Timing follows the bag's log (receipt) times, scaled by ``rate``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import String

from sccosf_ros import bags, topics
from sccosf_ros.replay.bag_survey import BagScan, restamp, stamp_of
from sccosf_ros.replay.config import ReplayConfig, ReplayError
from sccosf_ros.replay.supervisor import NodeProcess, tail

OUTPUTS = (topics.FUSED, topics.SEGMENTATION, topics.SEGMENTATION_COLOR)


def now_ns() -> int:
    """The one clock of every publish and receipt time."""
    return time.monotonic_ns()


@dataclass
class Playback:
    """What one play of the bag produced: the node's outputs and the times to score them by."""

    received: dict[str, list[tuple[int, bytes]]]  # output topic -> (receipt ns, CDR bytes)
    publish_ns: dict[int, list[int]] = field(default_factory=dict)  # RGB stamp -> publish times (ns), a
    # looped bag sends a stamp once per pass

    def sent_before(self, stamp: int, receipt_ns: int) -> int | None:
        """Publish time of the RGB frame an output received at ``receipt_ns`` answers: the latest one with
        its stamp published before it (None for a stamp the bag does not hold)."""
        times = self.publish_ns.get(stamp)
        if not times:
            return None
        return max((t for t in times if t <= receipt_ns), default=times[0])

    def latency_ms(self, stamp: int, receipt_ns: int) -> float:
        """Receipt of an output minus the publish time of the RGB frame it answers (0 for a stamp the bag
        does not hold)."""
        sent = self.sent_before(stamp, receipt_ns)
        return 0.0 if sent is None else (receipt_ns - sent) / 1e6

    t0_wall: int = 0
    last_publish: int = 0
    warm_ms: list[float] = field(default_factory=list)
    diagnostics: dict[str, str] | None = None  # the node's last /diagnostics values
    baseline: dict[str, str] | None = None  # ... and after warm-up, subtracted in the report
    class_info: str | None = None  # the node's latched class names JSON


class _Recorder(Node):
    """Publishes the inputs, records outputs as (receipt time, CDR bytes) and the node's diagnostics."""

    def __init__(self, context: Context, cfg: ReplayConfig) -> None:
        super().__init__("sccosf_replay", context=context)
        pub_qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE
        )
        self.pubs = {t: self.create_publisher(Image, t, pub_qos) for t in (cfg.rgb_topic, cfg.thermal_topic)}
        sub_qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=cfg.output_depth, reliability=ReliabilityPolicy.RELIABLE
        )
        self.lock = threading.Lock()
        self.received: dict[str, list[tuple[int, bytes]]] = {t: [] for t in OUTPUTS}
        self.last_receipt_ns = 0
        self.output_subs = [
            self.create_subscription(
                Image, topic, lambda data, t=topic: self._on_output(t, data), sub_qos, raw=True
            )
            for topic in OUTPUTS
        ]
        self.class_info: str | None = None
        latched = QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        self.create_subscription(String, topics.absolute(topics.CLASS_NAMES), self._on_class_info, latched)
        self.diagnostics: dict[str, str] | None = None
        self.diagnostics_ns = 0
        self.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, self._on_diagnostics, 10)

    def _on_class_info(self, msg: String) -> None:
        self.class_info = msg.data

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith(": fusion"):  # the node's one status, "<node name>: fusion"
                with self.lock:
                    self.diagnostics = {kv.key: kv.value for kv in status.values}
                    self.diagnostics_ns = now_ns()

    def _on_output(self, topic: str, data: bytes) -> None:
        now = now_ns()
        with self.lock:
            self.received[topic].append((now, bytes(data)))
            self.last_receipt_ns = now

    def fused_stamps(self) -> Counter[int]:
        """Outputs received per stamp."""
        with self.lock:
            items = list(self.received[topics.FUSED])
        return Counter(stamp_of(data) for _, data in items)

    def fresh_diagnostics(self, after_ns: int) -> dict[str, str]:
        """The node's counters if a snapshot newer than ``after_ns`` arrived, else {}."""
        with self.lock:
            return dict(self.diagnostics or {}) if self.diagnostics_ns > after_ns else {}

    def ready(self) -> bool:
        """Both inputs have a subscriber and all outputs a publisher matched with us (the node is active,
        its model loaded). Only this side's matching is visible; the warm-up covers the other side."""
        return all(p.get_subscription_count() > 0 for p in self.pubs.values()) and all(
            sub.get_publisher_count() > 0 for sub in self.output_subs
        )

    def node_idle(self, after_ns: int) -> bool:
        """True when a /diagnostics snapshot newer than ``after_ns`` shows nothing left in the node (every
        matched pair published, skipped as slow or rejected) and every published output has arrived here."""
        d = self.fresh_diagnostics(after_ns)
        with self.lock:
            fused_all = len(self.received[topics.FUSED])
        try:
            matched, processed = int(float(d["matched"])), int(float(d["pairs_processed"]))
            settled = processed + int(float(d["pairs_dropped_slow"])) + int(float(d["bad_inputs_total"]))
        except (KeyError, ValueError):
            return False
        return settled >= matched and fused_all >= processed


class LivePlayer:
    """A private rclpy context with the recording node spinning in a thread; use as a context manager."""

    def __init__(self, cfg: ReplayConfig, domain_id: int) -> None:
        self.cfg = cfg
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.recorder = _Recorder(self.context, cfg)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.recorder)
        self._spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self._spinner.start()
        self.node: NodeProcess | None = None

    def __enter__(self) -> LivePlayer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.executor.shutdown()
        self.recorder.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._spinner.join(5)

    def _check_node(self) -> None:
        if self.node is not None:
            self.node.check_alive()

    def run(self, bag: Path, scan: BagScan, node: NodeProcess | None) -> Playback:
        """Wait for the node, warm it up, play the bag on time and wait for the outputs in flight."""
        self.node = node
        self.wait_ready()
        result = Playback(self.recorder.received)
        result.warm_ms = self.warm_up(scan.first)
        result.baseline = self.settle() if result.warm_ms else None
        self.play(bag, scan, result)
        self.drain(scan.expected_count, result)
        self.await_diagnostics(now_ns())
        result.diagnostics = self.recorder.fresh_diagnostics(0) or None
        result.class_info = self.recorder.class_info
        return result

    def wait_ready(self) -> None:
        cfg = self.cfg
        deadline = time.monotonic() + cfg.startup_timeout_s
        while not self.recorder.ready():
            self._check_node()
            if time.monotonic() > deadline:
                hint = (
                    f"; its log ends:\n{tail(self.node.log_path)}"
                    if self.node is not None
                    else f": is fusion_node running with rgb/image:={cfg.rgb_topic} "
                    f"thermal/image:={cfg.thermal_topic} in the same ROS_DOMAIN_ID?"
                )
                raise ReplayError(
                    f"no fusion node subscribed and publishing within {cfg.startup_timeout_s:.0f} s" + hint
                )
            time.sleep(0.1)

    def warm_up(self, first: dict[str, bags.RawMessage]) -> list[float]:
        """Send ``warmup_pairs`` copies of the first pair, stamped before the bag, and wait for each output.

        The first inference pays for lazy initialisation (seconds on CPU); timing it would report start-up,
        not the node. Warm-up outputs are recognised by their stamps and left out of every figure.
        """
        cfg = self.cfg
        if len(first) < 2 or cfg.warmup_pairs < 1:
            return []
        base = min(stamp_of(m.data) for m in first.values()) - 3_600 * 10**9
        times = []
        for i in range(cfg.warmup_pairs):
            stamp = base + i * 10**9
            data = {
                t: restamp(first[t].data, first[t].msgtype, stamp) for t in (cfg.thermal_topic, cfg.rgb_topic)
            }
            t0 = now_ns()
            self._await_warm_output(i, stamp, data)
            times.append((now_ns() - t0) / 1e6)
        return times

    def _await_warm_output(self, i: int, stamp: int, data: dict[str, bytes]) -> None:
        """Publish warm-up pair ``i`` until its output arrives (best-effort inputs may lose a sample)."""
        deadline = time.monotonic() + self.cfg.startup_timeout_s
        next_send = 0.0
        while stamp not in self.recorder.fused_stamps():
            # Resend until the node's /diagnostics show it paired one; once paired, resend rarely: its output
            # may have gone out before its writer had discovered our reader (discovery is not symmetric),
            # and one resend queues at most one pair. A first CPU inference can take many seconds.
            with self.recorder.lock:
                d = self.recorder.diagnostics
            paired = d is not None and int(float(d.get("matched", "0"))) > i
            if time.monotonic() >= next_send:
                for topic, payload in data.items():
                    self.recorder.pubs[topic].publish(payload)
                next_send = time.monotonic() + (1.5 if d is not None and not paired else 5.0)
            self._check_node()
            if time.monotonic() > deadline:
                raise ReplayError(
                    f"the node produced no output for a warm-up pair within "
                    f"{self.cfg.startup_timeout_s:.0f} s (QoS or remapping mismatch?)"
                )
            time.sleep(0.02)

    def settle(self) -> dict[str, str] | None:
        """After warm-up, wait until the node is idle (resent warm-up pairs may still be in its hand-off) and
        return its counters then, so the report counts the bag's messages only and the first frames are not
        delayed by warm-up work. None when the node publishes no usable /diagnostics."""
        start = now_ns()
        deadline = time.monotonic() + self.cfg.startup_timeout_s
        while time.monotonic() < deadline:
            self._check_node()
            if self.recorder.node_idle(start):
                return self.recorder.fresh_diagnostics(start)
            if self.recorder.diagnostics is None and (now_ns() - start) / 1e9 > 3.0:
                return None  # a node without diagnostics: nothing to wait for or subtract
            time.sleep(0.05)
        return None

    def play(self, bag: Path, scan: BagScan, result: Playback) -> None:
        """Publish the bag's input messages at their log times (scaled by ``rate``)."""
        from tqdm import tqdm

        cfg = self.cfg
        result.t0_wall = now_ns()
        stream = bags.read_raw(bag, [cfg.rgb_topic, cfg.thermal_topic])
        total = sum(scan.counts.values())
        progress = tqdm(
            stream, total=total, disable=not cfg.progress, unit="msg", desc="sccosf-replay", leave=False
        )
        for m in progress:
            due = result.t0_wall + round((m.log_time_ns - scan.t0_log) / cfg.rate)
            delay = (due - now_ns()) / 1e9
            if delay > 0:
                time.sleep(delay)
            self._check_node()
            if m.topic == cfg.rgb_topic:
                result.publish_ns.setdefault(stamp_of(m.data), []).append(now_ns())
            self.recorder.pubs[m.topic].publish(m.data)
        result.last_publish = now_ns()

    def drain(self, expected: Counter[int], result: Playback) -> None:
        """Wait for the outputs still in flight, until: every expected pair is out; or the node reports
        itself idle (/diagnostics); or it has been quiet for twice the longest latency seen (at least 3 s);
        or ``drain_timeout_s``. On CPU one inference can take seconds: a fixed short wait would lose outputs.
        """
        deadline = time.monotonic() + self.cfg.drain_timeout_s
        while time.monotonic() < deadline:
            got = self.recorder.fused_stamps()
            if not expected - got or self.recorder.node_idle(result.last_publish + 200_000_000):
                return
            with self.recorder.lock:
                receipts = {stamp_of(d): t for t, d in self.recorder.received[topics.FUSED][-20:]}
                last = max(self.recorder.last_receipt_ns, result.last_publish)
            sent = {s: result.sent_before(s, t) for s, t in receipts.items()}
            worst = max(
                ((t - sent[s]) / 1e9 for s, t in receipts.items() if sent[s] is not None), default=1.0
            )
            if (now_ns() - last) / 1e9 > max(3.0, 2 * worst):
                return
            time.sleep(0.1)

    def await_diagnostics(self, after_ns: int, timeout_s: float = 2.5) -> None:
        """Wait for one /diagnostics snapshot newer than ``after_ns`` (the node publishes one per second), so
        the report can split drops into transport losses and pairs skipped by slow inference."""
        deadline = time.monotonic() + timeout_s
        while self.recorder.diagnostics_ns <= after_ns and time.monotonic() < deadline:
            if self.node is not None and not self.node.running:
                return
            time.sleep(0.05)
