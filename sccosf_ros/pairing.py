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

Time going back (``ros2 bag play --loop``, a restarted bag, a reset simulation clock) stalls message_filters:
its queues hold the newest stamps, so every item of the new pass is the oldest and is evicted before it can
match (ros2/message_filters issues 108 and 169). Here each stream tracks its newest stamp; one that goes
back by more than ``jump_threshold`` starts a new *pass* (a reset). The other stream joins the new pass with
its own first stamp that goes back (or that lies within ``jump_threshold`` of the new pass, if its clock did
not jump); until then its items are still from the old pass and pair only with old-pass items, so the last
pair of a pass survives when the streams cross the loop point at different moments, and an old item never
pairs with a new one. ``reset(reason)`` starts a new pass on request (the node calls it from rclpy's time-jump
callbacks); each reset calls ``on_reset`` with a :class:`PairingReset` the caller can log.

``LatestSlot`` is the hand-off between the pairing callback and a slower worker: it keeps only the newest
item, so latency stays bounded when inference is slower than the cameras, and counts what it replaced.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

STREAMS: tuple[str, str] = ("rgb", "thermal")
DEFAULT_JUMP_THRESHOLD_S = 1.0
"""A stamp this much older than its stream's newest starts a new pass: well above any camera's reordering
or the slop, well below a bag's length (the node's ``sync_jump_threshold`` default)."""

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
class PairingReset:
    """One start of a new pass: what triggered it, for the caller's log line (``message``)."""

    count: int  # resets so far, this one included
    reason: str
    stream: str | None  # the stream whose stamp went back; None for an explicit ``reset``
    stamp_ns: int | None  # that stamp
    previous_ns: int | None  # the stream's newest stamp before it
    pending: dict[str, int]  # items of the old pass still waiting (they may pair with each other)

    @property
    def message(self) -> str:
        """One line for a log."""
        waiting = sum(self.pending.values())
        return f"pairing reset #{self.count}: {self.reason}; {waiting} queued item(s) of the previous pass"


@dataclass(frozen=True)
class PairerStats:
    """Counters since construction."""

    received: dict[str, int]
    matched: int
    dropped: dict[str, int]  # left a queue by overflow without a partner
    replaced: dict[str, int]  # replaced by a later item with the same stamp
    pending: dict[str, int]  # currently waiting in a queue
    flushed: dict[str, int]  # discarded unmatched when both streams had moved on to a new pass
    resets: int  # new passes started (stamps going back, or ``reset`` calls)

    @property
    def unmatched(self) -> int:
        """All items that left without a partner (overflow, duplicate stamps, passes ended)."""
        return sum(self.dropped.values()) + sum(self.replaced.values()) + sum(self.flushed.values())


