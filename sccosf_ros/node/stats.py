"""Counters, rates, percentiles and the pairing window behind the node's ``/diagnostics``, without ROS.

Thread-safe: subscription callbacks, the worker thread and the diagnostics timer all touch it. Windows are
bounded (the last ``window`` samples / events) so a week-long run has the same memory as a minute-long one.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np


class RateMeter:
    """Events per second over the last ``horizon`` seconds."""

    def __init__(self, horizon: float = 5.0, maxlen: int = 2048) -> None:
        self.horizon = horizon
        self._times: deque[float] = deque(maxlen=maxlen)

    def tick(self, now: float | None = None) -> None:
        self._times.append(time.monotonic() if now is None else now)

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        recent = [t for t in self._times if now - t <= self.horizon]
        if len(recent) < 2:
            return 0.0
        span = max(now - recent[0], 1e-9)
        return len(recent) / span


def percentiles(values: deque[float] | list[float], qs: tuple[float, ...] = (50.0, 95.0)) -> list[float]:
    """Percentiles of a window, NaN when empty."""
    if not values:
        return [float("nan")] * len(qs)
    return [float(v) for v in np.percentile(np.asarray(values, dtype=np.float64), qs)]


class NodeStats:
    """Everything the fusion node reports; see ``docs/node.md`` for the meaning of each key."""

    def __init__(self, window: int = 300) -> None:
        self._lock = threading.Lock()
        self.window = window
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.received: Counter[str] = Counter()
            self.rates = {
                "rgb": RateMeter(),
                "thermal": RateMeter(),
                "pairs": RateMeter(),
                "out": RateMeter(),
            }
            self.bad_inputs: Counter[str] = Counter()  # "stream/kind"
            self.warnings: Counter[str] = Counter()
            self.processed = 0
            self.samples: dict[str, deque[float]] = {
                k: deque(maxlen=self.window) for k in ("infer_ms", "latency_ms", "overhead_ms", "callback_ms")
            }

    def on_message(self, stream: str, callback_ms: float | None = None) -> None:
        with self._lock:
            self.received[stream] += 1
            self.rates[stream].tick()
            if callback_ms is not None:
                self.samples["callback_ms"].append(callback_ms)

    def on_pair(self) -> None:
        with self._lock:
            self.rates["pairs"].tick()

    def on_bad(self, stream: str, kind: str) -> int:
        """Count a bad input; returns how often this stream/kind has now been seen (1 = first: log it)."""
        with self._lock:
            key = f"{stream}/{kind}"
            self.bad_inputs[key] += 1
            return self.bad_inputs[key]

    def on_warning(self, kind: str) -> int:
        with self._lock:
            self.warnings[kind] += 1
            return self.warnings[kind]

    def on_output(self, infer_ms: float, overhead_ms: float, latency_ms: float) -> None:
        with self._lock:
            self.processed += 1
            self.rates["out"].tick()
            self.samples["infer_ms"].append(infer_ms)
            self.samples["overhead_ms"].append(overhead_ms)
            self.samples["latency_ms"].append(latency_ms)

    def snapshot(self) -> dict[str, float | int | str]:
        """Flat key -> value view for a DiagnosticStatus (and for tests)."""
        with self._lock:
            out: dict[str, float | int | str] = {
                "rgb_rate_hz": self.rates["rgb"].rate(),
                "thermal_rate_hz": self.rates["thermal"].rate(),
                "pair_rate_hz": self.rates["pairs"].rate(),
                "output_rate_hz": self.rates["out"].rate(),
                "rgb_received": self.received["rgb"],
                "thermal_received": self.received["thermal"],
                "pairs_processed": self.processed,
            }
            for key, window in self.samples.items():
                p50, p95 = percentiles(window)
                name = key.removesuffix("_ms")
                out[f"{name}_p50_ms"] = p50
                out[f"{name}_p95_ms"] = p95
            out["bad_inputs_total"] = sum(self.bad_inputs.values())
            for key, n in sorted(self.bad_inputs.items()):
                out[f"bad_input.{key}"] = n
            for key, n in sorted(self.warnings.items()):
                out[f"warning.{key}"] = n
            return out


@dataclass
class MatchProblem:
    """What :class:`MatchWindow` found wrong over its window: few pairs from two live inputs, or one input
    silent while the other arrives."""

    span_s: float
    matched: int = 0
    possible: int = 0
    silent: str | None = None
    """``rgb`` or ``thermal`` when that input sent nothing in the window; None for too few pairs."""


class MatchWindow:
    """Counts over the last ``window_s`` seconds that tell a user why no pairs come out, rate-limited.

    Why: pairing failures are invisible from outside (both topics show traffic in ``ros2 topic hz``), so the
    node warns when both inputs arrive but fewer than half the possible pairs match (clocks or stamps off,
    ``sync_slop`` too small), or when one input falls silent (remapping or QoS). Not thread-safe: the
    diagnostics timer owns it.
    """

    def __init__(self, window_s: float = 3.0, warn_every_s: float = 10.0) -> None:
        self.window_s = window_s
        self.warn_every_s = warn_every_s
        self._marks: list[tuple[float, int, int, int]] = []
        self._last_warn = -1e9

    def reset(self) -> None:
        self._marks = []

    def update(
        self, now: float, rgb_received: int, thermal_received: int, matched: int
    ) -> MatchProblem | None:
        """Record the counters at ``now`` (monotonic seconds); the problem over the window, or None."""
        self._marks.append((now, rgb_received, thermal_received, matched))
        self._marks = [m for m in self._marks if 0 <= now - m[0] <= self.window_s + 0.5]
        t_old, rgb_old, th_old, matched_old = self._marks[0]
        rgb_new, th_new = rgb_received - rgb_old, thermal_received - th_old
        possible = min(rgb_new, th_new)
        paired = matched - matched_old
        if possible >= 3 and paired < possible / 2:
            return MatchProblem(now - t_old, matched=paired, possible=possible)
        if now - t_old >= self.window_s and (rgb_new > 0) != (th_new > 0):
            return MatchProblem(now - t_old, silent="thermal" if rgb_new > 0 else "rgb")
        return None

    def warn_due(self, now: float) -> bool:
        """True at most once every ``warn_every_s`` seconds (a warning's log line, not its diagnostics)."""
        if now - self._last_warn < self.warn_every_s:
            return False
        self._last_warn = now
        return True
