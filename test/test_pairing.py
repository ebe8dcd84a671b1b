"""ApproximateTimePairer and LatestSlot: message_filters semantics without ROS."""

from __future__ import annotations

import math
import random
import threading
import time

import pytest

from sccosf_ros.pairing import ApproximateTimePairer, LatestSlot

MS = 1_000_000
DEMO_T0 = 1_700_000_000 * 1_000_000_000


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


# ---- time going back: looped bags, restarted bags, reset simulation clocks ------------------------------


def _two_passes(events: list[tuple[str, int]], overlap: int = 0) -> list[tuple[int, str, int]]:
    """The same (stream, stamp) events played twice, as ``ros2 bag play --loop`` does: (pass, stream, stamp).

    ``overlap`` delivers the first pass's last thermal item after that many RGB items of the second pass, as
    when the RGB stream loops while a thermal message of the old pass is still in flight.
    """
    first = [(1, s, t) for s, t in events]
    second = [(2, s, t) for s, t in events]
    if overlap:
        late = first.pop(max(i for i, e in enumerate(first) if e[1] == "thermal"))
        at = [i for i, e in enumerate(second) if e[1] == "rgb"][overlap - 1] + 1
        assert all(e[1] == "rgb" for e in second[:at]), "each stream stays in order"
        second.insert(at, late)
    return first + second


def _pair_all(pairer: ApproximateTimePairer, arrivals: list[tuple[int, str, int]]) -> dict[int, list]:
    """Feed ``arrivals``; return the pairs by pass, checking no pair mixes passes."""
    by_pass: dict[int, list] = {1: [], 2: []}
    for n, stream, stamp in arrivals:
        for p in pairer.add(stream, stamp, (n, stamp)):
            assert p.rgb[0] == p.thermal[0], f"pair across passes: {p}"
            by_pass[p.rgb[0]].append((p.rgb_stamp_ns, p.thermal_stamp_ns))
    return by_pass


@pytest.mark.parametrize("overlap", [0, 1])
def test_looped_camera_streams_pair_on_both_passes(overlap):
    events = _camera_events(3.0, seed=2)
    single = ApproximateTimePairer(queue_size=10, slop=1 / 18)
    expected = [(p.rgb_stamp_ns, p.thermal_stamp_ns) for s, t in events for p in single.add(s, t, t)]
    assert len(expected) == 27
    resets = []
    pairer = ApproximateTimePairer(queue_size=10, slop=1 / 18, on_reset=resets.append)
    got = _pair_all(pairer, _two_passes(events, overlap))
    assert got[1] == expected and got[2] == expected  # every pair, on both passes
    assert pairer.stats().resets == 1 and len(resets) == 1
    event = resets[0]
    assert event.count == 1 and event.stream == "rgb" and event.previous_ns > event.stamp_ns
    assert "went back 2.9" in event.message and "\n" not in event.message
    if (
        overlap == 0
    ):  # without the reset, the second pass stalls as message_filters does (the figures)
        off = ApproximateTimePairer(queue_size=10, slop=1 / 18, jump_threshold=math.inf)
        stalled = _pair_all(off, _two_passes(events))
        assert (len(stalled[1]), len(stalled[2])) == (27, 4)


def test_two_hz_pairs_with_extra_rgb_frames_between_on_two_passes():
    """The issue's pattern: pairs at 2 Hz, two extra RGB frames between pairs, the same stamps twice."""
    events = []
    for k in range(20):
        t = DEMO_T0 + k * 500 * MS
        events += [("rgb", t), ("thermal", t + 2 * MS), ("rgb", t + 167 * MS), ("rgb", t + 333 * MS)]
    for overlap in (0, 1):
        pairer = ApproximateTimePairer(queue_size=10, slop=0.06)
        got = _pair_all(pairer, _two_passes(events, overlap))
        expected = [(DEMO_T0 + k * 500 * MS, DEMO_T0 + k * 500 * MS + 2 * MS) for k in range(20)]
        assert got[1] == expected and got[2] == expected
        st = pairer.stats()
        assert st.resets == 1 and st.matched == 40
        assert st.received == {"rgb": 120, "thermal": 40}


def test_thermal_looping_first_is_symmetric():
    events = [(s, t) for k in range(30) for s, t in (("thermal", k * 100 * MS + MS), ("rgb", k * 100 * MS))]
    pairer = ApproximateTimePairer(queue_size=5, slop=0.01)
    got = _pair_all(pairer, _two_passes(events))
    assert len(got[1]) == 30 and got[2] == got[1]
    assert pairer.stats().resets == 1


