"""Live replay: play a bag into the running fusion node over rclpy, record its outputs, score and time them.

Why: the offline evaluator scores the model; this measures the node as deployed — DDS transport, the
synchroniser, the one-slot hand-off that drops pairs when inference is slower than the cameras — and the
end-to-end latency a robot would see. It is ``ros2 bag play`` + ``ros2 bag record`` in one process (neither
has a wheel), with two additions: the publish wall time of every RGB frame is remembered, so latency is the
receipt wall time of an output minus the publish time of the RGB input with the same header stamp (the node
copies the RGB stamp to its outputs); and messages are published and recorded as serialised CDR bytes, exactly
as the bag stores them, so nothing is re-encoded on the way.

The original header stamps are kept (no ``/clock``): the node pairs by header stamp only, so sim time is not
needed. Timing is by the bag's log (receipt) times, scaled by ``rate``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import String

from sccosf_ros import bags, topics
from sccosf_ros.evaluation import (
    EvalConfig,
    FrameScorer,
    _percentiles,
    load_labels,
    make_normalizer,
)
from sccosf_ros.imaging.color import to_rgb
from sccosf_ros.imaging.thermal import to_thermal_gray
from sccosf_ros.pairing import ApproximateTimePairer
from sccosf_ros.paths import with_fastdds_profile
from sccosf_ros.report import write_report

OUTPUTS = (topics.FUSED, topics.SEGMENTATION, topics.SEGMENTATION_COLOR)


class ReplayError(RuntimeError):
    """The replay could not run (node did not start, bag unusable); the message says what to check."""


@dataclass
class ReplayConfig(EvalConfig):
    """Evaluation settings plus how to play: speed factor, node start, time limits."""

    rate: float = 1.0
    start_node: bool = True
    node_args: list[str] = field(default_factory=list)  # extra ``--ros-args`` items for the started node
    domain_id: int | None = None  # default: ROS_DOMAIN_ID of the environment
    startup_timeout_s: float = 120.0  # node start + model load + discovery + warm-up pair
    drain_timeout_s: float = 60.0  # longest wait for outputs after the last input
    warmup_pairs: int = 1  # pairs sent (re-stamped before the bag) and awaited before timing starts
    output_depth: int = 50


def _now_ns() -> int:
    return time.monotonic_ns()


class _Recorder(Node):
    """Publishes the inputs, records outputs as (receipt time, CDR bytes)."""

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
        self.warmup_sent = 0  # warm-up pairs published (resent until answered)
        self.baseline: dict[str, str] | None = None  # node counters after warm-up, subtracted in the report
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
                    self.diagnostics_ns = _now_ns()

    def _on_output(self, topic: str, data: bytes) -> None:
        now = _now_ns()
        with self.lock:
            self.received[topic].append((now, bytes(data)))
            self.last_receipt_ns = now

    def fused_stamps(self) -> set[int]:
        with self.lock:
            items = list(self.received[topics.FUSED])
        return {_stamp_of(data) for _, data in items}

    def ready(self, cfg: ReplayConfig) -> bool:
        """Both inputs have a subscriber and all outputs a publisher matched with us (the node is active,
        its model loaded). Only this side's matching is visible; the warm-up covers the other side."""
        return all(p.get_subscription_count() > 0 for p in self.pubs.values()) and all(
            sub.get_publisher_count() > 0 for sub in self.output_subs
        )


def _stamp_of(data: bytes) -> int:
    return bags.stamp_to_ns(bags.TYPESTORE.deserialize_cdr(data, bags.IMAGE_TYPE).header.stamp)


def _restamp(data: bytes, msgtype: str, stamp_ns: int) -> bytes:
    msg = bags.TYPESTORE.deserialize_cdr(data, msgtype)
    sec, nsec = bags.ns_to_stamp(stamp_ns)
    msg.header.stamp = type(msg.header.stamp)(sec=sec, nanosec=nsec)
    return bytes(bags.TYPESTORE.serialize_cdr(msg, msgtype))


