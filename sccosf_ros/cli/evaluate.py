"""``sccosf-eval BAG --out DIR``: offline evaluation of a bag (see :mod:`sccosf_ros.evaluation`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sccosf_ros import bags
from sccosf_ros.backends import PRECISIONS, backend_names
from sccosf_ros.errors import SccosfError
from sccosf_ros.evaluation import EvalConfig, evaluate_bag


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Topics, model and pairing options shared by ``sccosf-eval`` and ``sccosf-replay``."""
    d = EvalConfig()
    parser.add_argument("bag", help="rosbag2 directory (MCAP or sqlite3)")
    parser.add_argument("--out", required=True, help="output directory (report, contact sheet, output bag)")
    parser.add_argument("--checkpoint", help="model file; default: the shipped sccosf_tiny model")
    parser.add_argument("--rgb-topic", default=d.rgb_topic)
    parser.add_argument("--thermal-topic", default=d.thermal_topic)
    parser.add_argument(
        "--label-topic",
        default=d.label_topic,
        help="mono8 class ids stamped like the RGB frame; '' to skip segmentation scores",
    )
    parser.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: torch's); 1 is far faster "
        "on a small, busy machine, see docs/evaluation.md",
    )
    parser.add_argument("--slop", type=float, default=d.slop, help="pairing tolerance, seconds")
    parser.add_argument("--queue-size", type=int, default=d.queue_size, help="pairing queue per stream")
    parser.add_argument(
        "--storage", choices=sorted(bags.STORAGES), default=d.storage, help="output bag storage"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    return EvalConfig(
        rgb_topic=args.rgb_topic,
        thermal_topic=args.thermal_topic,
        label_topic=args.label_topic or None,
        boxes=getattr(args, "boxes", None),
        box_ignore=getattr(args, "box_ignore", None),
        box_names=getattr(args, "box_names", None),
        checkpoint=args.checkpoint,
        device=args.device,
        precision=getattr(args, "precision", "fp32"),
        backend=getattr(args, "backend", "torch"),
        num_threads=args.threads,
        slop=args.slop,
        queue_size=args.queue_size,
        max_pairs=getattr(args, "max_pairs", None),
        storage=args.storage,
        write_bag=not getattr(args, "no_bag", False),
        progress=not args.no_progress,
    )


def print_summary(report: dict) -> None:
    """The few numbers a user looks at first, and where the rest is."""
    pairs, thr, seg = report["pairs"], report["throughput"], report.get("segmentation")
    print(
        "pairs: "
        + ", ".join(
            f"{k.replace('_', ' ')} {v}"
            for k, v in pairs.items()
            if isinstance(v, int) and not isinstance(v, bool)
        )
    )
    if thr.get("pairs_per_s") is not None:
        print(f"throughput: {thr['pairs_per_s']:.2f} pairs/s over {thr['wall_s']:.1f} s")
    if thr.get("outputs_per_s") is not None and thr.get("input_pairs_per_s") is not None:
        print(
            f"throughput: {thr['outputs_per_s']:.2f} outputs/s while {thr['input_pairs_per_s']:.2f} "
            "input pairs/s were played"
        )
    lat = report.get("latency_ms")
    if lat and lat.get("count"):
        print(f"latency: p50 {lat['p50']:.0f} ms, p95 {lat['p95']:.0f} ms, p99 {lat['p99']:.0f} ms")
    mean = report["fusion"]["mean"]
    if mean:
        print("fusion: " + ", ".join(f"{k} {v:.3f}" for k, v in mean.items() if v is not None))
    print(
        f"mIoU: {seg['miou']:.3f} over {seg['frames']} labelled frames"
        if seg
        else f"mIoU: - ({report.get('segmentation_note')})"
    )
    box = report.get("box_score")
    if box:
        per = ", ".join(f"{k} {v['F']:.3f}" for k, v in box["per_class"].items() if v["F"] == v["F"])
        print(
            f"box score: mean F {box['mean_F']:.3f} ({per}), "
            f"box-less share {100 * box['boxless_share']:.1f} % over {box['frames']} frames"
        )
    for w in report.get("warnings", [])[:5]:
        print(f"warning: {w}")
    out = report["outputs"]
    print(f"report: {out['report_md']}")
    if out.get("contact_sheet"):
        print(f"contact sheet: {out['contact_sheet']}")
    if out.get("output_bag"):
        print(f"output bag: {out['output_bag']}  (open in Foxglove, or: ros2 bag play {out['output_bag']})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sccosf-eval", description=__doc__)
    add_common_arguments(parser)
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS)
    parser.add_argument(
        "--backend",
        default="torch",
        choices=backend_names(),
        help="onnxruntime: the exported ONNX graph (docs/onnx.md); auto: onnxruntime on a CPU where "
        "installed, else torch",
    )
    parser.add_argument("--max-pairs", type=int, help="stop after this many evaluated pairs")
    parser.add_argument("--no-bag", action="store_true", help="do not write the output bag")
    parser.add_argument(
        "--boxes",
        help="detection boxes DIR/{fusion,infrared,visible}/NAME.txt or DIR/NAME.txt (YOLO; MSRS classes): "
        "adds the box score (docs/metrics.md)",
    )
    parser.add_argument(
        "--box-ignore",
        help="don't-care boxes DIR/NAME.txt (YOLO, extra columns allowed; e.g. objects cut by the frame "
        "edge): predictions of a class inside its don't-care boxes count neither for nor against it",
    )
    parser.add_argument(
        "--box-names",
        help="which frame is which box file: a JSON {stamp_ns: name}, a names file or image folder in the "
        "bag's frame order, or 'sorted'; default: the bag's own record (docs/evaluation.md)",
    )
    args = parser.parse_args(argv)
    try:
        report = evaluate_bag(args.bag, args.out, config_from_args(args))
    except (SccosfError, OSError) as exc:
        print(f"sccosf-eval: error: {exc}", file=sys.stderr)
        return 2
    print_summary(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
