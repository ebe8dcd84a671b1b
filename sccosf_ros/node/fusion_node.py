"""ROS 2 lifecycle node: time-paired RGB + thermal images in, fused image and segmentation masks out.

A thin rclpy adapter over ROS-free parts: parameters (``params``), pairing (``sccosf_ros.pairing``), per-pair
work (``sccosf_ros.pipeline``), statistics and the pairing window (``stats``) and the engine
(``sccosf_ros.engine``).

Threading: one ``SingleThreadedExecutor`` (rclpy's multi-threaded one starved the worker of the GIL for
seconds on two cores; docs/node.md). Subscription callbacks only pair messages (``ApproximateTimePairer``,
the one synchroniser, on every install) and drop the newest pair into a one-item ``LatestSlot``; one worker
thread takes it, converts, infers and publishes. When inference is slower than the cameras older pairs are
dropped (and counted) instead of queueing up latency.

Input QoS: with ``input_qos: auto`` (the default) each input subscribes with the reliability its publishers
offer, re-checked every second (``node/qos.py`` says why and decides).

Lifecycle (as yolo_ros does it): parameters are declared in ``__init__``; ``configure`` validates them and
starts ``/diagnostics``; ``activate`` loads the model on its device and creates the topics; ``deactivate``
frees the model (and the GPU cache) so a paused node holds no device memory.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.clock import ClockChange, JumpThreshold, TimeJump
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
    qos_profile_system_default,
)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String

from sccosf_ros import topics
from sccosf_ros.camera_info import CameraGeometry, CameraInfoCache, CameraInfoError
from sccosf_ros.imaging.encodings import ImageFields
from sccosf_ros.imaging.palette import parse_palette
from sccosf_ros.node.params import (
    PARAMETERS,
    USE_COMPRESSED_DEPRECATED,
    ParameterError,
    input_transports,
    parse_homography,
    parse_size,
    split_list,
    thermal_normalizer,
    validate,
)
from sccosf_ros.node.qos import AUTO_CHECK_PERIOD_S, BEST_EFFORT, RELIABLE, choose_reliability, describe
from sccosf_ros.node.stats import MatchProblem, MatchWindow, NodeStats
from sccosf_ros.pairing import ApproximateTimePairer, LatestSlot, PairingReset
from sccosf_ros.paths import FASTDDS_PROFILE_ENV, with_fastdds_profile
from sccosf_ros.pipeline import BadInputError, Engine, PairProcessor

NODE_NAME = "sccosf"
INPUTS = topics.INPUTS
DIAGNOSTICS_PERIOD_S = 1.0
UNMATCHED_WINDOW_S = 3.0
WARN_EVERY_S = 10.0

EngineFactory = Callable[..., Engine]


def make_qos(kind: str, depth: int) -> QoSProfile:
    """REP-2003 style profiles by name; ``depth`` replaces the preset's (``auto``: see node/qos.py)."""
    base = {
        "sensor_data": qos_profile_sensor_data,
        "system_default": qos_profile_system_default,
        "reliable": QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE),
        "best_effort": QoSProfile(depth=depth, reliability=ReliabilityPolicy.BEST_EFFORT),
    }[kind]
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=base.reliability,
        durability=DurabilityPolicy.VOLATILE,
    )


POLICIES = {RELIABLE: ReliabilityPolicy.RELIABLE, BEST_EFFORT: ReliabilityPolicy.BEST_EFFORT}
_POLICY_NAMES = {v: k for k, v in POLICIES.items()}


def reliability_name(policy: Any) -> str:
    """``ReliabilityPolicy.RELIABLE`` -> ``"reliable"`` (as node/qos.py and the diagnostics spell it)."""
    return _POLICY_NAMES.get(policy, str(getattr(policy, "name", policy)).lower())


def image_message(fields: ImageFields, header: Any = None) -> Image:
    """A ``sensor_msgs/Image`` from encoded fields (``sccosf_ros.imaging.numpy_to_image_fields``)."""
    msg = Image()
    if header is not None:
        msg.header = header
    msg.encoding = fields.encoding
    msg.height, msg.width, msg.step = fields.height, fields.width, fields.step
    msg.is_bigendian = fields.is_bigendian
    msg.data = fields.data
    return msg