def node_command(cfg: ReplayConfig) -> list[str]:
    """The node as ``ros2 run sccosf_ros fusion_node`` would start it, with the bag's topics remapped in.

    ``python -m`` rather than the ``fusion_node`` console script so a source checkout works uninstalled.
    The player publishes reliable, so the node's input QoS is set to match: with the node's default
    best-effort input and Fast DDS defaults, a third of the frames arrived, late (docs/node.md).
    ``node_args`` come last and override any of these.
    """
    params = {
        "device": cfg.device,
        "precision": cfg.precision,
        "sync_slop": cfg.slop,
        "sync_queue_size": cfg.queue_size,
        "num_threads": cfg.num_threads or 0,
        "input_qos": "reliable",
    }
    if cfg.checkpoint:
        params["checkpoint"] = str(cfg.checkpoint)
    cmd = [
        sys.executable,
        "-m",
        "sccosf_ros.node.fusion_node",
        "--ros-args",
        "-r",
        f"rgb/image:={cfg.rgb_topic}",
        "-r",
        f"thermal/image:={cfg.thermal_topic}",
    ]
    for k, v in params.items():
        cmd += ["-p", f"{k}:={v}"]
    return cmd + list(cfg.node_args)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class _BagScan:
    """What one streaming pass over the inputs tells before playing (bags can exceed memory)."""

    expected: dict[int, int]  # RGB stamp -> thermal stamp, as the node's policy pairs them in log order
    first: dict[str, bags.RawMessage]  # first message per input topic (warm-up material)
    t0_log: int
    counts: dict[str, int]
    thermal_stamps: list[int] = field(default_factory=list)


def _scan(bag: Path, cfg: ReplayConfig) -> _BagScan:
    pairer = ApproximateTimePairer(cfg.queue_size, cfg.slop)
    scan = _BagScan({}, {}, 0, {cfg.rgb_topic: 0, cfg.thermal_topic: 0})
    for m in bags.read_raw(bag, [cfg.rgb_topic, cfg.thermal_topic]):
        if not scan.first:
            scan.t0_log = m.log_time_ns
        scan.first.setdefault(m.topic, m)
        scan.counts[m.topic] += 1
        stamp = _stamp_of(m.data)
        if m.topic == cfg.thermal_topic:
            scan.thermal_stamps.append(stamp)
        for p in pairer.add("rgb" if m.topic == cfg.rgb_topic else "thermal", stamp, stamp):
            scan.expected[p.rgb_stamp_ns] = p.thermal_stamp_ns
    if not all(scan.counts.values()):
        raise bags.BagError(f"nothing to replay: message counts {scan.counts} in {bag}")
    return scan


class _NodeProcess:
    """The fusion node as a child process, with its log in the output directory; stopped with SIGINT."""

    def __init__(self, cmd: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - lives as long as the child
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise ReplayError(
                f"the fusion node exited with code {code}; its log ({self.log_path}) ends:\n"
                f"{_tail(self.log_path)}"
            )

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


def replay_bag(bag: str | Path, out_dir: str | Path, config: ReplayConfig | None = None) -> dict[str, Any]:
    """Play ``bag`` through the node, record and score its outputs; writes the same files as the evaluator."""
    cfg = config or ReplayConfig()
    if not cfg.rate > 0:
        raise ValueError(f"rate must be > 0, got {cfg.rate}")
    bag, out = Path(bag), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    topics = bags.bag_topics(bag)
    for t in (cfg.rgb_topic, cfg.thermal_topic):
        if t not in topics:
            raise bags.BagError(f"topic {t} not in bag {bag}; the bag holds: {', '.join(sorted(topics))}")
        if topics[t] != bags.IMAGE_TYPE:
            raise bags.BagError(f"replay plays sensor_msgs/Image; {t} is {topics[t]}")
    bag_path = out / "output_bag"
    if cfg.write_bag and bag_path.exists():
        raise bags.BagError(f"{bag_path} exists; replay into an empty directory")
    labels, label_note = load_labels(bag, cfg.label_topic)
    scan = _scan(bag, cfg)

    domain = cfg.domain_id if cfg.domain_id is not None else int(os.environ.get("ROS_DOMAIN_ID", "0"))
    # The child imports this very package, installed or not: put its source root on the path.
    src = str(Path(__file__).resolve().parents[1])
    pythonpath = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)
    # Both ends get the shipped Fast DDS profile (unless the user set one): with Fast DDS's default 512 KiB
    # shared-memory segment, images are recycled mid-read or fragmented over UDP and frames go missing
    # (docs/node.md). This process's own setting counts only if no participant exists in it yet.
    os.environ.update(with_fastdds_profile(os.environ))
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), PYTHONUNBUFFERED="1", PYTHONPATH=pythonpath)
    context = Context()
    rclpy.init(context=context, domain_id=domain)
    node_proc: _NodeProcess | None = None
    recorder = _Recorder(context, cfg)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(recorder)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    publish_ns: dict[int, int] = {}
    warnings: list[str] = []
    try:
        if cfg.start_node:
            node_proc = _NodeProcess(node_command(cfg), out / "node.log", env)
        _wait_ready(recorder, cfg, node_proc)
        warm_ms = _warm_up(recorder, cfg, scan.first, node_proc)
        recorder.baseline = _settle(recorder, cfg, node_proc) if warm_ms else None
        t0_wall, t0_log = _now_ns(), scan.t0_log
        from tqdm import tqdm

        stream = bags.read_raw(bag, [cfg.rgb_topic, cfg.thermal_topic])
        total = sum(scan.counts.values())
        for m in tqdm(
            stream, total=total, disable=not cfg.progress, unit="msg", desc="sccosf-replay", leave=False
        ):
            due = t0_wall + round((m.log_time_ns - t0_log) / cfg.rate)
            delay = (due - _now_ns()) / 1e9
            if delay > 0:
                time.sleep(delay)
            if node_proc is not None:
                node_proc.check_alive()
            if m.topic == cfg.rgb_topic:
                publish_ns[_stamp_of(m.data)] = _now_ns()
            recorder.pubs[m.topic].publish(m.data)
        last_publish = _now_ns()
        _drain(recorder, cfg, scan.expected, last_publish, publish_ns)
        _await_diagnostics(recorder, _now_ns(), node_proc)
    finally:
        node_code = node_proc.stop() if node_proc is not None else None
        executor.shutdown()
        recorder.destroy_node()
        rclpy.try_shutdown(context=context)
        spinner.join(5)
    if node_code not in (None, 0):
        warnings.append(f"the node exited with code {node_code} (see node.log)")
    return _score_and_report(
        bag,
        out,
        cfg,
        recorder,
        scan,
        publish_ns,
        t0_wall,
        last_publish,
        labels,
        label_note,
        warm_ms,
        warnings,
    )