class ApproximateTimePairer:
    """Pairs two timestamped streams with message_filters' approximate-time policy (see module docstring).

    ``jump_threshold`` (seconds, > 0; ``math.inf`` turns detection off): a stamp older than its stream's
    newest by more than this starts a new pass. ``on_reset`` is called (outside the lock) once per reset.
    Thread-safe: ``add`` may be called from several callback threads at once.
    """

    def __init__(
        self,
        queue_size: int = 10,
        slop: float = 0.05,
        jump_threshold: float = DEFAULT_JUMP_THRESHOLD_S,
        on_reset: Callable[[PairingReset], None] | None = None,
    ) -> None:
        if int(queue_size) < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if not slop > 0:
            raise ValueError(f"slop must be > 0 seconds, got {slop}")
        if not jump_threshold > 0:
            raise ValueError(f"jump_threshold must be > 0 seconds (inf: off), got {jump_threshold}")
        self.queue_size = int(queue_size)
        self.slop = float(slop)
        self.jump_threshold = float(jump_threshold)
        self.on_reset = on_reset
        self._slop_ns = round(self.slop * 1e9)
        self._jump_ns = math.inf if math.isinf(self.jump_threshold) else round(self.jump_threshold * 1e9)
        self._lock = threading.Lock()
        # queues by stream, then by pass; only the passes a stream is in are kept
        self._queues: dict[str, dict[int, dict[int, Any]]] = {s: {0: {}} for s in STREAMS}
        self._pass = 0  # the newest pass
        self._at = dict.fromkeys(STREAMS, 0)  # the pass each stream is in
        self._newest: dict[str, int | None] = dict.fromkeys(STREAMS)  # newest stamp in the stream's pass
        self._received = dict.fromkeys(STREAMS, 0)
        self._dropped = dict.fromkeys(STREAMS, 0)
        self._replaced = dict.fromkeys(STREAMS, 0)
        self._flushed = dict.fromkeys(STREAMS, 0)
        self._matched = 0
        self._resets = 0

    def reset(self, reason: str = "reset requested") -> PairingReset:
        """Start a new pass now (time went back, e.g. a ROS time jump); return the event ``on_reset`` gets.

        Each stream enters the new pass with its first stamp that goes back by more than ``jump_threshold``
        (or at once, if it has no stamp yet); items still in flight from before pair only among themselves.
        If the stamps do not go back, the streams stay in their pass and pairing carries on undisturbed.
        """
        with self._lock:
            self._pass += 1
            for s in STREAMS:
                if self._newest[s] is None:
                    self._enter(s, None)
            event = self._event(reason, None, None, None)
        self._notify(event)
        return event

    def add(self, stream: str, stamp_ns: int, item: Any) -> list[Pair]:
        """Queue ``item`` stamped ``stamp_ns`` on ``stream`` ("rgb" or "thermal"); return the pairs formed.

        With two streams at most one pair forms per arrival; a list keeps the call signature uniform.
        """
        if stream not in self._queues:
            raise ValueError(f"stream must be one of {STREAMS}, got {stream!r}")
        stamp_ns = int(stamp_ns)
        other = STREAMS[1] if stream == STREAMS[0] else STREAMS[0]
        with self._lock:
            self._received[stream] += 1
            event = self._follow(stream, other, stamp_ns)
            pairs = self._match(stream, other, stamp_ns, item)
        self._notify(event)
        return pairs

    def _follow(self, stream: str, other: str, stamp_ns: int) -> PairingReset | None:
        """Move ``stream`` into a new pass when ``stamp_ns`` says time went back; the reset, if one began."""
        newest = self._newest[stream]
        went_back = newest is not None and newest - stamp_ns > self._jump_ns
        if self._at[stream] < self._pass:  # another stream (or ``reset``) began a pass this one has not
            their_newest = self._newest[other] if self._at[other] == self._pass else None
            near_theirs = their_newest is not None and abs(stamp_ns - their_newest) <= self._jump_ns
            if went_back or near_theirs:
                self._enter(stream, stamp_ns)
            else:
                self._newest[stream] = stamp_ns if newest is None else max(newest, stamp_ns)
            return None
        if not went_back:
            self._newest[stream] = stamp_ns if newest is None else max(newest, stamp_ns)
            return None
        self._pass += 1
        self._enter(stream, stamp_ns)
        if self._newest[other] is None:  # nothing of the other stream to wait for
            self._enter(other, None)
        back = (newest - stamp_ns) / 1e9
        return self._event(f"{stream} stamp went back {back:.3f} s", stream, stamp_ns, newest)

    def _enter(self, stream: str, stamp_ns: int | None) -> None:
        """Put ``stream`` in the newest pass and discard the queues of passes no stream is in any more."""
        self._at[stream] = self._pass
        self._newest[stream] = stamp_ns
        live = set(self._at.values())
        for s, by_pass in self._queues.items():
            for p in [p for p in by_pass if p not in live]:
                self._flushed[s] += len(by_pass.pop(p))
        self._queues[stream].setdefault(self._pass, {})

    def _event(
        self, reason: str, stream: str | None, stamp: int | None, previous: int | None
    ) -> PairingReset:
        self._resets += 1
        old = {
            s: sum(len(q) for p, q in by_pass.items() if p < self._pass)
            for s, by_pass in self._queues.items()
        }
        return PairingReset(self._resets, reason, stream, stamp, previous, old)

    def _notify(self, event: PairingReset | None) -> None:
        callback = self.on_reset
        if event is not None and callback is not None:
            callback(event)

    def _match(self, stream: str, other: str, stamp_ns: int, item: Any) -> list[Pair]:
        """message_filters' policy within the stream's pass (the caller holds the lock)."""
        current = self._at[stream]
        mine = self._queues[stream][current]
        theirs = self._queues[other].get(current, {})  # empty while the other stream is in an older pass
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
                pending={s: sum(len(q) for q in by_pass.values()) for s, by_pass in self._queues.items()},
                flushed=dict(self._flushed),
                resets=self._resets,
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
