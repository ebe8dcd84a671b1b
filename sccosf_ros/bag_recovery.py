"""Read the messages of a rosbag2 bag that a recorder left unfinished (power loss, killed process). No ROS.

A recorder stopped mid-write leaves an MCAP file without its summary and footer, and often no
``metadata.yaml``; ``rosbags`` and ``ros2 bag`` refuse both ("File end magic is invalid", "Expected metadata
file ... does not exist"), and the intact part of the recording is lost to the user. Here the storage files
of the folder are read directly:

* **MCAP**: the data section record by record from the start. A complete chunk is decompressed with
  ``rosbags``' own decompressor, which checks its CRC where the writer stored one; a chunk cut off by the end
  of the file still gives its complete messages when it is uncompressed (a compressed one is lost whole).
  Reading stops at the first record that is incomplete or implausible (opcode 0: the zero-filled tail some
  file systems leave after a power loss); that offset is "where the file ends". A message running into such
  a zero-filled region is dropped, since its tail may be zeros that were never written.
* **sqlite3**: the ``messages`` table row by row in insertion order, stopping at the first unreadable row.
  A database file shorter than its header says is read from a copy whose header gives the pages that exist:
  SQLite otherwise reads missing pages as zeros and returns rows that were never written.

Messages come out in log-time order, as from ``rosbags``. :func:`open_unindexed` returns a reader with the
part of ``rosbags.rosbag2.Reader``'s interface that :mod:`sccosf_ros.bags` uses, which falls back on it when
``rosbags`` cannot open a bag; :func:`write_clean` writes what was read as a clean, indexed MCAP bag
(``sccosf-bag recover``).

Why not the ``mcap`` package's ``StreamReader``: it needs every chunk complete and has no rosdep key for the
ROS install route; the tests use it as the reference reader.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import tempfile
import weakref
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from rosbags.rosbag2 import ReaderError, Writer, WriterError
from rosbags.rosbag2.metadata import parse_qos
from rosbags.rosbag2.storage_mcap import decompress

from sccosf_ros.errors import BagError

log = logging.getLogger(__name__)

MCAP_MAGIC = b"\x89MCAP0\r\n"
SQLITE_MAGIC = b"SQLite format 3\x00"
SUFFIXES = (".mcap", ".db3")
_OP_HEADER, _OP_FOOTER, _OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE, _OP_CHUNK, _OP_DATA_END = 1, 2, 3, 4, 5, 6, 15
_CHUNK_FIXED = 8 + 8 + 8 + 4  # start, end, uncompressed size, uncompressed CRC
_MESSAGE_FIXED = 2 + 4 + 8 + 8  # channel, sequence, log time, publish time


class RecoveryError(BagError):
    """Nothing could be read; the message says why, in one line."""


@dataclass
class FileScan:
    """What reading one storage file found: ``end`` is where its readable data ends (bytes)."""

    path: Path
    storage: str  # "mcap" or "sqlite3"
    size: int
    messages: int = 0
    end: int = 0
    complete: bool = False  # the file's own end marker was reached (MCAP data end; sqlite: every row read)
    problem: str | None = None  # what stopped the reading, if anything

    def describe(self) -> str:
        if self.complete:
            return f"{self.path.name}: {self.messages} messages, complete"
        where = f"ends at byte {self.end:,} of {self.size:,}" if self.storage == "mcap" else "damaged"
        return f"{self.path.name}: {self.messages} messages, {where} ({self.problem or 'no end marker'})"


@dataclass
class RecoveredConnection:
    """One topic as the storage file declared it (the fields a rosbag2 writer needs to write it again)."""

    id: int
    topic: str
    msgtype: str
    msgdef: str = ""
    msgdef_encoding: str = "ros2msg"
    digest: str = ""  # RIHS01 type hash where the file has one
    qos: str = ""  # offered_qos_profiles as stored (YAML)
    serialization_format: str = "cdr"
    msgcount: int = 0


@dataclass
class RecoveredTopic:
    """``reader.topics[name]`` (the fields ``rosbags``' TopicInfo offers that the bag tools use)."""

    msgtype: str
    msgcount: int
    connections: list[RecoveredConnection]


# An index entry: (log time, file number, order in file, connection id, where, offset, length). ``where`` is
# -1 for bytes read from the file at ``offset``, a chunk's file offset for bytes inside that compressed chunk,
# or -2 for a sqlite row (``offset`` = row id).
_Entry = tuple[int, int, int, int, int, int, int]
_FILE, _ROW = -1, -2


@dataclass
class _Scan:
    """The result of reading a bag's files once (cached: the tools open a bag several times)."""

    folder: Path
    files: list[FileScan]
    sources: list[Path]  # what to open for each file (a patched copy for a truncated sqlite file)
    connections: dict[int, RecoveredConnection]
    entries: list[_Entry]
    tmp: Any = None  # TemporaryDirectory holding patched copies

    def summary(self) -> str:
        files = "; ".join(f.describe() for f in self.files)
        return f"note: bag {self.folder} read without its index: {len(self.entries)} messages ({files})"


# --------------------------------------------------------------------------------------------------------
# MCAP


def _u16(b: bytes, o: int) -> int:
    return int.from_bytes(b[o : o + 2], "little")


def _u32(b: bytes, o: int) -> int:
    return int.from_bytes(b[o : o + 4], "little")


def _u64(b: bytes, o: int) -> int:
    return int.from_bytes(b[o : o + 8], "little")


def _string(b: bytes, o: int) -> tuple[str, int]:
    n = _u32(b, o)
    if o + 4 + n > len(b):
        raise ValueError("string runs past its record")
    return b[o + 4 : o + 4 + n].decode("utf-8"), o + 4 + n


def _channel_metadata(b: bytes, o: int) -> dict[str, str]:
    end = o + 4 + _u32(b, o)
    o += 4
    out = {}
    while o < end:
        key, o = _string(b, o)
        out[key], o = _string(b, o)
    return out


class _McapIndexer:
    """Reads one MCAP file's records into connections and index entries (see module docstring)."""

    def __init__(self, fno: int, f: BinaryIO, scan: FileScan, conns: dict[int, RecoveredConnection]) -> None:
        self.fno, self.f, self.scan = fno, f, scan
        self.schemas: dict[int, tuple[str, str, str]] = {}  # id -> (name, encoding, text)
        self.channels: dict[int, int] = {}  # the file's channel id -> bag connection id
        self.conns = conns
        self.entries: list[_Entry] = []
        self.orphans = 0  # messages of a channel whose record was lost

    def run(self) -> list[_Entry]:
        f, scan = self.f, self.scan
        if f.read(8) != MCAP_MAGIC:
            raise RecoveryError(f"{scan.path} is not an MCAP file (no MCAP magic at its start)")
        pos = scan.end = 8
        while True:
            head = f.read(9)
            if len(head) < 9:
                self._stop(pos, "the file ends inside a record header" if head else "the file ends here")
                break
            op, length = head[0], _u64(head, 1)
            if op == 0:
                self._stop(pos, "zero bytes where a record should start (a zero-filled tail)", zeros=True)
                break
            if op in (_OP_DATA_END, _OP_FOOTER):
                scan.complete, scan.end = True, pos
                break
            if not self._record(op, pos, length):
                break
            pos += 9 + length
            scan.end = pos
            f.seek(pos)
        if self.orphans:
            scan.problem = (scan.problem + "; " if scan.problem else "") + (
                f"{self.orphans} messages of a channel whose definition was lost skipped"
            )
        return self.entries

    def _record(self, op: int, pos: int, length: int) -> bool:
        """Index one top-level record; False when reading must stop there."""
        if pos + 9 + length > self.scan.size:
            self._stop(
                pos, f"the record at byte {pos:,} ({length:,} bytes) is cut off by the end of the file"
            )
            if op == _OP_CHUNK:
                self._partial_chunk(pos, length)
            return False
        if op == _OP_MESSAGE and length >= _MESSAGE_FIXED:
            head = self.f.read(_MESSAGE_FIXED)
            self._message(head, 0, _FILE, pos + 9 + _MESSAGE_FIXED, length - _MESSAGE_FIXED)
        elif op == _OP_CHUNK:
            self._chunk(pos, self.f.read(length))
        elif op in (_OP_SCHEMA, _OP_CHANNEL, _OP_HEADER):
            self._definition(op, self.f.read(length))
        return True

    def _stop(self, pos: int, why: str, zeros: bool = False) -> None:
        self.scan.end, self.scan.problem = pos, why
        if zeros:
            self._drop_zero_tail(self._zero_run_start(pos))

    def _zero_run_start(self, pos: int) -> int:
        """Where the run of zero bytes that reaches ``pos`` begins."""
        start = pos
        while start > 8:
            n = min(65536, start - 8)
            self.f.seek(start - n)
            block = self.f.read(n).rstrip(b"\x00")
            if len(block) < n:
                return start - n + len(block)
            start -= n
        return start

    def _drop_zero_tail(self, zero_from: int) -> None:
        """Drop messages whose bytes run into a zero-filled region: their tail may never have been written."""
        suspect = [e for e in self.entries if e[4] == _FILE and e[5] + e[6] > zero_from]
        for e in suspect:
            self.conns[e[3]].msgcount -= 1
            self.scan.messages -= 1
        if suspect:
            self.entries = [e for e in self.entries if not (e[4] == _FILE and e[5] + e[6] > zero_from)]

    def _definition(self, op: int, rec: bytes) -> None:
        try:
            if op == _OP_SCHEMA:
                sid = _u16(rec, 0)
                name, o = _string(rec, 2)
                encoding, o = _string(rec, o)
                self.schemas[sid] = (name, encoding, rec[o + 4 : o + 4 + _u32(rec, o)].decode("utf-8"))
            elif op == _OP_CHANNEL:
                self._channel(rec)
            elif op == _OP_HEADER and _string(rec, 0)[0] not in ("ros2", ""):
                raise RecoveryError(f"{self.scan.path} is an MCAP file of profile {_string(rec, 0)[0]!r}")
        except (ValueError, UnicodeDecodeError):
            self.scan.problem = "a damaged schema or channel record skipped"

    def _channel(self, rec: bytes) -> None:
        cid, sid = _u16(rec, 0), _u16(rec, 2)
        topic, o = _string(rec, 4)
        encoding, o = _string(rec, o)
        meta = _channel_metadata(rec, o)
        name, schema_encoding, text = self.schemas.get(sid, ("", "", ""))
        if not name:
            return  # a message type we cannot name; its messages count as orphans
        for c in self.conns.values():  # one connection per topic and type across the folder's files
            if (c.topic, c.msgtype) == (topic, name):
                self.channels[cid] = c.id
                return
        conn = RecoveredConnection(
            id=len(self.conns) + 1,
            topic=topic,
            msgtype=name,
            msgdef=text,
            msgdef_encoding=schema_encoding or "ros2msg",
            digest=meta.get("topic_type_hash", ""),
            qos=meta.get("offered_qos_profiles", ""),
            serialization_format=encoding,
        )
        self.conns[conn.id] = conn
        self.channels[cid] = conn.id

    def _message(self, rec: bytes, o: int, where: int, offset: int, length: int) -> None:
        conn = self.channels.get(_u16(rec, o))
        if conn is None:
            self.orphans += 1
            return
        self.conns[conn].msgcount += 1
        self.scan.messages += 1
        self.entries.append((_u64(rec, o + 6), self.fno, len(self.entries), conn, where, offset, length))

    def _chunk(self, pos: int, rec: bytes) -> None:
        try:
            usize, crc = _u64(rec, 16), _u32(rec, 24)
            compression, o = _string(rec, _CHUNK_FIXED)
            size = _u64(rec, o)
            data = decompress(rec[o + 8 : o + 8 + size], compression, usize, crc)
        except Exception as exc:  # bad CRC, size or compressed data (each decompressor has its own errors)
            self.scan.problem = f"damaged chunk at byte {pos:,} skipped: {exc}"
            return
        base = pos + 9 + o + 8 if not compression else None
        self._chunk_records(data, base, pos)

    def _partial_chunk(self, pos: int, length: int) -> None:
        """The complete messages of an uncompressed chunk that the end of the file cut off."""
        rec = self.f.read(length)
        try:
            compression, o = _string(rec, _CHUNK_FIXED)
        except ValueError:
            return
        if compression:
            return
        data = rec[o + 8 : o + 8 + _u64(rec, o)] if len(rec) >= o + 8 else b""
        read = self._chunk_records(data, pos + 9 + o + 8, pos)
        if read:
            self.scan.end = pos + 9 + o + 8 + read  # the end of its last complete record

    def _chunk_records(self, data: bytes, base: int | None, pos: int) -> int:
        """Index the records inside a chunk: by file offset when uncompressed (``base``), else by chunk.

        Returns how many bytes of ``data`` were whole records."""
        o = 0
        while o + 9 <= len(data):
            op, length = data[o], _u64(data, o + 1)
            if op == 0 or o + 9 + length > len(data):
                if op == 0 and base is not None:  # zeros inside an uncompressed chunk: a zero-filled tail
                    self._drop_zero_tail(base + len(data[:o].rstrip(b"\x00")))
                break
            body = o + 9
            if op == _OP_MESSAGE and length >= _MESSAGE_FIXED:
                start = body + _MESSAGE_FIXED
                if base is None:
                    self._message(data, body, pos, start, length - _MESSAGE_FIXED)
                else:
                    self._message(data, body, _FILE, base + start, length - _MESSAGE_FIXED)
            elif op in (_OP_SCHEMA, _OP_CHANNEL):
                self._definition(op, data[body : body + length])
            o = body + length
        return o


# --------------------------------------------------------------------------------------------------------
# sqlite3


def _sqlite_pages(path: Path, size: int) -> tuple[bytes, int, int, bool]:
    """(header, page size, pages the header counts, whether the file is shorter than that)."""
    with path.open("rb") as f:
        header = f.read(100)
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        raise RecoveryError(f"{path} is not an SQLite database ({size} bytes, no SQLite header)")
    page = int.from_bytes(header[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(header[28:32], "big")
    cut = size % page != 0 or (header[24:28] == header[92:96] and pages > size // page)
    return header, page, pages, cut


def check_complete(path: str | Path) -> None:
    """Raise :class:`RecoveryError` for a bag whose sqlite file ``rosbags`` would misread.

    ``rosbags`` opens the database ``immutable``: it reads the missing pages of a cut file as zeros (messages
    that were never written) and ignores a write-ahead log or a hot rollback journal left by a recorder that
    was stopped (messages lost, or half-written pages read). Such bags go through :func:`open_unindexed`.
    MCAP files need no check: ``rosbags`` refuses a cut one.
    """
    try:
        _, files = storage_files(path)
    except RecoveryError:
        return  # not a folder of storage files: rosbags says what is wrong
    for f in files:
        if f.suffix != ".db3":
            continue
        if _sqlite_pages(f, f.stat().st_size)[3]:
            raise RecoveryError(f"{f.name} is shorter than its header says")
        sides = _sidecars(f)
        if sides:
            raise RecoveryError(f"{f.name} has an unapplied {sides[0].name[len(f.name) + 1 :]} file")


def _sidecars(db3: Path) -> list[Path]:
    """A write-ahead log or rollback journal with content next to the database."""
    found = [db3.with_name(db3.name + s) for s in ("-wal", "-journal")]
    return [s for s in found if s.exists() and s.stat().st_size > 0]


def _sqlite_source(path: Path, scan: FileScan, tmp: Callable[[], Path]) -> tuple[Path, bool]:
    """The file to open and whether it may be opened ``immutable`` (see module docstring)."""
    header, page, pages, cut = _sqlite_pages(path, scan.size)
    whole = scan.size // page
    sidecars = _sidecars(path)
    if not cut and not sidecars:
        return path, True
    copy = tmp() / path.name
    with path.open("rb") as src, copy.open("wb") as dst:
        shutil.copyfileobj(_Limited(src, whole * page), dst)
        if cut:
            scan.problem = f"the file ends at page {whole} of the {pages} its header counts"
            dst.seek(28)
            dst.write(whole.to_bytes(4, "big"))
            dst.seek(92)
            dst.write(header[24:28])  # the page count is valid for this change counter
    for s in sidecars:  # a WAL or rollback journal is applied by SQLite when the copy opens
        shutil.copy2(s, copy.with_name(copy.name + s.name[len(path.name) :]))
    return copy, not sidecars


class _Limited:
    """A read-only file view of the first ``n`` bytes (for ``shutil.copyfileobj``)."""

    def __init__(self, f: BinaryIO, n: int) -> None:
        self.f, self.left = f, n

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        data = self.f.read(size)
        self.left -= len(data)
        return data


def _connect(source: Path, immutable: bool) -> sqlite3.Connection:
    uri = f"file:{source}?immutable=1" if immutable else f"file:{source}"
    return sqlite3.connect(uri, uri=True, check_same_thread=False)


def _sqlite_topics(db: sqlite3.Connection, conns: dict[int, RecoveredConnection]) -> dict[int, int]:
    """The file's topic ids -> bag connection ids, registering new topics."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not {"topics", "messages"} <= tables:
        raise sqlite3.DatabaseError(f"no rosbag2 tables (found {sorted(tables) or 'none'})")
    defs: dict[str, tuple[str, str, str]] = {}
    if "message_definitions" in tables:
        query = "SELECT topic_type, encoding, encoded_message_definition, type_description_hash"
        for t, enc, text, digest in db.execute(f"{query} FROM message_definitions"):
            defs[t] = (enc, text, digest)
    columns = [r[1] for r in db.execute("PRAGMA table_info(topics)")]
    hashed = "type_description_hash" in columns
    query = "SELECT id, name, type, serialization_format, offered_qos_profiles"
    mapping = {}
    for row in db.execute(query + (", type_description_hash" if hashed else "") + " FROM topics"):
        tid, topic, msgtype, fmt, qos = row[:5]
        enc, text, digest = defs.get(msgtype, ("ros2msg", "", row[5] if hashed else ""))
        found = next((c for c in conns.values() if (c.topic, c.msgtype) == (topic, msgtype)), None)
        if found is None:
            found = RecoveredConnection(
                len(conns) + 1, topic, msgtype, text, enc or "ros2msg", digest, qos, fmt
            )
            conns[found.id] = found
        mapping[tid] = found.id
    return mapping


def _sqlite_index(
    fno: int, db: sqlite3.Connection, scan: FileScan, conns: dict[int, RecoveredConnection]
) -> list:
    try:
        topics = _sqlite_topics(db, conns)
    except sqlite3.Error as exc:
        raise RecoveryError(f"{scan.path}: cannot read the bag's topics: {exc}") from None
    entries: list[_Entry] = []
    try:
        rows = db.execute("SELECT id, topic_id, timestamp, length(data), data FROM messages ORDER BY id")
        for rowid, tid, stamp, length, _ in rows:  # reading the data proves it is all there
            conn = topics.get(tid)
            if conn is None:
                continue
            conns[conn].msgcount += 1
            entries.append((int(stamp), fno, len(entries), conn, _ROW, int(rowid), int(length)))
        scan.complete = scan.problem is None
    except sqlite3.Error as exc:
        scan.problem = (
            scan.problem + "; " if scan.problem else ""
        ) + f"stopped after {len(entries)} rows: {exc}"
    scan.messages = len(entries)
    scan.end = scan.size if scan.complete else 0
    return entries


# --------------------------------------------------------------------------------------------------------
# The bag


def storage_files(path: str | Path) -> tuple[Path, list[Path]]:
    """The bag folder and its storage files (the folder's ``*.mcap``/``*.db3`` in split order, or one)."""
    p = Path(path)
    if p.is_file():
        if p.suffix not in SUFFIXES:
            raise RecoveryError(f"{p} is neither an .mcap nor a .db3 file")
        return p.parent, [p]
    if not p.is_dir():
        raise RecoveryError(f"bag not found: {p}")

    def split_order(f: Path) -> tuple[int, str]:
        tail = f.stem.rsplit("_", 1)[-1]
        return (int(tail) if tail.isdigit() else -1, f.name)

    files = sorted((f for f in p.iterdir() if f.suffix in SUFFIXES and f.is_file()), key=split_order)
    if not files:
        raise RecoveryError(f"no .mcap or .db3 file in {p}")
    return p, files


def _scan(path: str | Path) -> _Scan:
    folder, files = storage_files(path)
    conns: dict[int, RecoveredConnection] = {}
    scans, sources, entries = [], [], []
    holder: list[tempfile.TemporaryDirectory] = []

    def tmp() -> Path:
        if not holder:
            holder.append(tempfile.TemporaryDirectory(prefix="sccosf-recover-"))
        return Path(holder[0].name)

    for fno, f in enumerate(files):
        scan = FileScan(f, "mcap" if f.suffix == ".mcap" else "sqlite3", f.stat().st_size)
        if scan.storage == "mcap":
            with f.open("rb") as fh:
                entries += _McapIndexer(fno, fh, scan, conns).run()
            sources.append(f)
        else:
            source, immutable = _sqlite_source(f, scan, tmp)
            db = _connect(source, immutable)
            try:
                entries += _sqlite_index(fno, db, scan, conns)
            finally:
                db.close()
            sources.append(source)
        scans.append(scan)
    entries.sort()
    used = {e[3] for e in entries}
    conns = {k: c for k, c in conns.items() if k in used}
    result = _Scan(folder, scans, sources, conns, entries, holder[0] if holder else None)
    if result.tmp is not None:
        weakref.finalize(result, result.tmp.cleanup)
    return result


_CACHE: OrderedDict[tuple, _Scan] = OrderedDict()
_CACHE_SIZE = 4


def _cached_scan(path: str | Path) -> _Scan:
    """Scan once per bag state (the tools open a bag several times) and log the summary line once."""
    _, files = storage_files(path)
    key = (str(Path(path).resolve()), tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files))
    scan = _CACHE.get(key)
    if scan is None:
        scan = _scan(path)
        if not scan.entries:
            problems = "; ".join(f.describe() for f in scan.files)
            raise RecoveryError(f"no complete message could be read ({problems})")
        log.warning(scan.summary())
        _CACHE[key] = scan
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    return scan


class RecoveredBag:
    """The messages of a bag read without its index, with the reader interface :mod:`sccosf_ros.bags` uses."""

    def __init__(self, scan: _Scan) -> None:
        self._scan = scan
        self.path = scan.folder
        self.files = scan.files
        self.connections = list(scan.connections.values())
        self._handles: dict[int, Any] = {}
        self._chunks: OrderedDict[tuple[int, int], bytes] = OrderedDict()

    @property
    def message_count(self) -> int:
        return len(self._scan.entries)

    @property
    def summary(self) -> str:
        """One line: how many messages were read and where each file ends."""
        return self._scan.summary()

    @property
    def topics(self) -> dict[str, RecoveredTopic]:
        out: dict[str, RecoveredTopic] = {}
        for c in self.connections:
            t = out.setdefault(c.topic, RecoveredTopic(c.msgtype, 0, []))
            t.msgcount += c.msgcount
            t.connections.append(c)
        return out

    def messages(
        self,
        connections: Collection[RecoveredConnection] = (),
        start: int | None = None,
        stop: int | None = None,
    ) -> Iterator[tuple[RecoveredConnection, int, bytes]]:
        """(connection, log time ns, serialised message) in log-time order; ``start <= t < stop``."""
        wanted = {c.id for c in connections} or set(self._scan.connections)
        lo = -(2**63) if start is None else start
        hi = 2**63 if stop is None else stop
        for log_time, fno, _, cid, where, offset, length in self._scan.entries:
            if cid in wanted and lo <= log_time < hi:
                yield self._scan.connections[cid], log_time, self._read(fno, where, offset, length)

    def _read(self, fno: int, where: int, offset: int, length: int) -> bytes:
        handle = self._handles.get(fno)
        if handle is None:
            source = self._scan.sources[fno]
            if self._scan.files[fno].storage == "mcap":
                handle = source.open("rb")
            else:
                handle = _connect(source, source == self._scan.files[fno].path)
            self._handles[fno] = handle
        if where == _ROW:
            return bytes(handle.execute("SELECT data FROM messages WHERE id = ?", (offset,)).fetchone()[0])
        if where == _FILE:
            handle.seek(offset)
            return handle.read(length)
        return self._chunk(fno, where, handle)[offset : offset + length]

    def _chunk(self, fno: int, pos: int, handle: BinaryIO) -> bytes:
        key = (fno, pos)
        data = self._chunks.get(key)
        if data is None:
            handle.seek(pos + 1)
            length = _u64(handle.read(8), 0)
            rec = handle.read(length)
            compression, o = _string(rec, _CHUNK_FIXED)
            data = decompress(rec[o + 8 : o + 8 + _u64(rec, o)], compression, _u64(rec, 16), _u32(rec, 24))
            self._chunks[key] = data
            while len(self._chunks) > 2:  # messages are close to log-time order: a small cache suffices
                self._chunks.popitem(last=False)
        self._chunks.move_to_end(key)
        return data

    def close(self) -> None:
        for h in self._handles.values():
            h.close()
        self._handles.clear()
        self._chunks.clear()


def open_unindexed(path: str | Path) -> RecoveredBag:
    """Read a bag folder (or one ``.mcap``/``.db3`` file) without ``metadata.yaml`` or an MCAP summary.

    Logs one line (``logging`` warning) saying how many messages were read and where each file ends; raises
    :class:`RecoveryError` when no complete message can be read.
    """
    try:
        return RecoveredBag(_cached_scan(path))
    except (OSError, sqlite3.Error) as exc:
        raise RecoveryError(f"cannot read {path}: {exc}") from None


# --------------------------------------------------------------------------------------------------------
# sccosf-bag recover


def _connection_args(conn: RecoveredConnection, typestore: Any) -> dict[str, Any]:
    """``Writer.add_connection`` keywords: the stored definition, else the typestore's, else the schema's."""
    try:
        qos = parse_qos(conn.qos) if conn.qos else []
    except ReaderError:
        qos = []
    args: dict[str, Any] = {"serialization_format": conn.serialization_format, "offered_qos_profiles": qos}
    if conn.msgdef and conn.digest:
        return {**args, "msgdef": conn.msgdef, "rihs01": conn.digest}
    if conn.msgtype not in typestore.types and conn.msgdef and conn.msgdef_encoding == "ros2msg":
        from rosbags.typesys import get_types_from_msg

        typestore.register(get_types_from_msg(conn.msgdef, conn.msgtype))
    return {**args, "typestore": typestore}


def write_clean(bag: RecoveredBag, out: str | Path) -> dict[str, int]:
    """Write every message of ``bag`` into a new, indexed MCAP bag at ``out``; return messages per topic.

    Topic, type, message definition, type hash, QoS and log time of every message are kept; payloads are
    copied byte for byte.
    """
    from rosbags.rosbag2 import StoragePlugin
    from rosbags.typesys import Stores, get_typestore

    out = Path(out)
    if out.exists():
        raise RecoveryError(f"output bag {out} already exists; remove it or choose another path")
    typestore = get_typestore(Stores.ROS2_JAZZY)  # a fresh one: unknown types get registered into it
    writer = Writer(out, version=9, storage_plugin=StoragePlugin.MCAP)
    try:
        writer.open()
    except WriterError as exc:
        raise RecoveryError(f"cannot create {out}: {exc}") from None
    counts: dict[str, int] = {}
    try:
        handles = {}
        for c in bag.connections:
            try:
                handles[c.id] = writer.add_connection(c.topic, c.msgtype, **_connection_args(c, typestore))
            except Exception as exc:  # an unknown type whose definition cannot be parsed: say so, go on
                log.warning(f"{c.topic} [{c.msgtype}] not written: no usable message definition ({exc})")
        for conn, log_time, data in bag.messages():
            if conn.id in handles:
                writer.write(handles[conn.id], log_time, data)
                counts[conn.topic] = counts.get(conn.topic, 0) + 1
    except WriterError as exc:
        raise RecoveryError(f"cannot write {out}: {exc}") from None
    finally:
        writer.close()
    return counts


@dataclass
class RecoveryReport:
    """What ``sccosf-bag recover`` did, for its output line."""

    source: str
    out: str
    counts: dict[str, int] = field(default_factory=dict)
    files: list[FileScan] = field(default_factory=list)

    def format(self) -> str:
        total = sum(self.counts.values())
        topics = ", ".join(f"{t} x{n}" for t, n in sorted(self.counts.items()))
        files = "; ".join(f.describe() for f in self.files)
        return f"wrote {self.out}: {total} messages ({topics}) from {self.source} ({files})"