def stamp_ns_of(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def stamp_ns(msg: Any) -> int:
    return stamp_ns_of(msg.header)


def _default_engine_factory(**kwargs: Any) -> Engine:
    from sccosf_ros.engine import FusionEngine  # torch is imported on activation, not at node start

    return FusionEngine(**kwargs)


class FusionNode(LifecycleNode):
    """The SC-CoSF fusion node; ``engine_factory`` lets tests inject a fake engine."""

    def __init__(
        self, node_name: str = NODE_NAME, *, engine_factory: EngineFactory | None = None, **kwargs: Any
    ) -> None:
        super().__init__(node_name, **kwargs)
        for spec in PARAMETERS:
            # dynamic typing: a YAML '1' for a double must reach validate() and get a clear message,
            # not abort construction with InvalidParameterTypeException.
            self.declare_parameter(
                spec.name,
                spec.default,
                ParameterDescriptor(description=spec.description, dynamic_typing=True),
            )
        self._engine_factory = engine_factory or _default_engine_factory
        self.config: dict[str, Any] = {}
        self.last_error = ""
        self.stats = NodeStats()
        self.engine: Engine | None = None
        self.class_names: list[str] = []
        self.slot: LatestSlot[tuple[Any, Any]] = LatestSlot()
        self.pairer: ApproximateTimePairer | None = None
        self._jump_handle: Any = None
        self._subs: dict[str, Any] = {}
        self._input_reliability: dict[str, str] = {}
        self._input_qos_changes = 0
        self._qos_timer: Any = None
        self._pubs: dict[str, Any] = {}
        self._names_pub: Any = None
        self._info_pub: Any = None
        self._info_sub: Any = None
        self._infos = CameraInfoCache()
        self._transports: dict[str, str] = {}
        self._diag_pub: Any = None
        self._diag_timer: Any = None
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._processor: PairProcessor | None = None
        self._matched = 0
        self._last_stamp: dict[str, int] = {}
        self._match_window = MatchWindow(UNMATCHED_WINDOW_S, WARN_EVERY_S)
        self._device = self._backend = "none"
        self._monotonic: Callable[[], float] = time.monotonic  # the clock of the warning windows (tests)

    # ------------------------------------------------------------------------------------ lifecycle
    def _fail(self, message: str) -> TransitionCallbackReturn:
        self.last_error = message
        self.get_logger().error(message)
        return TransitionCallbackReturn.FAILURE

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        values = {spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS}
        try:
            self.config = validate(values)
        except ParameterError as exc:
            return self._fail(f"configure failed: {exc}")
        if self.config["use_compressed"]:
            self.get_logger().warning(USE_COMPRESSED_DEPRECATED)
        self._transports = input_transports(self.config)
        self.stats.reset()
        self._diag_pub = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, 10)
        self._diag_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)
        self.get_logger().info("configured")
        return TransitionCallbackReturn.SUCCESS

    def _load_engine(self) -> Engine:
        c = self.config
        hom = parse_homography(c["homography"])
        engine = self._engine_factory(
            checkpoint=c["checkpoint"] or None,
            device=c["device"],
            precision=c["precision"],
            homography=None if hom is None else np.array(hom, dtype=np.float64).reshape(3, 3),
            num_threads=c["num_threads"] or None,
            seg_refine=c["seg_refine"],
            backend=c["backend"],
        )
        size = parse_size(c["warmup_size"])
        if size is not None and hasattr(engine, "warmup"):
            try:
                ms = engine.warmup(*size, runs=2)  # onnxruntime: the export for this size, once per machine
            except Exception:
                engine.close()
                raise
            self.get_logger().info(f"model prepared for {size[0]}x{size[1]} frames ({ms:.0f} ms)")
        return engine

    def _labels(self, engine: Engine) -> tuple[list[str], np.ndarray]:
        """Class names and palette: the engine's, replaced by the parameters when set (checked to fit)."""
        names = list(engine.class_names)
        palette = np.asarray(engine.palette, dtype=np.uint8).reshape(-1, 3)
        n = len(names)
        override = split_list(self.config["class_names"])
        if override:
            if len(override) != n:
                raise ParameterError("class_names", f"has {len(override)} names, the model has {n} classes")
            names = override
        colours = split_list(self.config["palette"])
        if colours:
            if len(colours) != n:
                raise ParameterError("palette", f"has {len(colours)} colours, the model has {n} classes")
            palette = parse_palette(colours)
        return names, palette

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        c = self.config
        try:
            normalizer = thermal_normalizer(self.config)
        except ValueError as exc:
            return self._fail(f"activate failed: parameter 'thermal_normalization': {exc}")
        try:
            engine = self._load_engine()
        except Exception as exc:  # CheckpointError, bad device, out of memory: all fatal here
            return self._fail(f"activate failed: cannot load the model: {type(exc).__name__}: {exc}")
        try:
            names, palette = self._labels(engine)
        except ParameterError as exc:
            engine.close()
            return self._fail(f"activate failed: {exc}")
        self.engine, self.class_names = engine, names
        precision = getattr(engine, "precision", c["precision"])  # an INT8 .onnx file runs as int8
        self._device = f"{getattr(engine, 'device', 'unknown')} {precision}"
        self._backend = str(getattr(engine, "backend", c["backend"]))
        wanted = {
            name
            for name, flag in (
                ("fused", "publish_fused"),
                ("segmentation", "publish_segmentation"),
                ("segmentation_color", "publish_color"),
                ("overlay", "publish_overlay"),
            )
            if c[flag]
        }
        self._processor = PairProcessor(
            engine,
            normalizer,
            palette,
            wanted,
            overlay_alpha=c["overlay_alpha"],
            has_homography=bool(c["homography"].strip()),
            compressed={s for s, t in self._transports.items() if t == "compressed"},
        )
        out_qos = make_qos(c["output_qos"], c["output_depth"])
        self._pubs = {name: self.create_publisher(Image, topics.OUTPUTS[name], out_qos) for name in wanted}
        self._info_pub = self.create_publisher(CameraInfo, topics.CAMERA_INFO, out_qos)
        latched = QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        self._names_pub = self.create_publisher(String, topics.CLASS_NAMES, latched)
        hex_palette = [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in palette.tolist()]
        self._names_pub.publish(String(data=json.dumps({"class_names": names, "palette": hex_palette})))
        self._start_worker()
        self._create_inputs()
        self.get_logger().info(
            f"active: model on {self._device} ({self._backend}), {len(names)} classes, "
            f"publishing {sorted(wanted)}, "
            f"input QoS {c['input_qos']} ({self._describe_inputs()})"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._teardown()
        self.get_logger().info("inactive: model released")
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._teardown()
        self._destroy_diagnostics()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._teardown()
        self._destroy_diagnostics()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: State) -> TransitionCallbackReturn:
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def _teardown(self) -> None:
        """Inputs first (nothing new arrives), then the worker, then outputs and the model."""
        if self._jump_handle is not None:
            self._jump_handle.unregister()
            self._jump_handle = None
        if self._qos_timer is not None:
            self.destroy_timer(self._qos_timer)
            self._qos_timer = None
        for sub in self._subs.values():
            self.destroy_subscription(sub)
        self._subs = {}
        if self._info_sub is not None:
            self.destroy_subscription(self._info_sub)
            self._info_sub = None
        self._stop.set()
        self.slot.close()
        if self._worker is not None:
            self._worker.join(timeout=30.0)
            if self._worker.is_alive():
                self.get_logger().error("worker did not stop within 30 s (inference stuck?)")
            self._worker = None
        self.slot.clear()
        for pub in self._pubs.values():
            self.destroy_publisher(pub)
        self._pubs = {}
        if self._info_pub is not None:
            self.destroy_publisher(self._info_pub)
            self._info_pub = None
        if self._names_pub is not None:
            self.destroy_publisher(self._names_pub)
            self._names_pub = None
        if self.engine is not None:
            self.engine.close()  # FusionEngine.close() also empties the CUDA cache
            self.engine = None
        self._processor = None
        self._device = self._backend = "none"

    def _destroy_diagnostics(self) -> None:
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
            self._diag_pub = None

    # ------------------------------------------------------------------------------------ inputs
    def _input_topic(self, stream: str) -> str:
        return INPUTS[stream] + ("/compressed" if self._transports[stream] == "compressed" else "")

    def _offered(self, stream: str) -> list[str]:
        """Reliability offered by each publisher on the stream's (remapped, namespaced) topic."""
        topic = self.resolve_topic_name(self._input_topic(stream))
        return [
            reliability_name(info.qos_profile.reliability)
            for info in self.get_publishers_info_by_topic(topic)
        ]

    def _subscribe(self, stream: str, reliability: ReliabilityPolicy) -> None:
        """(Re)create one input subscription with ``reliability``; the pairer and its queues carry on."""
        c = self.config
        old = self._subs.pop(stream, None)
        if old is not None:
            self.destroy_subscription(old)
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=c["input_depth"],
            reliability=reliability,
            durability=DurabilityPolicy.VOLATILE,
        )
        msg_type = CompressedImage if self._transports[stream] == "compressed" else Image
        self._subs[stream] = self.create_subscription(
            msg_type, self._input_topic(stream), lambda msg, s=stream: self._on_message(s, msg), qos
        )
        self._input_reliability[stream] = reliability_name(reliability)

    def _create_inputs(self) -> None:
        c = self.config
        self._matched = 0
        self._last_stamp = {}
        self._match_window.reset()
        self._input_reliability = {}
        self._input_qos_changes = 0
        jump = c["sync_jump_threshold"]
        self.pairer = ApproximateTimePairer(
            c["sync_queue_size"],
            c["sync_slop"],
            jump_threshold=jump or math.inf,
            on_reset=self._on_pairing_reset,
        )
        if jump:  # a /clock going back (use_sim_time) restarts the pairing at once, not at the next stamp
            threshold = JumpThreshold(
                min_forward=None, min_backward=Duration(nanoseconds=-round(jump * 1e9)), on_clock_change=True
            )
            self._jump_handle = self.get_clock().create_jump_callback(
                threshold, post_callback=self._on_time_jump
            )
        for stream in INPUTS:
            if c["input_qos"] == "auto":
                reliability = POLICIES[choose_reliability(self._offered(stream))]
            else:
                reliability = make_qos(c["input_qos"], c["input_depth"]).reliability
            self._subscribe(stream, reliability)
        self._infos = CameraInfoCache(c["camera_info_sync"])
        # best effort hears reliable and best-effort drivers alike; a lost camera_info costs one output's
        info_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
        self._info_sub = self.create_subscription(
            CameraInfo, topics.RGB_CAMERA_INFO, lambda m: self._infos.add(stamp_ns(m), m), info_qos
        )
        if c["input_qos"] == "auto":
            self._qos_timer = self.create_timer(AUTO_CHECK_PERIOD_S, self._check_input_qos)

    def _on_pairing_reset(self, event: PairingReset) -> None:
        """One warning per new pairing pass (stamps or ROS time went back); counted as ``pairing_resets``."""
        self.get_logger().warning(f"{event.message} (counted in /diagnostics as pairing_resets)")

    def _on_time_jump(self, jump: TimeJump) -> None:
        """rclpy's jump callback: ROS time activated (``use_sim_time``) or gone back past the threshold."""
        pairer = self.pairer
        if pairer is None:
            return
        if jump.clock_change == ClockChange.ROS_TIME_ACTIVATED:
            pairer.reset("ROS time activated (use_sim_time)")
        elif jump.delta.nanoseconds < 0:
            pairer.reset(f"ROS time went back {-jump.delta.nanoseconds / 1e9:.3f} s")

    def _check_input_qos(self) -> None:
        """``input_qos: auto``: follow the publishers (a driver started, restarted or was replaced)."""
        for stream in INPUTS:
            if stream not in self._subs:
                return  # deactivating
            offered = self._offered(stream)
            current = self._input_reliability.get(stream)
            wanted = choose_reliability(offered, current)
            if wanted != current:
                self._subscribe(stream, POLICIES[wanted])
                self._input_qos_changes += 1
                self.get_logger().info(
                    f"input {stream} ({self._subs[stream].topic_name}): publishers offer "
                    f"{describe(offered)}; subscribing {wanted} (input_qos auto)"
                )

    def _describe_inputs(self) -> str:
        return ", ".join(f"{s} {self._input_reliability.get(s, '-')}" for s in INPUTS)

    def _count(self, stream: str, msg: Any, t0: float | None = None) -> None:
        self._last_stamp[stream] = stamp_ns(msg)
        self.stats.on_message(stream, None if t0 is None else (time.perf_counter() - t0) * 1e3)

    def _on_message(self, stream: str, msg: Any) -> None:
        t0 = time.perf_counter()
        pairer = self.pairer
        if pairer is None:
            return
        for pair in pairer.add(stream, stamp_ns(msg), msg):
            self._matched += 1
            self._hand_off(pair.rgb, pair.thermal)
        self._count(stream, msg, t0)

    def _hand_off(self, rgb: Any, thermal: Any) -> None:
        self.stats.on_pair()
        self.slot.put((rgb, thermal))

    # ------------------------------------------------------------------------------------ worker
    def _start_worker(self) -> None:
        self._stop.clear()
        self.slot.clear()
        self.slot.reopen()
        self._worker = threading.Thread(target=self._work, name="sccosf-worker", daemon=True)
        self._worker.start()

    def _work(self) -> None:
        while not self._stop.is_set():
            item = self.slot.take(timeout=0.2)
            if item is None:
                continue
            try:
                self._process(*item)
            except Exception as exc:  # the worker must survive anything a pair can cause
                self._report(BadInputError("pair", "internal", f"{type(exc).__name__}: {exc}"))

    def _report(self, exc: BadInputError) -> None:
        """Log each stream/kind once (the first one is what a user needs), count every one."""
        if self.stats.on_bad(exc.stream, exc.kind) == 1:
            self.get_logger().error(
                f"bad input ({exc.kind}): {exc}. Counted in /diagnostics as "
                f"bad_input.{exc.stream}/{exc.kind}; not logged again."
            )

    def _process(self, rgb_msg: Any, thermal_msg: Any) -> None:
        processor = self._processor
        if processor is None:
            return
        t0 = time.perf_counter()
        try:
            out = processor.process(rgb_msg, thermal_msg)
        except BadInputError as exc:
            self._report(exc)
            return
        for kind, message in out.warnings:
            if self.stats.on_warning(kind) == 1:
                self.get_logger().warning(f"{message} (counted as warning.{kind}; not logged again)")
        for name, fields in out.images.items():
            pub = self._pubs.get(name)
            if pub is not None:  # the RGB input's stamp and frame_id, never now()
                pub.publish(image_message(fields, rgb_msg.header))
        if out.rgb is not None:
            self._publish_camera_info(rgb_msg.header, *out.rgb.shape[:2])
        done = time.perf_counter()
        infer_ms = out.timings["infer"]
        latency_ms = (self.get_clock().now().nanoseconds - stamp_ns(rgb_msg)) / 1e6
        self.stats.on_output(infer_ms, (done - t0) * 1e3 - infer_ms, latency_ms)

    def _publish_camera_info(self, header: Any, height: int, width: int) -> None:
        """The RGB camera's model on the outputs' grid, with their header; nothing without an input one."""
        pub = self._info_pub
        found = self._infos.find(stamp_ns_of(header))
        if pub is None or found is None:
            if self._infos.received and self.stats.on_warning("camera_info_unmatched") == 1:
                self.get_logger().warning(  # camera_info arrives, but none with this image's stamp
                    "no rgb/camera_info with the RGB image's stamp: nothing on sccosf/camera_info for it "
                    "(counted as warning.camera_info_unmatched; camera_info_sync: latest takes the newest)"
                )
            return
        try:
            geometry = CameraGeometry.from_msg(found).fitted(height, width)
        except CameraInfoError as exc:
            self._report(BadInputError("camera_info", "invalid", str(exc)))
            return
        msg = geometry.apply_to(CameraInfo())
        msg.header = header
        pub.publish(msg)

    # ------------------------------------------------------------------------------------ diagnostics
    def pairing_counts(self) -> dict[str, int]:
        """matched / unmatched_* (queue overflow, repeated stamp or a pass that ended, no partner) /
        pending_* / pairing_resets (new passes: stamps or ROS time went back)."""
        out = {"matched": self._matched}
        if self.pairer is not None:
            st = self.pairer.stats()
            for s in INPUTS:
                out[f"unmatched_{s}"] = st.dropped[s] + st.replaced[s] + st.flushed[s]
                out[f"pending_{s}"] = st.pending[s]
            out["pairing_resets"] = st.resets
        return out

    def _describe_problem(self, p: MatchProblem) -> str:
        """The warning for a pairing problem, in the node's terms (parameters, QoS, remapping)."""
        if p.silent is None:
            skew = (self._last_stamp.get("thermal", 0) - self._last_stamp.get("rgb", 0)) / 1e9
            return (
                f"only {p.matched} of ~{p.possible} possible pairs matched in the last {p.span_s:.0f} s; "
                f"latest thermal-rgb stamp difference {skew:+.3f} s, "
                f"sync_slop {self.config['sync_slop']} s: "
                "check camera clocks/stamps or raise sync_slop"
            )
        return (
            f"no {p.silent} messages for {p.span_s:.0f} s while the other input arrives: check the "
            f"remapping and QoS (input_qos={self.config['input_qos']}, subscribed "
            f"{self._input_reliability.get(p.silent, '-')}; `ros2 topic info -v` shows the publisher's)"
        )

    def _check_matching(self, now: float, counts: dict[str, int]) -> str:
        """Warn (rate-limited) when both inputs arrive but few pairs form: the failure users cannot see."""
        rx = self.stats.received
        found = self._match_window.update(now, rx["rgb"], rx["thermal"], counts["matched"])
        if found is None:
            return ""
        problem = self._describe_problem(found)
        if self._match_window.warn_due(now):
            self.stats.on_warning("unmatched")
            self.get_logger().warning(problem)
        return problem

    def diagnostics(self) -> DiagnosticStatus:
        """The node's one DiagnosticStatus (also used by tests directly)."""
        now = self._monotonic()
        counts = self.pairing_counts()
        active = self._processor is not None
        problem = self._check_matching(now, counts) if active else ""
        values: dict[str, Any] = dict(self.stats.snapshot())
        values.update(counts)
        values["pairs_dropped_slow"] = self.slot.dropped
        values["device"] = self._device
        values["backend"] = self._backend
        for s in INPUTS:
            values[f"input_reliability_{s}"] = self._input_reliability.get(s, "-")
        values["input_qos_changes"] = self._input_qos_changes
        values["camera_info_received"] = self._infos.received
        level, message = DiagnosticStatus.OK, "ok"
        if not active:
            level, message = DiagnosticStatus.WARN, "inactive: " + (self.last_error or "not activated")
        elif problem:
            level, message = DiagnosticStatus.WARN, problem
        elif values["bad_inputs_total"]:
            level, message = DiagnosticStatus.WARN, f"{values['bad_inputs_total']} bad inputs so far"
        status = DiagnosticStatus(
            level=level, name=f"{self.get_name()}: fusion", message=message, hardware_id=self._device
        )
        status.values = [
            KeyValue(key=k, value=f"{v:.3f}" if isinstance(v, float) else str(v)) for k, v in values.items()
        ]
        return status

    def _publish_diagnostics(self) -> None:
        if self._diag_pub is None:
            return
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [self.diagnostics()]
        self._diag_pub.publish(array)


def main(args: list[str] | None = None) -> int:
    """``ros2 run sccosf_ros fusion_node``: start, and with ``autostart`` configure and activate.

    Unless ``FASTRTPS_DEFAULT_PROFILES_FILE`` is set (empty opts out), the process loads the shipped Fast DDS
    profile first: Fast DDS's default 512 KiB shared-memory segment cannot hold a 640x480 rgb8 output, which
    then travels as fragmented UDP and is lost under load (docs/node.md, "Transport").
    """
    os.environ.update(with_fastdds_profile(os.environ))
    rclpy.init(args=args)
    node = FusionNode()
    node.get_logger().info(f"Fast DDS profile: {os.environ.get(FASTDDS_PROFILE_ENV) or 'Fast DDS defaults'}")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    code = 0
    try:
        if node.get_parameter("autostart").value:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                raise SystemExit(1)
            if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                raise SystemExit(1)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        node._teardown()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