def _wait_ready(recorder: _Recorder, cfg: ReplayConfig, node_proc: _NodeProcess | None) -> None:
    deadline = time.monotonic() + cfg.startup_timeout_s
    while not recorder.ready(cfg):
        if node_proc is not None:
            node_proc.check_alive()
        if time.monotonic() > deadline:
            hint = (
                f"; its log ends:\n{_tail(node_proc.log_path)}"
                if node_proc is not None
                else f": is fusion_node running with rgb/image:={cfg.rgb_topic} "
                f"thermal/image:={cfg.thermal_topic} in the same ROS_DOMAIN_ID?"
            )
            raise ReplayError(
                f"no fusion node subscribed and publishing within {cfg.startup_timeout_s:.0f} s" + hint
            )
        time.sleep(0.1)


def _warm_up(
    recorder: _Recorder, cfg: ReplayConfig, first: dict[str, bags.RawMessage], node_proc: _NodeProcess | None
) -> list[float]:
    """Send ``warmup_pairs`` copies of the first pair, stamped before the bag, and wait for each output.

    The first inference pays for lazy initialisation (seconds on CPU); timing it would report start-up, not
    the node. Warm-up outputs are recognised by their stamps and left out of every figure.
    """
    if len(first) < 2 or cfg.warmup_pairs < 1:
        return []
    base = min(_stamp_of(m.data) for m in first.values()) - 3_600 * 10**9
    times = []
    for i in range(cfg.warmup_pairs):
        stamp = base + i * 10**9
        data = {
            t: _restamp(first[t].data, first[t].msgtype, stamp) for t in (cfg.thermal_topic, cfg.rgb_topic)
        }
        t0 = _now_ns()
        deadline = time.monotonic() + cfg.startup_timeout_s
        next_send = 0.0
        while stamp not in recorder.fused_stamps():
            # Best-effort inputs may lose a sample: resend until the node's /diagnostics show it paired one
            # (a first CPU inference can take many seconds; resending then would only queue more work).
            with recorder.lock:
                d = recorder.diagnostics
            # Once paired, resend rarely: the node's output may have gone out before its writer had
            # discovered our reader (discovery is not symmetric), and one resend queues at most one pair.
            paired = d is not None and int(float(d.get("matched", "0"))) > i
            if time.monotonic() >= next_send:
                for topic, payload in data.items():
                    recorder.pubs[topic].publish(payload)
                recorder.warmup_sent += 1
                next_send = time.monotonic() + (1.5 if d is not None and not paired else 5.0)
            if node_proc is not None:
                node_proc.check_alive()
            if time.monotonic() > deadline:
                raise ReplayError(
                    f"the node produced no output for a warm-up pair within "
                    f"{cfg.startup_timeout_s:.0f} s (QoS or remapping mismatch?)"
                )
            time.sleep(0.02)
        times.append((_now_ns() - t0) / 1e6)
    return times


