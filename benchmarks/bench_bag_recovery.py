"""Reading a bag cut off mid-write: the demo bag (``make demo``: 4 s, 320x240, about 40 MB) cut at 25 MB.

Reports the messages recovered against the messages whose records lie wholly before the cut (the upper bound,
from the ``mcap`` library's index of the intact file), and the time to scan, to read every message and to
write a clean bag with ``sccosf-bag recover``. Figures to stdout as JSON.

    python benchmarks/bench_bag_recovery.py [--cut-mb 25]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from figures import emit
from mcap.reader import make_reader
from mcap.records import Message
from mcap.stream_reader import StreamReader, breakup_chunk

from sccosf_ros import bag_recovery, bags
from sccosf_synth.demo_bag import SyntheticBagSpec, write_synthetic_bag


def intact_before(mcap: Path, cut: int) -> int:
    """Messages whose record ends before ``cut`` in the intact file (the most a reader can recover), from the
    ``mcap`` library's chunk and message indexes (uncompressed chunks, as rosbags writes by default)."""
    total = 0
    with mcap.open("rb") as f:
        summary = make_reader(f).get_summary()
        for ci in summary.chunk_indexes:
            f.seek(ci.chunk_start_offset)
            chunk = next(StreamReader(f, skip_magic=True, emit_chunks=True).records)
            sizes = [9 + 22 + len(r.data) for r in breakup_chunk(chunk) if isinstance(r, Message)]
            offsets = []
            for off in ci.message_index_offsets.values():
                f.seek(off)
                offsets += [o for _, o in next(StreamReader(f, skip_magic=True).records).records]
            start = ci.chunk_start_offset + 9 + 28 + 4 + len(ci.compression) + 8
            ends = [start + o + n for o, n in zip(sorted(offsets), sizes, strict=True)]
            if ci.compression:
                ends = [ci.chunk_start_offset + ci.chunk_length] * len(ends)
            total += sum(e <= cut for e in ends)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cut-mb", type=float, default=25.0)
    parser.add_argument("--out", type=Path, help="also write the figures here (JSON)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_synthetic_bag(root / "demo", SyntheticBagSpec(seconds=4.0, height=240, width=320))
        (src,) = (root / "demo").glob("*.mcap")
        total = sum(1 for _ in bags.read_raw(root / "demo"))
        cut = round(args.cut_mb * 1e6)
        (root / "cut").mkdir()
        with src.open("rb") as f:
            (root / "cut" / src.name).write_bytes(f.read(cut))
        t0 = time.perf_counter()
        bag = bag_recovery.open_unindexed(root / "cut")
        t1 = time.perf_counter()
        read = sum(len(d) for _, _, d in bag.messages())
        t2 = time.perf_counter()
        counts = bag_recovery.write_clean(bag, root / "clean")
        t3 = time.perf_counter()
        bag.close()
        figures = {
            "bag_mb": round(src.stat().st_size / 1e6, 1),
            "cut_mb": args.cut_mb,
            "messages_in_bag": total,
            "messages_intact_before_cut": intact_before(src, cut),
            "messages_recovered": bag.message_count,
            "payload_mb_recovered": round(read / 1e6, 1),
            "ends_at_byte": bag.files[0].end,
            "scan_s": round(t1 - t0, 3),
            "read_all_s": round(t2 - t1, 3),
            "recover_write_s": round(t3 - t2, 3),
            "written": sum(counts.values()),
        }
        shutil.rmtree(root / "clean", ignore_errors=True)
    emit(figures, args.out)


if __name__ == "__main__":
    main()
