"""ApproximateTimePairer and LatestSlot: message_filters semantics without ROS."""

from __future__ import annotations

import random
import threading
import time

import pytest

from sccosf_ros.pairing import ApproximateTimePairer, LatestSlot

MS = 1_000_000


def _camera_events(duration_s: float, seed: int, offset_ms: float = 20.0, jitter_ms: float = 3.0):
    """Arrival-ordered (stream, stamp_ns) for 30 Hz RGB and 9 Hz thermal with jitter and a constant offset."""
    rng = random.Random(seed)
    events = []
    for i in range(int(duration_s * 30)):
        stamp = round((i / 30) * 1e9 + rng.uniform(-jitter_ms, jitter_ms) * MS)
        events.append((stamp + 2 * MS, "rgb", stamp))  # arrives 2 ms after capture
    for i in range(int(duration_s * 9)):
        stamp = round((i / 9) * 1e9 + offset_ms * MS + rng.uniform(-jitter_ms, jitter_ms) * MS)
        events.append((stamp + 15 * MS, "thermal", stamp))  # thermal drivers deliver later
    events.sort()
    return [(s, st) for _, s, st in events]


def test_30hz_rgb_9hz_thermal_pairs_every_thermal_frame_with_nearest_rgb():
    pairer = ApproximateTimePairer(queue_size=10, slop=1 / 18)  # half the thermal period
    pairs = []
    arrived_rgb: list[int] = []
    matched_rgb: set[int] = set()
    for stream, stamp in _camera_events(5.0, seed=1):
        got = pairer.add(stream, stamp, (stream, stamp))
        if stream == "rgb":
            arrived_rgb.append(stamp)
        for p in got:
            assert p.rgb == ("rgb", p.rgb_stamp_ns) and p.thermal == ("thermal", p.thermal_stamp_ns)
            assert abs(p.skew_ns) < pairer.slop * 1e9
            if stream == "thermal":
                # greedy on arrival: the nearest RGB frame among those already queued and unmatched
                queued = [s for s in arrived_rgb[-10:] if s not in matched_rgb]
                nearest = min(queued, key=lambda s, t=p.thermal_stamp_ns: abs(s - t))
                assert p.rgb_stamp_ns == nearest
            matched_rgb.add(p.rgb_stamp_ns)
        pairs += got
    st = pairer.stats()
    assert st.received == {"rgb": 150, "thermal": 45}
    assert st.matched == len(pairs)
    assert len(pairs) >= 44  # every thermal frame but possibly the last, still waiting
    assert len({p.thermal_stamp_ns for p in pairs}) == len(pairs)
    assert len({p.rgb_stamp_ns for p in pairs}) == len(pairs)
    # unmatched RGB frames leave only by overflow: received = matched + dropped + pending
    assert st.received["rgb"] == st.matched + st.dropped["rgb"] + st.pending["rgb"]
    assert st.dropped["rgb"] > 90


def test_slop_is_strict_and_nearest_stamp_wins():
    pairer = ApproximateTimePairer(queue_size=10, slop=0.05)
    assert pairer.add("rgb", 0, "a") == []
    assert pairer.add("rgb", 40 * MS, "b") == []
    assert pairer.add("thermal", 100 * MS, "t0") == []  # 60 ms from b: outside slop
    assert pairer.add("thermal", 90 * MS, "t1") == []  # exactly 50 ms from b: not strictly inside
    (pair,) = pairer.add("thermal", 45 * MS, "t2")  # 5 ms from b, 45 ms from a: nearest wins
    assert (pair.rgb, pair.thermal, pair.skew_ns) == ("b", "t2", 5 * MS)
    (pair,) = pairer.add("rgb", 93 * MS, "c")  # t1 is 3 ms away, t0 7 ms
    assert pair.thermal == "t1" and pair.rgb == "c"
    assert pairer.stats().pending == {"rgb": 1, "thermal": 1}


def test_overflow_drops_oldest_and_counts_it():
    pairer = ApproximateTimePairer(queue_size=3, slop=0.01)
    for i in range(10):
        assert pairer.add("rgb", i * 100 * MS, i) == []
    st = pairer.stats()
    assert st.dropped == {"rgb": 7, "thermal": 0} and st.pending["rgb"] == 3
    assert pairer.add("thermal", 0, "late") == []  # its partner was dropped
    (pair,) = pairer.add("thermal", 900 * MS, "t")
    assert pair.rgb == 9
    assert st.unmatched == 7


def test_out_of_order_stamps_and_duplicates():
    pairer = ApproximateTimePairer(queue_size=2, slop=0.01)
    pairer.add("rgb", 300 * MS, "r3")
    pairer.add("rgb", 100 * MS, "r1")  # arrives late
    pairer.add("rgb", 200 * MS, "r2")  # overflow drops the oldest stamp (r1), not the first arrival
    assert pairer.stats().dropped["rgb"] == 1
    (pair,) = pairer.add("thermal", 200 * MS, "t")
    assert pair.rgb == "r2"
    pairer.add("rgb", 250 * MS, "r25")  # queue: 250, 300
    assert pairer.add("rgb", 50 * MS, "old") == []  # older than everything queued: overflows at once
    assert pairer.add("thermal", 50 * MS, "t05") == []
    pairer.add("rgb", 300 * MS, "r3bis")  # same stamp replaces
    st = pairer.stats()
    assert st.replaced["rgb"] == 1 and st.dropped["rgb"] == 2
    (pair,) = pairer.add("thermal", 300 * MS, "t3")
    assert pair.rgb == "r3bis"


def test_invalid_arguments():
    with pytest.raises(ValueError, match="queue_size"):
        ApproximateTimePairer(queue_size=0)
    with pytest.raises(ValueError, match="slop"):
        ApproximateTimePairer(slop=0)
    with pytest.raises(ValueError, match="stream"):
        ApproximateTimePairer().add("depth", 0, None)


def test_concurrent_adds_lose_nothing():
    pairer = ApproximateTimePairer(queue_size=1000, slop=0.001)
    out: list = []
    lock = threading.Lock()

    def feed(stream: str) -> None:
        for i in range(500):
            got = pairer.add(stream, i * 10 * MS, i)
            with lock:
                out.extend(got)

    threads = [threading.Thread(target=feed, args=(s,)) for s in ("rgb", "thermal")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(out) == 500 and all(p.rgb == p.thermal for p in out)


def test_latest_slot_keeps_newest_and_counts_drops():
    slot: LatestSlot[int] = LatestSlot()
    assert slot.take(timeout=0.01) is None
    assert slot.put(1) is False
    assert slot.put(2) is True
    assert slot.take(timeout=0.01) == 2 and slot.dropped == 1
    got: list = []
    t = threading.Thread(target=lambda: got.append(slot.take(timeout=5)))
    t.start()
    time.sleep(0.05)
    slot.put(3)
    t.join(5)
    assert got == [3]
    t = threading.Thread(target=lambda: got.append(slot.take(timeout=5)))
    t.start()
    time.sleep(0.05)
    slot.close()
    t.join(5)
    assert got == [3, None] and not t.is_alive()
    slot.reopen()
    slot.put(4)
    assert slot.clear() is True and slot.take(timeout=0.01) is None