def _node_idle(recorder: _Recorder, after_ns: int) -> bool:
    """True when a /diagnostics snapshot newer than ``after_ns`` shows nothing left in the node (every
    matched pair published, skipped as slow or rejected) and every published output has arrived here."""
    with recorder.lock:
        d = dict(recorder.diagnostics or {}) if recorder.diagnostics_ns > after_ns else {}
        fused_all = len(recorder.received[topics.FUSED])
    try:
        matched, processed = int(float(d["matched"])), int(float(d["pairs_processed"]))
        settled = processed + int(float(d["pairs_dropped_slow"])) + int(float(d["bad_inputs_total"]))
    except (KeyError, ValueError):
        return False
    return settled >= matched and fused_all >= processed


def _drain(
    recorder: _Recorder,
    cfg: ReplayConfig,
    expected: dict[int, int],
    last_publish: int,
    publish_ns: dict[int, int],
) -> None:
    """Wait for the outputs still in flight, until: every expected pair is out; or the node reports itself
    idle (/diagnostics); or it has been quiet for twice the longest latency seen (at least 3 s); or
    ``drain_timeout_s``. On CPU one inference can take seconds, so a fixed short wait would lose outputs."""
    deadline = time.monotonic() + cfg.drain_timeout_s
    while time.monotonic() < deadline:
        got = recorder.fused_stamps()
        if set(expected) <= got or _node_idle(recorder, last_publish + 200_000_000):
            return
        with recorder.lock:
            receipts = {_stamp_of(d): t for t, d in recorder.received[topics.FUSED][-20:]}
            last = max(recorder.last_receipt_ns, last_publish)
        worst = max(((t - publish_ns[s]) / 1e9 for s, t in receipts.items() if s in publish_ns), default=1.0)
        if (_now_ns() - last) / 1e9 > max(3.0, 2 * worst):
            return
        time.sleep(0.1)


def _await_diagnostics(
    recorder: _Recorder, after_ns: int, node_proc: _NodeProcess | None, timeout_s: float = 2.5
) -> None:
    """Wait for one /diagnostics snapshot newer than ``after_ns`` (the node publishes one per second), so
    the report can split drops into transport losses and pairs skipped by slow inference."""
    deadline = time.monotonic() + timeout_s
    while recorder.diagnostics_ns <= after_ns and time.monotonic() < deadline:
        if node_proc is not None and node_proc.proc.poll() is not None:
            return
        time.sleep(0.05)


def _settle(recorder: _Recorder, cfg: ReplayConfig, node_proc: _NodeProcess | None) -> dict[str, str] | None:
    """After warm-up, wait until the node is idle (resent warm-up pairs may still be in its hand-off) and
    return its counters then, so the report counts the bag's messages only and the first frames are not
    delayed by warm-up work. None when the node publishes no usable /diagnostics."""
    start = _now_ns()
    deadline = time.monotonic() + cfg.startup_timeout_s
    while time.monotonic() < deadline:
        if node_proc is not None:
            node_proc.check_alive()
        if _node_idle(recorder, start):
            with recorder.lock:
                return dict(recorder.diagnostics or {})
        if recorder.diagnostics is None and (_now_ns() - start) / 1e9 > 3.0:
            return None  # a node without diagnostics: nothing to wait for or subtract
        time.sleep(0.05)
    return None


