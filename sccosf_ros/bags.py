"""rosbag2 images in and out without a ROS install, built on ``rosbags``.

Why ``rosbags``: rosbag2_py has no wheel, yet evaluation, demos and tests need to read and write the bags that
``ros2 bag record`` / ``ros2 bag play`` and Foxglove use. MCAP (the rosbag2 default since Iron) is written by
default; sqlite3 bags are written on request and both are read. Messages are (de)serialised with the Jazzy
typestore so that type hashes match what a Jazzy ``ros2 bag play`` expects.

Pixels go through :mod:`sccosf_ros.imaging.encodings`, the same converter the node uses, so a bag round trip
is pixel-identical for every encoding in ``SUPPORTED_ENCODINGS``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from rosbags.rosbag2 import Reader, StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_typestore

from sccosf_ros import bag_recovery, topics
from sccosf_ros.errors import BagError
from sccosf_ros.imaging.encodings import (
    ImageConversionError,
    ImageFields,
    decode_compressed,
    image_to_numpy,
    numpy_to_image_fields,
)

TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}

FRAME_NAMES_KEY = "sccosf.frame_names"
"""``custom_data`` key of a folder bag: JSON ``{stamp_ns: file stem}`` (boxes find their frame by it)."""
RGB_FRAME = "rgb_camera_optical_frame"
THERMAL_FRAME = "thermal_camera_optical_frame"

_Image = TYPESTORE.types[IMAGE_TYPE]
_Header = TYPESTORE.types["std_msgs/msg/Header"]
_Time = TYPESTORE.types["builtin_interfaces/msg/Time"]


def stamp_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` (rosbags or rclpy) to integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> tuple[int, int]:
    """Integer nanoseconds to ``(sec, nanosec)`` (floor division, so negative times stay valid)."""
    sec, nsec = divmod(int(ns), 1_000_000_000)
    return sec, nsec


@dataclass
class BagImage:
    """One decoded image message: ``stamp_ns`` from its header, ``log_time_ns`` when the recorder got it."""

    topic: str
    stamp_ns: int
    log_time_ns: int
    frame_id: str
    encoding: str
    array: np.ndarray


@dataclass
class RawMessage:
    """One serialised message as stored; lets tools copy inputs into an output bag without re-encoding."""

    topic: str
    msgtype: str
    log_time_ns: int
    data: bytes


def _open_reader(path: str | Path) -> Reader | bag_recovery.RecoveredBag:
    """Open a bag directory (or the directory of a ``.mcap``/``.db3`` file inside one) with a clear error.

    A bag that ``rosbags`` cannot open (an MCAP file without footer, no ``metadata.yaml``: a recording cut
    off mid-write) is read without its index by :mod:`sccosf_ros.bag_recovery`, which logs what it read.
    """
    p = Path(path)
    if p.is_file() and (p.parent / "metadata.yaml").exists():
        p = p.parent
    if not p.exists():
        raise BagError(f"bag not found: {p}")
    try:
        bag_recovery.check_complete(p)  # a cut sqlite file would read as zeros where pages are missing
        reader = Reader(p)
        reader.open()
    except Exception as exc:  # rosbags and its sqlite driver raise several kinds
        try:
            return bag_recovery.open_unindexed(p)
        except bag_recovery.RecoveryError as why:
            raise BagError(f"cannot open bag {p}: {exc}; reading it without its index: {why}") from exc
    return reader


def _describe_topics(reader: Reader) -> str:
    items = sorted(reader.topics.items())
    if not items:
        return "the bag holds no topics"
    listing = ", ".join(f"{name} [{info.msgtype}, {info.msgcount} msgs]" for name, info in items)
    return f"the bag holds: {listing}"


def _connections(reader: Reader, topics: Sequence[str], allowed_types: Sequence[str] | None = None) -> list:
    missing = [t for t in topics if t not in reader.topics]
    if missing:
        raise BagError(f"topic(s) {', '.join(missing)} not in bag {reader.path}; {_describe_topics(reader)}")
    if allowed_types is not None:
        for t in topics:
            msgtype = reader.topics[t].msgtype
            if msgtype not in allowed_types:
                raise BagError(f"topic {t} in {reader.path} has type {msgtype}, expected {allowed_types}")
    return [c for c in reader.connections if c.topic in set(topics)]


def bag_topics(path: str | Path) -> dict[str, str]:
    """``{topic: msgtype}`` of a bag."""
    reader = _open_reader(path)
    try:
        return {name: info.msgtype for name, info in reader.topics.items()}
    finally:
        reader.close()


def decode_image(msg: Any, msgtype: str, topic: str = "?") -> tuple[np.ndarray, str]:
    """Array and encoding of a deserialised Image or CompressedImage; unsupported encodings raise BagError."""
    try:
        if msgtype == COMPRESSED_TYPE:
            return decode_compressed(msg.format, msg.data)
        array = image_to_numpy(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, msg.data)
        return array, msg.encoding
    except ImageConversionError as exc:
        raise BagError(f"cannot decode image on {topic}: {exc}") from exc


def read_images(
    path: str | Path, topics: Sequence[str], start_ns: int | None = None, stop_ns: int | None = None
) -> Iterator[BagImage]:
    """Yield decoded images of ``topics`` in recording (log-time) order.

    Every topic must exist (a missing one raises :class:`BagError` listing what the bag holds) and be an
    Image or CompressedImage. Arrays are read-only views of the stored buffer; copy before writing into them.
    """
    reader = _open_reader(path)
    try:
        conns = _connections(reader, topics, IMAGE_TYPES)
        for conn, log_time, raw in reader.messages(connections=conns, start=start_ns, stop=stop_ns):
            msg = TYPESTORE.deserialize_cdr(raw, conn.msgtype)
            array, encoding = decode_image(msg, conn.msgtype, conn.topic)
            yield BagImage(
                topic=conn.topic,
                stamp_ns=stamp_to_ns(msg.header.stamp),
                log_time_ns=int(log_time),
                frame_id=str(msg.header.frame_id),
                encoding=encoding,
                array=array,
            )
    finally:
        reader.close()


def read_raw(path: str | Path, topics: Sequence[str] | None = None) -> Iterator[RawMessage]:
    """Yield serialised messages (all topics, or ``topics``, which must exist) in log-time order."""
    reader = _open_reader(path)
    try:
        conns = reader.connections if topics is None else _connections(reader, topics)
        for conn, log_time, raw in reader.messages(connections=conns):
            yield RawMessage(conn.topic, conn.msgtype, int(log_time), bytes(raw))
    finally:
        reader.close()


def make_image_message(array: np.ndarray, encoding: str, stamp_ns: int, frame_id: str = "") -> Any:
    """A rosbags ``sensor_msgs/Image`` for ``array`` (validated by the shared encoder)."""
    try:
        f = numpy_to_image_fields(array, encoding)
    except ImageConversionError as exc:
        raise BagError(f"cannot encode image as {encoding}: {exc}") from exc
    return message_from_fields(f, stamp_ns, frame_id)


def message_from_fields(f: ImageFields, stamp_ns: int, frame_id: str = "") -> Any:
    """A rosbags ``sensor_msgs/Image`` from encoded fields (e.g. the node's ``PairProcessor`` output)."""
    sec, nsec = ns_to_stamp(stamp_ns)
    return _Image(
        header=_Header(stamp=_Time(sec=sec, nanosec=nsec), frame_id=frame_id),
        height=f.height,
        width=f.width,
        encoding=f.encoding,
        is_bigendian=f.is_bigendian,
        step=f.step,
        data=np.frombuffer(f.data, dtype=np.uint8),
    )


def serialize_image(array: np.ndarray, encoding: str, stamp_ns: int, frame_id: str = "") -> bytes:
    """CDR bytes of an Image, the wire format of both rosbag2 and rclpy's ``serialize_message``."""
    return bytes(TYPESTORE.serialize_cdr(make_image_message(array, encoding, stamp_ns, frame_id), IMAGE_TYPE))


class BagWriter:
    """Append-only rosbag2 writer with one connection per topic, created on first use.

    ``log_time_ns`` defaults to the header stamp, which is what ``ros2 bag record`` would log for a camera
    publishing in real time. Messages need not arrive in time order; readers sort by log time.
    """

    def __init__(self, path: str | Path, storage: str = "mcap") -> None:
        if storage not in STORAGES:
            raise BagError(f"unknown storage {storage!r}; choose one of {sorted(STORAGES)}")
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"output bag {self.path} already exists; remove it or choose another path")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = Writer(self.path, version=9, storage_plugin=STORAGES[storage])
        self._conns: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        try:
            self._writer.open()
        except WriterError as exc:
            raise BagError(f"cannot create bag {self.path}: {exc}") from exc

    def _conn(self, topic: str, msgtype: str) -> Any:
        conn = self._conns.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, msgtype, typestore=TYPESTORE)
            self._conns[topic] = conn
        elif conn.msgtype != msgtype:
            raise BagError(f"topic {topic} already written with type {conn.msgtype}, not {msgtype}")
        return conn

    def write_raw(self, topic: str, msgtype: str, log_time_ns: int, data: bytes | memoryview) -> None:
        """Store an already serialised (CDR) message."""
        self._writer.write(self._conn(topic, msgtype), int(log_time_ns), data)
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def write_image(
        self,
        topic: str,
        array: np.ndarray,
        encoding: str,
        stamp_ns: int,
        frame_id: str = "",
        log_time_ns: int | None = None,
    ) -> None:
        """Encode and store one image."""
        data = serialize_image(array, encoding, stamp_ns, frame_id)
        self.write_raw(topic, IMAGE_TYPE, stamp_ns if log_time_ns is None else log_time_ns, data)

    def set_custom_data(self, key: str, value: str) -> None:
        """A ``metadata.yaml`` ``custom_data`` entry (rosbag2's place for a bag's own annotations)."""
        self._writer.set_custom_data(key, value)

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@dataclass
class TopicInfo:
    """What ``bag_info`` reports per topic; rates come from header stamps where the type has one."""

    name: str
    msgtype: str
    count: int
    rate_hz: float | None = None
    encodings: list[str] = field(default_factory=list)
    sizes: list[str] = field(default_factory=list)
    frame_ids: list[str] = field(default_factory=list)
    stamp_span_s: float | None = None


