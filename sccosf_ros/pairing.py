"""Time pairing of two image streams, without ROS.

``ApproximateTimePairer`` reproduces the policy of ``message_filters.ApproximateTimeSynchronizer`` (Python,
ROS 2) for two streams so that the node behaves the same whether or not message_filters is installed, and so
that the offline evaluator can pair bag messages exactly as the live node would:

* each stream keeps a queue of at most ``queue_size`` items keyed by stamp (a repeated stamp replaces the
  earlier item);
* on every arrival the other queue is searched for the stamp nearest to the new one; if it is strictly closer
  than ``slop`` the two items form a pair and both leave their queues;
* unmatched items leave only when their queue overflows (the oldest stamp goes first).

Unlike message_filters it calls nothing back: ``add`` returns the pairs it formed and the caller decides what
to do with them (the node must not run inference under the pairer's lock). It also counts what it drops,
because a synchroniser that silently stops matching is the most common camera-fusion failure in the field.

``LatestSlot`` is the hand-off between the pairing callback and a slower worker: it keeps only the newest
item, so latency stays bounded when inference is slower than the cameras, and counts what it replaced.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

STREAMS: tuple[str, str] = ("rgb", "thermal")

T = TypeVar("T")


@dataclass(frozen=True)
class Pair:
    """One matched RGB/thermal pair; ``items`` are whatever the caller passed to ``add``."""

    rgb_stamp_ns: int
    thermal_stamp_ns: int
    rgb: Any
    thermal: Any

    @property
    def skew_ns(self) -> int:
        """Thermal stamp minus RGB stamp."""
        return self.thermal_stamp_ns - self.rgb_stamp_ns


@dataclass(frozen=True)
class PairerStats:
    """Counters since construction (or the last ``reset``)."""

    received: dict[str, int]
    matched: int
    dropped: dict[str, int]  # left a queue by overflow without a partner
    replaced: dict[str, int]  # replaced by a later item with the same stamp
    pending: dict[str, int]  # currently waiting in a queue

    @property
    def unmatched(self) -> int:
        """All items that left without a partner (overflow plus duplicate stamps)."""
        return sum(self.dropped.values()) + sum(self.replaced.values())


class ApproximateTimePairer:
    """Pairs two timestamped streams with message_filters' approximate-time policy (see module docstring).

    Thread-safe: ``add`` may be called from several callback threads at once.
    """

    def __init__(self, queue_size: int = 10, slop: float = 0.05) -> None:
        if int(queue_size) < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if not slop > 0:
            raise ValueError(f"slop must be > 0 seconds, got {slop}")
        self.queue_size = int(queue_size)
        self.slop = float(slop)
        self._slop_ns = round(self.slop * 1e9)
        self._lock = threading.Lock()
        self._queues: dict[str, dict[int, Any]] = {s: {} for s in STREAMS}
        self.reset()

    def reset(self) -> None:
        """Forget queued items and zero the counters."""
        with self._lock:
            for q in self._queues.values():
                q.clear()
            self._received = dict.fromkeys(STREAMS, 0)
            self._dropped = dict.fromkeys(STREAMS, 0)
            self._replaced = dict.fromkeys(STREAMS, 0)
            self._matched = 0

    def add(self, stream: str, stamp_ns: int, item: Any) -> list[Pair]:
        """Queue ``item`` stamped ``stamp_ns`` on ``stream`` ("rgb" or "thermal"); return the pairs formed.

        With two streams at most one pair forms per arrival; a list keeps the call signature uniform.
        """
        if stream not in self._queues:
            raise ValueError(f"stream must be one of {STREAMS}, got {stream!r}")
        stamp_ns = int(stamp_ns)
        other = STREAMS[1] if stream == STREAMS[0] else STREAMS[0]
        with self._lock:
            mine, theirs = self._queues[stream], self._queues[other]
            self._received[stream] += 1
            if stamp_ns in mine:
                self._replaced[stream] += 1
            mine[stamp_ns] = item
            while len(mine) > self.queue_size:
                del mine[min(mine)]
                self._dropped[stream] += 1
            if stamp_ns not in mine:  # the new item was itself the oldest and overflowed
                return []
            best: int | None = None
            best_delta = 0
            for s in theirs:  # insertion order breaks ties, as in message_filters
                delta = abs(s - stamp_ns)
                if delta < self._slop_ns and (best is None or delta < best_delta):
                    best, best_delta = s, delta
            if best is None:
                return []
            mine_item = mine.pop(stamp_ns)
            their_item = theirs.pop(best)
            self._matched += 1
        if stream == "rgb":
            return [Pair(stamp_ns, best, mine_item, their_item)]
        return [Pair(best, stamp_ns, their_item, mine_item)]

    def stats(self) -> PairerStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return PairerStats(
                received=dict(self._received),
                matched=self._matched,
                dropped=dict(self._dropped),
                replaced=dict(self._replaced),
                pending={s: len(q) for s, q in self._queues.items()},
            )


class LatestSlot(Generic[T]):
    """A one-item mailbox: ``put`` replaces whatever is waiting (counted in ``dropped``), ``take`` waits.

    Between a fast producer (camera pairs) and a slow consumer (inference) this keeps the newest pair only, so
    the output is never older than one inference period plus one pair interval.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._full = False
        self._closed = False
        self.put_count = 0
        self.dropped = 0

    def put(self, item: T) -> bool:
        """Store ``item``; return True when it replaced an item nobody took (that one is dropped)."""
        with self._cond:
            replaced = self._full
            if replaced:
                self.dropped += 1
            self._item, self._full = item, True
            self.put_count += 1
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None) -> T | None:
        """Return the newest item, waiting up to ``timeout`` seconds; None on timeout or after ``close``."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._full or self._closed, timeout):
                return None
            if not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            return item

    def clear(self) -> bool:
        """Discard a waiting item without counting it; return whether there was one."""
        with self._cond:
            had, self._item, self._full = self._full, None, False
            return had

    def close(self) -> None:
        """Wake every waiting ``take`` (they return None) and refuse to block from now on."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        """Allow blocking again after ``close`` (used across lifecycle deactivate/activate)."""
        with self._cond:
            self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed
