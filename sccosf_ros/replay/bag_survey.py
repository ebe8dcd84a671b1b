"""What the replay knows of a bag before it plays it: one streaming pass (bags can exceed memory)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sccosf_ros import bags
from sccosf_ros.pairing import ApproximateTimePairer
from sccosf_ros.replay.config import ReplayConfig


def stamp_of(data: bytes) -> int:
    """Header stamp (ns) of a CDR-serialised ``sensor_msgs/Image``."""
    return bags.stamp_to_ns(bags.TYPESTORE.deserialize_cdr(data, bags.IMAGE_TYPE).header.stamp)


def restamp(data: bytes, msgtype: str, stamp_ns: int) -> bytes:
    """The same serialised message with another header stamp."""
    msg = bags.TYPESTORE.deserialize_cdr(data, msgtype)
    sec, nsec = bags.ns_to_stamp(stamp_ns)
    msg.header.stamp = type(msg.header.stamp)(sec=sec, nanosec=nsec)
    return bytes(bags.TYPESTORE.serialize_cdr(msg, msgtype))


@dataclass
class BagScan:
    """The pairs to expect, warm-up material and message counts of a bag's two input topics.

    A looped bag (recorded from ``ros2 bag play --loop``, or bags concatenated) holds each RGB stamp once
    per pass: ``expected`` maps the stamp to its partner, ``expected_count`` says how many pairs carry it.
    """

    expected: dict[int, int]  # RGB stamp -> thermal stamp, as the node's policy pairs them in log order
    first: dict[str, bags.RawMessage]  # first message per input topic (warm-up material)
    t0_log: int
    counts: dict[str, int]
    thermal_stamps: list[int] = field(default_factory=list)
    expected_count: Counter[int] = field(default_factory=Counter)  # RGB stamp -> pairs with it (passes)
    resets: int = 0  # new pairing passes (stamps went back)

    @property
    def pairs_expected(self) -> int:
        """Pairs the node's policy forms from the bag, every pass counted."""
        return sum(self.expected_count.values())


def first_rgb_size(scan: BagScan, cfg: ReplayConfig) -> str:
    """'HxW' of the bag's first RGB image: the node prepares for it at activation (``warmup_size``)."""
    m = scan.first[cfg.rgb_topic]
    msg = bags.TYPESTORE.deserialize_cdr(m.data, m.msgtype)
    return f"{msg.height}x{msg.width}"


def check_bag(bag: Path, cfg: ReplayConfig) -> None:
    """Fail before starting anything when the bag lacks the input topics or holds other types."""
    topics = bags.bag_topics(bag)
    for t in (cfg.rgb_topic, cfg.thermal_topic):
        if t not in topics:
            raise bags.BagError(f"topic {t} not in bag {bag}; the bag holds: {', '.join(sorted(topics))}")
        if topics[t] != bags.IMAGE_TYPE:
            raise bags.BagError(f"replay plays sensor_msgs/Image; {t} is {topics[t]}")


def scan_bag(bag: Path, cfg: ReplayConfig) -> BagScan:
    """Pair the bag as the node would (its policy, queue and slop), remembering first messages and counts."""
    pairer = ApproximateTimePairer(cfg.queue_size, cfg.slop)
    scan = BagScan({}, {}, 0, {cfg.rgb_topic: 0, cfg.thermal_topic: 0})
    for m in bags.read_raw(bag, [cfg.rgb_topic, cfg.thermal_topic]):
        if not scan.first:
            scan.t0_log = m.log_time_ns
        scan.first.setdefault(m.topic, m)
        scan.counts[m.topic] += 1
        stamp = stamp_of(m.data)
        if m.topic == cfg.thermal_topic:
            scan.thermal_stamps.append(stamp)
        for p in pairer.add("rgb" if m.topic == cfg.rgb_topic else "thermal", stamp, stamp):
            scan.expected[p.rgb_stamp_ns] = p.thermal_stamp_ns
            scan.expected_count[p.rgb_stamp_ns] += 1
    scan.resets = pairer.stats().resets
    if not all(scan.counts.values()):
        raise bags.BagError(f"nothing to replay: message counts {scan.counts} in {bag}")
    return scan


@dataclass(frozen=True)
class OutputTally:
    """Outputs against the pairs expected, per stamp and pass: ``received - unexpected + dropped`` is the
    number of pairs expected."""

    received: int  # outputs carrying a stamp of the bag, repeats included
    unexpected: int  # outputs beyond the pairs expected with their stamp (none expected, or an extra pass)
    dropped: int  # expected pairs without an output

    @classmethod
    def count(cls, expected: Counter[int], got: Counter[int]) -> OutputTally:
        return cls(sum(got.values()), sum((got - expected).values()), sum((expected - got).values()))


@dataclass
class BagLabels:
    """The bag's label images by stamp (PNG bytes), or None with the reason."""

    by_stamp: dict[int, bytes] | None
    note: str | None


@dataclass
class ReplayJob:
    """One replay: the bag, where its results go, the settings, and what the scan and labels found."""

    bag: Path
    out: Path
    cfg: ReplayConfig
    scan: BagScan
    labels: BagLabels