def _node_breakdown(recorder: _Recorder, scan: _BagScan, cfg: ReplayConfig) -> dict[str, Any] | None:
    """Where the bag's inputs went, from the node's own counters minus their post-warm-up baseline."""
    with recorder.lock:
        d = dict(recorder.diagnostics or {})
    base = recorder.baseline
    if not d or base is None:
        return None

    def num(key: str) -> int | None:
        try:
            return int(float(d[key])) - int(float(base.get(key, 0)))
        except (KeyError, ValueError):
            return None

    got_rgb, got_th = num("rgb_received"), num("thermal_received")
    out: dict[str, Any] = {
        "node_rgb_received": got_rgb,
        "node_thermal_received": got_th,
        "node_pairs_matched": num("matched"),
        "node_pairs_published": num("pairs_processed"),
        "node_pairs_dropped_slow": num("pairs_dropped_slow"),
        "node_bad_inputs": num("bad_inputs_total"),
    }
    if got_rgb is not None and got_th is not None:
        # Lost on the wire or overwritten in the node's input queue (depth input_depth) before its
        # executor took them: the node's callbacks never saw them.
        out["inputs_not_delivered"] = (
            scan.counts[cfg.rgb_topic] + scan.counts[cfg.thermal_topic] - got_rgb - got_th
        )
    return out


