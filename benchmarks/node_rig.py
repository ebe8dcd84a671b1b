"""The ROS side that ``bench_node.py`` and ``bench_qos_matrix.py`` share: camera images as messages, and
what a running ``fusion_node`` sends back (when each fused image arrived; its ``/diagnostics`` counters).

Imports rclpy's message types: import it after the Fast DDS environment is set.
"""

from __future__ import annotations

import subprocess
import threading
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image

from sccosf_ros import topics
from sccosf_ros.imaging import numpy_to_image_fields
from sccosf_ros.node.fusion_node import image_message as fusion_image_message


def image_message(img: np.ndarray, encoding: str, frame_id: str) -> Image:
    """A ``sensor_msgs/Image`` of an array, encoded as the node encodes its outputs (stamp left to the
    sender)."""
    msg = fusion_image_message(numpy_to_image_fields(img, encoding))
    msg.header.frame_id = frame_id
    return msg


class OutputRecorder:
    """Subscribes ``node`` to ``sccosf/fused`` (with ``fused_qos``) and to the diagnostics."""

    def __init__(self, node: Any, fused_qos: Any) -> None:
        self._clock = node.get_clock()
        self._lock = threading.Lock()
        self._fused: list[tuple[int, int]] = []
        self._diags: list[dict[str, str]] = []
        node.create_subscription(Image, topics.OUTPUTS["fused"], self._on_fused, fused_qos)
        node.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, self._on_diag, 10)

    def _on_fused(self, msg: Image) -> None:
        now = self._clock.now().nanoseconds
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self._lock:
            self._fused.append((stamp, now))

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for st in msg.status:
            if st.name.endswith(": fusion"):
                with self._lock:
                    self._diags.append({kv.key: kv.value for kv in st.values})

    def fused(self) -> list[tuple[int, int]]:
        """(header stamp, arrival) in ns of every fused image so far, in arrival order (one clock)."""
        with self._lock:
            return list(self._fused)

    def last_diagnostics(self) -> dict[str, str]:
        """The node's latest fusion status values ({} before the first)."""
        with self._lock:
            return dict(self._diags[-1]) if self._diags else {}


def tear_down(
    node_proc: subprocess.Popen, log: Any, executor: Any, spin: threading.Thread, node: Any, ctx: Any
) -> None:
    """Stop the node's process (SIGTERM, then kill after 20 s), then this side's executor, node and context.

    The spin thread is joined before the node and context go: a daemon thread still inside rclpy when the
    interpreter finalises made Fast DDS abort the process at exit (after the report was written).
    """
    import rclpy

    node_proc.terminate()
    try:
        node_proc.wait(20)
    except subprocess.TimeoutExpired:
        node_proc.kill()
    log.close()
    executor.shutdown(timeout_sec=5)
    spin.join(timeout=5)
    node.destroy_node()
    rclpy.try_shutdown(context=ctx)