def test_backward_jitter_below_threshold_does_not_reset():
    pairer = ApproximateTimePairer(queue_size=10, slop=0.01, jump_threshold=1.0)
    stamps = [0, 400, 200, 900, 100, 1500, 600, 2000]  # out of order by up to 0.9 s
    for t in stamps:
        pairer.add("rgb", t * MS, t)
    pairs = [p for t in stamps for p in pairer.add("thermal", t * MS, t)]
    assert sorted(p.rgb for p in pairs) == sorted(stamps)
    assert pairer.stats().resets == 0


def test_one_bad_stamp_does_not_stop_pairing():
    """A single stamp far in the past (a driver glitch): one reset, and pairing carries on after it."""
    pairer = ApproximateTimePairer(queue_size=10, slop=0.01)
    pairs = []
    for k in range(40):
        t = (100 + k) * 100 * MS
        pairs += pairer.add("rgb", 0 if k == 20 else t, k)  # frame 20 carries a bogus stamp
        pairs += pairer.add("thermal", t, k)
    assert pairer.stats().resets == 1
    assert all(p.rgb == p.thermal for p in pairs)
    assert len(pairs) >= 38  # all but the glitched frame and at most one neighbour


def test_explicit_reset_logs_and_keeps_pairing():
    seen = []
    pairer = ApproximateTimePairer(queue_size=10, slop=0.01, on_reset=seen.append)
    pairer.add("thermal", 4900 * MS, "older-t")
    pairer.add("rgb", 5000 * MS, "old-r")
    event = pairer.reset("ROS time jumped back 5.0 s")
    assert seen == [event] and event.count == 1 and event.stream is None
    assert event.pending == {"rgb": 1, "thermal": 1}
    assert (
        event.message == "pairing reset #1: ROS time jumped back 5.0 s; 2 queued item(s) of the previous pass"
    )
    # an in-flight thermal item of the old pass still finds its partner ...
    (pair,) = pairer.add("thermal", 5000 * MS, "old-t")
    assert (pair.rgb, pair.thermal) == ("old-r", "old-t")
    # ... and once the stamps go back, the new pass pairs; nothing of the old pass is kept
    pairer.add("rgb", 5010 * MS, "old-r2")
    assert pairer.add("rgb", 0, "new-r") == []
    assert pairer.add("thermal", 5010 * MS, "old-t2")  # old with old
    (pair,) = pairer.add("thermal", 0, "new-t")
    assert (pair.rgb, pair.thermal) == ("new-r", "new-t")
    st = pairer.stats()
    assert st.resets == 1 and st.matched == 3 and st.pending == {"rgb": 0, "thermal": 0}


def test_old_pass_items_never_pair_with_new_ones():
    """Random thermal latency at the loop point (each stream in order, as one publisher delivers it): no pair
    mixes passes, and both passes pair in full."""
    rng = random.Random(7)
    for _ in range(50):
        arrivals = []
        for stream, latency_ms in (("rgb", 0.0), ("thermal", rng.uniform(0, 400))):
            last = 0.0
            for n in (1, 2):
                for k in range(30):
                    stamp = k * 50 * MS
                    last = max(last, (n - 1) * 1600 * MS + stamp + (latency_ms + rng.uniform(0, 30)) * MS)
                    arrivals.append((last, n, stream, stamp))
        arrivals.sort()
        pairer = ApproximateTimePairer(queue_size=10, slop=0.02, jump_threshold=0.5)
        got = _pair_all(pairer, [(n, s, t) for _, n, s, t in arrivals])
        assert len(got[1]) == 30 and len(got[2]) == 30
        assert all(r == t for r, t in got[1] + got[2])
        st = pairer.stats()
        assert st.resets == 1 and st.pending == {"rgb": 0, "thermal": 0}


def test_jump_threshold_validated_and_can_be_turned_off():
    with pytest.raises(ValueError, match="jump_threshold"):
        ApproximateTimePairer(jump_threshold=0)
    pairer = ApproximateTimePairer(queue_size=2, slop=0.01, jump_threshold=math.inf)
    for t in (5000, 5100, 0):
        pairer.add("rgb", t * MS, t)
    assert pairer.stats().resets == 0 and pairer.stats().dropped["rgb"] == 1
