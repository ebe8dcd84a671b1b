"""``sccosf-bag``: make and inspect rosbag2 bags without a ROS install.

``from-folder`` turns registered image folders such as MSRS ``vi/`` + ``ir/`` into a bag, ``info``
summarises any bag, ``recover`` copies what is intact in a bag cut off mid-write (no ``metadata.yaml``, an
MCAP file without its footer) into a clean, indexed MCAP bag (:mod:`sccosf_ros.bag_recovery`). Synthetic demo
bags are written by ``sccosf-demo-bag`` (package ``sccosf_synth``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from sccosf_ros import bag_recovery, bags
from sccosf_ros.errors import SccosfError

MOVED_DEMO = (
    "sccosf-bag: error: 'sccosf-bag demo' moved to the generator package: run 'sccosf-demo-bag OUT ...' "
    "(same options) or 'python -m sccosf_synth.demo_bag OUT ...'"
)


def parse_size(text: str) -> tuple[int, int]:
    """``"480x640"`` (height x width, like the numpy shape) to ``(480, 640)``."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HEIGHTxWIDTH, e.g. 480x640, got {text!r}") from None
    if h < 16 or w < 16:
        raise argparse.ArgumentTypeError(f"size must be at least 16x16, got {text!r}")
    return h, w


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sccosf-bag", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    moved = sub.add_parser("demo", help="moved: sccosf-demo-bag (same options)", add_help=False)
    moved.add_argument("rest", nargs=argparse.REMAINDER)

    folder = sub.add_parser("from-folder", help="registered image folders (matched by file name) to a bag")
    folder.add_argument("out", help="output bag directory (must not exist)")
    folder.add_argument("--rgb", required=True, help="folder of visible images")
    folder.add_argument("--thermal", required=True, help="folder of thermal images (8- or 16-bit)")
    folder.add_argument("--labels", help="folder of single-channel class-id images")
    folder.add_argument("--rate", type=float, default=10.0, help="frames per second (default 10)")
    folder.add_argument("--storage", choices=sorted(bags.STORAGES), default="mcap")

    info = sub.add_parser("info", help="topics, types, counts, rates, encodings, duration")
    info.add_argument("bag")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")

    recover = sub.add_parser(
        "recover", help="copy every intact message of a bag cut off mid-write into a clean, indexed MCAP bag"
    )
    recover.add_argument("bag", help="bag folder, or one .mcap/.db3 file")
    recover.add_argument("out", help="output bag directory (must not exist)")
    return parser


def recover(src: str, out: str) -> str:
    """``sccosf-bag recover``: the output line."""
    bag = bag_recovery.open_unindexed(src)
    try:
        counts = bag_recovery.write_clean(bag, out)
    finally:
        bag.close()
    return bag_recovery.RecoveryReport(src, out, counts, bag.files).format()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            print(MOVED_DEMO, file=sys.stderr)
            return 2
        if args.command == "from-folder":
            counts = bags.write_folder_bag(
                args.out, args.rgb, args.thermal, args.labels, args.rate, args.storage
            )
            print(f"wrote {args.out}: " + ", ".join(f"{t} x{n}" for t, n in sorted(counts.items())))
        elif args.command == "recover":
            print(recover(args.bag, args.out))
        else:
            info = bags.bag_info(args.bag)
            print(json.dumps(info.to_dict(), indent=2) if args.json else info.format())
    except SccosfError as exc:
        print(f"sccosf-bag: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
