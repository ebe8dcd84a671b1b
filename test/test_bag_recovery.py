"""Bags cut off mid-write (power loss): every complete message read, nothing invented, one clear line else.

The reference for what a cut MCAP file still holds comes from the ``mcap`` library (its chunk and message
indexes of the intact file) and from the writer itself (record offsets of an unchunked file), not from the
reader under test. A cut is tried at many byte offsets: inside the header, at and around chunk and message
boundaries, inside a message's data, and spread evenly.
"""

from __future__ import annotations

import logging
import random
import shutil
import sqlite3
from pathlib import Path

import pytest

from sccosf_ros import bags, topics
from sccosf_ros.cli import bag as bag_cli
from sccosf_synth.demo_bag import SyntheticBagSpec, write_synthetic_bag

mcap_reader = pytest.importorskip("mcap.reader")
from mcap.records import Chunk, MessageIndex  # noqa: E402
from mcap.stream_reader import StreamReader, breakup_chunk  # noqa: E402
from mcap.writer import CompressionType  # noqa: E402
from mcap.writer import Writer as McapWriter  # noqa: E402

Message = tuple[str, int, bytes]  # topic, log time, payload


def _spec() -> SyntheticBagSpec:
    """2 s at 72x96: 60 RGB, 60 labels, 17 thermal frames (about 2 MB: a few 1 MiB rosbags chunks)."""
    return SyntheticBagSpec(seconds=2.0, height=72, width=96, seed=3)


def _original(path: Path) -> list[Message]:
    return sorted((m.topic, m.log_time_ns, m.data) for m in bags.read_raw(path))


@pytest.fixture(scope="module")
def plain_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """rosbags' MCAP: chunked, uncompressed, no CRC."""
    path = tmp_path_factory.mktemp("plain") / "bag"
    write_synthetic_bag(path, _spec())
    return path


def _rosbags_zstd(src: Path, out: Path) -> None:
    from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer

    w = Writer(out, version=9, storage_plugin=StoragePlugin.MCAP)
    w.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    w.open()
    conns: dict[str, object] = {}
    for m in bags.read_raw(src):
        if m.topic not in conns:
            conns[m.topic] = w.add_connection(m.topic, m.msgtype, typestore=bags.TYPESTORE)
        w.write(conns[m.topic], m.log_time_ns, m.data)
    w.close()


def _mcap_library(src: Path, out: Path, chunked: bool) -> list[int]:
    """The bag as the ``mcap`` library writes it (zstd chunks with CRCs, like rosbag2's recorder, or none);
    returns the end offset of every message record in an unchunked file, in write order."""
    out.mkdir()
    ends: list[int] = []
    with (out / f"{out.name}.mcap").open("wb") as f:
        w = McapWriter(f, chunk_size=256 * 1024, compression=CompressionType.ZSTD, use_chunking=chunked)
        w.start(profile="ros2", library="test")
        msgdef, _ = bags.TYPESTORE.generate_msgdef(bags.IMAGE_TYPE, ros_version=2)
        schema = w.register_schema(bags.IMAGE_TYPE, "ros2msg", msgdef.encode())
        channels: dict[str, int] = {}
        for m in bags.read_raw(src):
            if m.topic not in channels:
                channels[m.topic] = w.register_channel(m.topic, "cdr", schema, {"offered_qos_profiles": ""})
            w.add_message(channels[m.topic], m.log_time_ns, m.data, m.log_time_ns)
            ends.append(f.tell())
        w.finish()
    return ends