@dataclass
class BagInfo:
    path: str
    storage: str
    message_count: int
    start_ns: int
    end_ns: int
    topics: list[TopicInfo]

    @property
    def duration_s(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e9

    def topic(self, name: str) -> TopicInfo:
        for t in self.topics:
            if t.name == name:
                return t
        raise BagError(f"topic {name} not in bag {self.path}; it holds {[t.name for t in self.topics]}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "storage": self.storage,
            "message_count": self.message_count,
            "duration_s": self.duration_s,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "topics": [vars(t) for t in self.topics],
        }

    def format(self) -> str:
        """Human-readable summary in the spirit of ``ros2 bag info``."""
        lines = [
            f"Bag:       {self.path}",
            f"Storage:   {self.storage}",
            f"Duration:  {self.duration_s:.3f} s",
            f"Messages:  {self.message_count}",
            "Topics:",
        ]
        for t in self.topics:
            rate = f"{t.rate_hz:.2f} Hz" if t.rate_hz is not None else "-"
            extra = ""
            if t.encodings:
                extra = f"  encodings={','.join(t.encodings)} size={','.join(t.sizes)}"
                extra += f" frame_id={','.join(repr(f) for f in t.frame_ids)}"
            lines.append(f"  {t.name}  [{t.msgtype}]  count={t.count}  rate={rate}{extra}")
        return "\n".join(lines)


def _rate(stamps: Iterable[int]) -> tuple[float | None, float | None]:
    s = sorted(stamps)
    if len(s) < 2 or s[-1] == s[0]:
        return None, None
    span = (s[-1] - s[0]) / 1e9
    return (len(s) - 1) / span, span


def bag_info(path: str | Path) -> BagInfo:
    """Topics, types, counts, rates (from header stamps, else log times), encodings and duration.

    Image topics are deserialised in full (cheap next to reading their bytes) so encodings, sizes and frame
    ids reflect every message, not a sample.
    """
    reader = _open_reader(path)
    try:
        stamps: dict[str, list[int]] = {t: [] for t in reader.topics}
        encs: dict[str, set[str]] = {t: set() for t in reader.topics}
        sizes: dict[str, set[str]] = {t: set() for t in reader.topics}
        frames: dict[str, set[str]] = {t: set() for t in reader.topics}
        start = end = None
        count = 0
        for conn, log_time, raw in reader.messages():
            count += 1
            start = log_time if start is None else min(start, log_time)
            end = log_time if end is None else max(end, log_time)
            stamp = log_time
            if conn.msgtype in IMAGE_TYPES:
                msg = TYPESTORE.deserialize_cdr(raw, conn.msgtype)
                stamp = stamp_to_ns(msg.header.stamp)
                frames[conn.topic].add(str(msg.header.frame_id))
                if conn.msgtype == IMAGE_TYPE:
                    encs[conn.topic].add(msg.encoding)
                    sizes[conn.topic].add(f"{msg.width}x{msg.height}")
                else:
                    encs[conn.topic].add(f"compressed:{msg.format}")
            stamps[conn.topic].append(stamp)
        topics = []
        for name, info in sorted(reader.topics.items()):
            rate, span = _rate(stamps[name])
            topics.append(
                TopicInfo(
                    name=name,
                    msgtype=info.msgtype,
                    count=len(stamps[name]),
                    rate_hz=None if rate is None or not math.isfinite(rate) else rate,
                    encodings=sorted(encs[name]),
                    sizes=sorted(sizes[name]),
                    frame_ids=sorted(frames[name]),
                    stamp_span_s=span,
                )
            )
        files = [f.name for f in Path(reader.path).iterdir()]
        storage = "mcap" if any(f.endswith(".mcap") for f in files) else "sqlite3"
        return BagInfo(str(reader.path), storage, count, start or 0, end or 0, topics)
    finally:
        reader.close()


# --------------------------------------------------------------------------------------------------------
# Bags made from image folders (sccosf-bag from-folder, the input of sccosf-eval on one's own data).

DEMO_T0_NS = 1_700_000_000 * 1_000_000_000  # a plausible wall-clock epoch, so tools show real dates


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _list_images(folder: str | Path) -> dict[str, Path]:
    d = Path(folder)
    if not d.is_dir():
        raise BagError(f"not a directory: {d}")
    files = {p.stem: p for p in sorted(d.iterdir()) if p.suffix.lower() in _IMAGE_SUFFIXES}
    if not files:
        raise BagError(f"no images ({', '.join(_IMAGE_SUFFIXES)}) in {d}")
    return files


def _read_image(path: Path, kind: str) -> tuple[np.ndarray, str]:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise BagError(f"cannot read image {path}")
    if image.ndim == 3 and kind in ("thermal", "labels"):
        if kind == "labels":  # colour label files would need a palette lookup; refuse rather than guess
            raise BagError(f"label image {path} has {image.shape[2]} channels; labels must be class ids")
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    if kind == "rgb":
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if image.dtype != np.uint8:
            raise BagError(f"visible image {path} is {image.dtype}; 8-bit colour expected")
        code = cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
        return cv2.cvtColor(image, code), "rgb8"
    if image.dtype == np.uint16 and kind == "labels":
        if int(image.max()) > 255:
            raise BagError(f"label image {path} has class ids above 255; masks are mono8")
        image = image.astype(np.uint8)
    if image.dtype == np.uint16:
        return image, "mono16"
    if image.dtype != np.uint8:
        raise BagError(f"{kind} image {path} is {image.dtype}; 8- or 16-bit expected")
    return image, "mono8"


def write_folder_bag(
    out: str | Path,
    rgb_dir: str | Path,
    thermal_dir: str | Path,
    labels_dir: str | Path | None = None,
    rate_hz: float = 10.0,
    storage: str = "mcap",
) -> dict[str, int]:
    """Registered image pairs (matched by file stem, e.g. MSRS ``vi/``+``ir/``) to a bag at ``rate_hz``.

    Both cameras get the same stamp per pair (the folders hold registered, simultaneous pairs); labels, when
    given, must exist for every pair and carry the same stamp. The bag's metadata records which file each
    stamp came from (:data:`FRAME_NAMES_KEY`), which ``sccosf-eval --boxes`` reads.
    """
    if not rate_hz > 0:
        raise BagError(f"rate must be > 0 Hz, got {rate_hz}")
    rgb, thermal = _list_images(rgb_dir), _list_images(thermal_dir)
    stems = sorted(set(rgb) & set(thermal))
    if not stems:
        raise BagError(
            f"no file names in common between {rgb_dir} ({len(rgb)} images, e.g. {next(iter(rgb))}) and "
            f"{thermal_dir} ({len(thermal)} images, e.g. {next(iter(thermal))}); pairs match by file stem"
        )
    labels = _list_images(labels_dir) if labels_dir is not None else None
    if labels is not None:
        missing = [s for s in stems if s not in labels]
        if missing:
            raise BagError(f"{len(missing)} pairs have no label in {labels_dir}, e.g. {missing[:3]}")
    with BagWriter(out, storage) as w:
        names: dict[str, str] = {}
        for k, stem in enumerate(stems):
            stamp = DEMO_T0_NS + round(k * 1e9 / rate_hz)
            names[str(stamp)] = stem
            image, enc = _read_image(rgb[stem], "rgb")
            w.write_image(topics.CAMERA_RGB, image, enc, stamp, RGB_FRAME)
            image, enc = _read_image(thermal[stem], "thermal")
            w.write_image(topics.CAMERA_THERMAL, image, enc, stamp, THERMAL_FRAME)
            if labels is not None:
                image, enc = _read_image(labels[stem], "labels")
                w.write_image(topics.LABELS, image, enc, stamp, RGB_FRAME)
        w.set_custom_data(FRAME_NAMES_KEY, json.dumps(names))
        return dict(w.counts)