def _score_and_report(
    bag: Path,
    out: Path,
    cfg: ReplayConfig,
    recorder: _Recorder,
    scan: _BagScan,
    publish_ns: dict[int, int],
    t0_wall: int,
    last_publish: int,
    labels: dict[int, bytes] | None,
    label_note: str | None,
    warm_ms: list[float],
    warnings: list[str],
) -> dict[str, Any]:
    """Latency by stamp, metrics on what arrived, output bag on the bag's timeline, report files."""
    expected, t0_log = scan.expected, scan.t0_log
    bag_stamps = set(publish_ns)
    outputs: dict[str, dict[int, tuple[int, bytes]]] = {}
    for topic, items in recorder.received.items():
        by_stamp: dict[int, tuple[int, bytes]] = {}
        for t, data in items:
            s = _stamp_of(data)
            if s in bag_stamps:  # warm-up outputs carry stamps from before the bag
                by_stamp.setdefault(s, (t, data))
        outputs[topic] = by_stamp
    fused = outputs[topics.FUSED]
    latencies = [(t - publish_ns[s]) / 1e6 for s, (t, _) in fused.items()]
    unexpected = sorted(set(fused) - set(expected))
    if unexpected:
        warnings.append(
            f"{len(unexpected)} outputs for RGB stamps the offline pairing does not pair "
            "(inputs lost on the wire, or arrival order differed); scored against the nearest "
            "thermal frame"
        )

    # Score what the node published against the inputs it was given, decoded again from the bag in one
    # streaming pass; only frames an output still waits for are held (partners are within the slop).
    names, palette = _class_info(recorder, cfg)
    scorer = FrameScorer(names, palette, labels, cfg.contact_columns)
    segs = outputs[topics.SEGMENTATION]
    want: dict[int, int] = {}  # RGB stamp -> thermal stamp, for outputs that can be scored
    for s in sorted(fused):
        t_stamp = expected.get(s)
        if t_stamp is None and scan.thermal_stamps:
            t_stamp = min(scan.thermal_stamps, key=lambda x: abs(x - s))
        if t_stamp is not None and s in segs:
            want[s] = t_stamp
    wanted_thermal = set(want.values())
    rgb_frames: dict[int, np.ndarray] = {}
    thermal_frames: dict[int, np.ndarray] = {}
    normalizer = make_normalizer()
    for m in bags.read_images(bag, [cfg.rgb_topic, cfg.thermal_topic]):
        if m.topic == cfg.rgb_topic and m.stamp_ns in want:
            rgb_frames[m.stamp_ns] = to_rgb(m.array, m.encoding)
        elif m.topic == cfg.thermal_topic and m.stamp_ns in wanted_thermal:
            thermal_frames[m.stamp_ns] = to_thermal_gray(m.array, m.encoding)
        for s in [s for s in rgb_frames if want[s] in thermal_frames]:
            scorer.add(
                s,
                rgb_frames.pop(s),
                normalizer(thermal_frames[want[s]]),
                _decode(fused[s][1]),
                _decode(segs[s][1]),
                {"thermal_stamp_ns": want[s], "latency_ms": (fused[s][0] - publish_ns[s]) / 1e6},
            )
        if len(thermal_frames) > 4 * cfg.queue_size:  # drop partners no pending output can still need
            pending = {want[s] for s in rgb_frames}
            for t in [t for t in thermal_frames if t not in pending and t < m.stamp_ns - 10**9]:
                del thermal_frames[t]

    bag_path = out / "output_bag" if cfg.write_bag else None
    if bag_path is not None:
        copy = [cfg.rgb_topic, cfg.thermal_topic] + ([cfg.label_topic] if labels is not None else [])
        with bags.BagWriter(bag_path, cfg.storage) as w:
            for m in bags.read_raw(bag, copy):
                w.write_raw(m.topic, m.msgtype, m.log_time_ns, m.data)
            for topic, by_stamp in outputs.items():
                for _, (t, data) in sorted(by_stamp.items()):
                    w.write_raw(topic, bags.IMAGE_TYPE, t0_log + round((t - t0_wall) * cfg.rate), data)
    sheet = scorer.sheet.save(out / "contact_sheet.png")
    receipts = sorted(t for t, _ in fused.values())
    # Rate between the first and last output: (n - 1) intervals, independent of start-up and drain.
    out_rate = (len(receipts) - 1) / ((receipts[-1] - receipts[0]) / 1e9) if len(receipts) > 2 else None
    report: dict[str, Any] = {
        "title": "SC-CoSF live replay through the fusion node",
        "mode": "live (rclpy, DDS, the node's synchroniser and drop-oldest hand-off)",
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "bag": str(bag),
        "checkpoint": str(cfg.checkpoint or "shipped default"),
        "device": cfg.device,
        "threads": cfg.num_threads or "torch default",
        "rate": cfg.rate,
        "note": (
            "Latency = receipt wall time of /sccosf/fused minus publish wall time of the RGB frame with "
            f"the same stamp, in one process clock; {len(warm_ms)} warm-up pair(s) excluded. The IR "
            "reference for fusion metrics is re-normalised here with the node's default normaliser."
        ),
        "topics": {"rgb": cfg.rgb_topic, "thermal": cfg.thermal_topic, "labels": cfg.label_topic},
        "pairing": {"slop_s": cfg.slop, "queue_size": cfg.queue_size},
        "pairs": {
            "rgb_messages": scan.counts[cfg.rgb_topic],
            "thermal_messages": scan.counts[cfg.thermal_topic],
            "pairs_expected": len(expected),
            "outputs_received": len(fused),
            "outputs_dropped": len(set(expected) - set(fused)),
            "outputs_unexpected": len(unexpected),
            "segmentation_received": len(outputs[topics.SEGMENTATION]),
            "segmentation_color_received": len(outputs[topics.SEGMENTATION_COLOR]),
        },
        "node_counters": _node_breakdown(recorder, scan, cfg),
        "latency_ms": _percentiles(latencies),
        "throughput": {
            "outputs": len(fused),
            "replay_wall_s": (last_publish - t0_wall) / 1e9,
            "outputs_per_s": out_rate,
            "input_pairs_per_s": len(expected) / max((last_publish - t0_wall) / 1e9, 1e-9),
            "warmup_ms": warm_ms[0] if warm_ms else None,
        },
        "fusion": scorer.fusion_summary(),
        "segmentation": scorer.segmentation_summary(),
        "outputs": {
            "report_md": str(out / "report.md"),
            "report_json": str(out / "report.json"),
            "output_bag": str(bag_path) if bag_path else None,
            "contact_sheet": str(sheet) if sheet else None,
            "node_log": str(out / "node.log") if cfg.start_node else None,
        },
        "warnings": warnings + scorer.warnings,
    }
    if report["segmentation"] is None:
        report["segmentation_note"] = label_note or "no label matched a received output's stamp: no mIoU"
    write_report(out, report)
    return report


def _decode(data: bytes) -> np.ndarray:
    msg = bags.TYPESTORE.deserialize_cdr(data, bags.IMAGE_TYPE)
    array, _ = bags.decode_image(msg, bags.IMAGE_TYPE)
    return np.asarray(array)


def _class_info(recorder: _Recorder, cfg: ReplayConfig) -> tuple[list[str], np.ndarray]:
    """Class names and palette as the node announced them (latched ``/sccosf/class_names``, parameter
    overrides included), else from the checkpoint's metadata."""
    if recorder.class_info is not None:
        info = json.loads(recorder.class_info)
        palette = [tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in info["palette"]]
        return list(info["class_names"]), np.array(palette, np.uint8).reshape(-1, 3)
    from sccosf_ros.checkpoint import read_checkpoint_meta
    from sccosf_ros.paths import default_checkpoint_path

    path = cfg.checkpoint or default_checkpoint_path()
    if path is None:
        raise ReplayError("the node announced no class names and no checkpoint is known to read them from")
    meta = read_checkpoint_meta(path)
    return list(meta.class_names), np.array(meta.palette, np.uint8).reshape(-1, 3)