@pytest.fixture(scope="module")
def variants(plain_bag: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("variants")
    _rosbags_zstd(plain_bag, root / "zstd")
    _mcap_library(plain_bag, root / "lib_chunked", chunked=True)
    return {"plain": plain_bag, "zstd": root / "zstd", "lib_chunked": root / "lib_chunked"}


def _mcap_file(folder: Path) -> Path:
    (f,) = folder.glob("*.mcap")
    return f


def _read_record(f, offset: int) -> object:
    f.seek(offset)
    return next(StreamReader(f, skip_magic=True, emit_chunks=True).records)


def _chunked_extents(path: Path) -> list[tuple[Message, int]]:
    """Each message of a chunked MCAP file and the file offset a cut must reach for it to be readable: the end
    of its record in an uncompressed chunk (complete records of a cut chunk count), else its chunk's end."""
    out: list[tuple[Message, int]] = []
    with path.open("rb") as f:
        summary = mcap_reader.make_reader(f).get_summary()
        assert summary is not None and summary.chunk_indexes
        topic_of = {cid: c.topic for cid, c in summary.channels.items()}
        for ci in sorted(summary.chunk_indexes, key=lambda c: c.chunk_start_offset):
            chunk = _read_record(f, ci.chunk_start_offset)
            assert isinstance(chunk, Chunk)
            messages = [r for r in breakup_chunk(chunk) if type(r).__name__ == "Message"]
            offsets = []
            for off in ci.message_index_offsets.values():
                index = _read_record(f, off)
                assert isinstance(index, MessageIndex)
                offsets += [o for _, o in index.records]
            assert len(offsets) == len(messages)
            data_start = ci.chunk_start_offset + 9 + 28 + 4 + len(ci.compression) + 8
            chunk_end = ci.chunk_start_offset + ci.chunk_length
            for off, m in zip(sorted(offsets), messages, strict=True):
                end = data_start + off + 9 + 22 + len(m.data) if not ci.compression else chunk_end
                out.append(((topic_of[m.channel_id], m.log_time, bytes(m.data)), end))
    return out


def _cut_offsets(size: int, ends: list[int], rng: random.Random) -> list[int]:
    """Offsets in the header, at and one byte around record ends, inside records, and evenly spread."""
    offsets = {0, 1, 7, 8, 9, 20, 60, size - 1}
    for e in rng.sample(sorted(set(ends)), min(12, len(set(ends)))):
        offsets |= {e - 1, e, e + 1, e - 200}
    offsets |= {round(size * k / 17) for k in range(1, 17)}
    return sorted(o for o in offsets if 0 <= o < size)


def _write_cut(src: Path, dst_dir: Path, offset: int, with_metadata: bool, pad_zeros: bool = False) -> Path:
    if dst_dir.exists():
        shutil.rmtree(dst_dir)
    dst_dir.mkdir(parents=True)
    data = src.read_bytes()
    cut = data[:offset] + (bytes(len(data) - offset) if pad_zeros else b"")
    (dst_dir / src.name).write_bytes(cut)
    if with_metadata and (src.parent / "metadata.yaml").exists():
        shutil.copy(src.parent / "metadata.yaml", dst_dir / "metadata.yaml")
    return dst_dir


def _check_cut(folder: Path, expected: list[Message]) -> list[Message]:
    """Either exactly the expected messages, or (when none is expected) one clear error line."""
    try:
        got = sorted((m.topic, m.log_time_ns, m.data) for m in bags.read_raw(folder))
    except bags.BagError as exc:
        assert not expected, f"{folder}: {len(expected)} messages were intact, yet: {exc}"
        assert "\n" not in str(exc) and "cannot open bag" in str(exc)
        return []
    assert got == expected
    return got


@pytest.mark.parametrize("kind", ["plain", "zstd", "lib_chunked"])
def test_cut_chunked_mcap_gives_the_intact_prefix(
    kind: str, variants: dict[str, Path], tmp_path: Path
) -> None:
    src = _mcap_file(variants[kind])
    extents = _chunked_extents(src)
    assert sorted(m for m, _ in extents) == _original(variants[kind])
    rng = random.Random(kind)
    offsets = _cut_offsets(src.stat().st_size, [e for _, e in extents], rng)
    recovered_counts = []
    for i, offset in enumerate(offsets):
        folder = _write_cut(src, tmp_path / f"cut{i}", offset, with_metadata=i % 2 == 0)
        expected = sorted(m for m, end in extents if end <= offset)
        recovered_counts.append(len(_check_cut(folder, expected)))
    assert recovered_counts == sorted(recovered_counts) and recovered_counts[-1] == len(extents)  # footer cut
    assert len(set(recovered_counts)) > 2


def test_cut_unchunked_mcap_gives_the_intact_prefix(plain_bag: Path, tmp_path: Path) -> None:
    ends = _mcap_library(plain_bag, tmp_path / "flat", chunked=False)
    src = _mcap_file(tmp_path / "flat")
    messages = [(m.topic, m.log_time_ns, m.data) for m in bags.read_raw(plain_bag)]  # the order written
    assert sorted(messages) == _original(tmp_path / "flat")
    for i, offset in enumerate(_cut_offsets(src.stat().st_size, ends, random.Random(1))):
        folder = _write_cut(src, tmp_path / f"cut{i}", offset, with_metadata=False)
        _check_cut(folder, sorted(m for m, end in zip(messages, ends, strict=True) if end <= offset))


def test_zero_filled_tail_never_gives_a_message_that_was_not_written(plain_bag: Path, tmp_path: Path) -> None:
    """Some file systems leave a power-cut file at its full length with zeros where data never arrived."""
    src = _mcap_file(plain_bag)
    extents = _chunked_extents(src)
    original = set(_original(plain_bag))
    for i, offset in enumerate(_cut_offsets(src.stat().st_size, [e for _, e in extents], random.Random(2))):
        folder = _write_cut(src, tmp_path / f"z{i}", offset, with_metadata=False, pad_zeros=True)
        try:
            got = [(m.topic, m.log_time_ns, m.data) for m in bags.read_raw(folder)]
        except bags.BagError as exc:
            assert "\n" not in str(exc)
            continue
        intact = [m for m, end in extents if end <= offset]
        assert set(got) <= original and len(got) >= len(intact) - 2  # at most a zero-ending message or two


def test_recovery_says_what_it_read_once(plain_bag: Path, tmp_path: Path, caplog) -> None:
    src = _mcap_file(plain_bag)
    folder = _write_cut(src, tmp_path / "cut", src.stat().st_size * 3 // 5, with_metadata=False)
    with caplog.at_level(logging.WARNING, logger="sccosf_ros.bag_recovery"):
        info = bags.bag_info(folder)
        rgb = list(bags.read_images(folder, [topics.CAMERA_RGB]))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert f"read without its index: {info.message_count} messages" in lines[0]
    assert f"of {src.stat().st_size * 3 // 5:,}" in lines[0]  # where the file ends
    assert info.topic(topics.CAMERA_RGB).count == len(rgb) > 0 and info.storage == "mcap"


def test_not_a_bag_is_one_clear_line(tmp_path: Path) -> None:
    for name, content in (("empty", b""), ("text", b"hello, not a bag at all"), ("magic", b"\x89MCAP0\r\n")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "x.mcap").write_bytes(content)
        with pytest.raises(bags.BagError) as err:
            bags.bag_topics(folder)
        assert "\n" not in str(err.value) and "x.mcap" in str(err.value)
    with pytest.raises(bags.BagError, match=r"no \.mcap or \.db3 file"):
        bags.bag_topics(tmp_path / "empty" / ".." / "text" / "..")


# ---- sqlite3 ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sqlite_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sq") / "bag"
    write_synthetic_bag(path, SyntheticBagSpec(seconds=1.0, height=48, width=64, storage="sqlite3"))
    return path


def _rows(db3: Path) -> list[Message]:
    """Rows in insertion order, read with SQLite directly (the reference)."""
    db = sqlite3.connect(f"file:{db3}?immutable=1", uri=True)
    names = dict(db.execute("SELECT id, name FROM topics"))
    rows = db.execute("SELECT topic_id, timestamp, data FROM messages ORDER BY id").fetchall()
    db.close()
    return [(names[t], int(s), bytes(d)) for t, s, d in rows]


def test_sqlite_bag_without_metadata_reads_in_full(sqlite_bag: Path, tmp_path: Path) -> None:
    folder = tmp_path / "nometa"
    shutil.copytree(sqlite_bag, folder)
    (folder / "metadata.yaml").unlink()
    assert _original(folder) == _original(sqlite_bag) and len(_original(folder)) == 30 + 30 + 8
    info = bags.bag_info(folder)
    assert info.storage == "sqlite3" and info.topic(topics.CAMERA_THERMAL).count == 8


@pytest.mark.parametrize("with_metadata", [False, True])
def test_truncated_sqlite_gives_a_prefix_of_its_rows(
    sqlite_bag: Path, tmp_path: Path, with_metadata: bool
) -> None:
    (db3,) = sqlite_bag.glob("*.db3")
    rows = _rows(db3)
    size = db3.stat().st_size
    counts = []
    for i, offset in enumerate(sorted({*range(0, size, size // 29), 99, 100, 4096, 4097, size - 1})):
        folder = _write_cut(db3, tmp_path / f"cut{i}", offset, with_metadata)
        try:
            got = sorted((m.topic, m.log_time_ns, m.data) for m in bags.read_raw(folder))
        except bags.BagError as exc:
            assert "\n" not in str(exc)
            counts.append(0)
            continue
        assert got == sorted(rows[: len(got)]), offset  # the first rows as written, never an invented one
        counts.append(len(got))
    assert counts == sorted(counts) and 0 < counts[-1] < len(rows)


def test_sqlite_write_ahead_log_of_a_stopped_recorder_is_applied(sqlite_bag: Path, tmp_path: Path) -> None:
    """A recorder in WAL mode stopped before its checkpoint: the newest messages are only in the -wal file."""
    (db3,) = sqlite_bag.glob("*.db3")
    rows = _rows(db3)
    base = tmp_path / "base.db3"
    shutil.copy(db3, base)
    db = sqlite3.connect(base)
    db.execute("DELETE FROM messages WHERE id > 40")
    db.commit()
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA wal_autocheckpoint=0")
    src = sqlite3.connect(f"file:{db3}?immutable=1", uri=True)
    db.executemany(
        "INSERT INTO messages VALUES (?, ?, ?, ?)", src.execute("SELECT * FROM messages WHERE id > 40")
    )
    db.commit()
    folder = tmp_path / "stopped"
    folder.mkdir()
    for suffix in ("", "-wal"):  # the files as the power cut left them, the connection still open
        shutil.copy(f"{base}{suffix}", folder / f"bag.db3{suffix}")
    db.close()
    assert len(_rows(folder / "bag.db3")) == 40  # what reading the main file alone gives
    assert _original(folder) == sorted(rows)
    assert (folder / "bag.db3-wal").stat().st_size > 0  # the input is left as it was


# ---- sccosf-bag recover ----------------------------------------------------------------------------------


def _recover(src: Path, out: Path, capsys) -> tuple[int, str]:
    """Exit code and what the command printed (stdout on success, stderr on failure)."""
    rc = bag_cli.main(["recover", str(src), str(out)])
    captured = capsys.readouterr()
    return rc, captured.out if rc == 0 else captured.err


@pytest.mark.parametrize("kind", ["plain", "zstd"])
def test_recover_writes_a_clean_indexed_bag(
    kind: str, variants: dict[str, Path], tmp_path: Path, capsys
) -> None:
    src = _mcap_file(variants[kind])
    folder = _write_cut(src, tmp_path / "cut", src.stat().st_size * 2 // 3, with_metadata=False)
    intact = _original(folder)
    rc, text = _recover(folder, tmp_path / "clean", capsys)
    assert rc == 0 and f": {len(intact)} messages" in text and text.count("\n") == 1
    # rosbags opens it without any fallback: metadata.yaml and a summary are there
    from rosbags.rosbag2 import Reader

    with Reader(tmp_path / "clean") as reader:
        assert reader.message_count == len(intact)
        got = sorted((c.topic, t, bytes(d)) for c, t, d in reader.messages())
        assert {c.msgtype for c in reader.connections} == {bags.IMAGE_TYPE}
    assert got == intact
    # and so does the mcap library, with its index
    with _mcap_file(tmp_path / "clean").open("rb") as f:
        reader = mcap_reader.make_reader(f)
        summary = reader.get_summary()
        assert summary is not None and summary.statistics.message_count == len(intact)
        assert summary.chunk_indexes
        lib = sorted((ch.topic, m.log_time, bytes(m.data)) for _, ch, m in reader.iter_messages())
    assert lib == intact


def test_recover_errors_are_one_line(variants: dict[str, Path], tmp_path: Path, capsys) -> None:
    rc, text = _recover(tmp_path / "nothing", tmp_path / "out", capsys)
    assert rc == 2 and text.count("\n") == 1 and "not found" in text
    rc, text = _recover(variants["plain"], variants["zstd"], capsys)  # the output exists
    assert rc == 2 and text.count("\n") == 1 and "exists" in text
    folder = _write_cut(_mcap_file(variants["plain"]), tmp_path / "head", 30, with_metadata=False)
    rc, text = _recover(folder, tmp_path / "out2", capsys)
    assert rc == 2 and text.count("\n") == 1 and "no complete message" in text
    assert not (tmp_path / "out2").exists()


def test_evaluation_reads_a_cut_bag(plain_bag: Path, random_checkpoint: Path, tmp_path: Path) -> None:
    from sccosf_ros.evaluation import EvalConfig, evaluate_bag

    src = _mcap_file(plain_bag)
    folder = _write_cut(src, tmp_path / "cut", src.stat().st_size // 2, with_metadata=False)
    rgb = sum(1 for m in bags.read_raw(folder) if m.topic == topics.CAMERA_RGB)
    cfg = EvalConfig(
        checkpoint=random_checkpoint, device="cpu", num_threads=1, progress=False, write_bag=False
    )
    report = evaluate_bag(folder, tmp_path / "eval", cfg)
    assert report["pairs"]["rgb_messages"] == rgb and report["pairs"]["pairs_evaluated"] >= 7
