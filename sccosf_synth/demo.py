"""``make demo`` (``sccosf-demo --out demo_out``): the whole path on a fresh clone.

1. writes a synthetic two-camera bag (RGB 30 Hz, thermal 9 Hz, labels) on the default topics;
2. starts the fusion node, replays the bag into it over rclpy and records what it publishes (the live path:
   latency, drops, scores);
3. evaluates the same bag offline (every pair, no drops) unless ``--no-offline``;
4. prints where the reports, contact sheets and output bags are.

It uses the shipped model and fails with a clear message when it is missing. Everything it writes lives under
``--out``; a rerun replaces its own earlier results there.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from sccosf_ros.cli.bag import parse_size
from sccosf_synth.demo_bag import SyntheticBagSpec, write_synthetic_bag


def _fresh(path: Path) -> Path:
    """Remove an earlier demo result (recognised by its report.json) so reruns work; refuse anything else."""
    if path.exists():
        if not (path / "report.json").exists() and any(path.iterdir()):
            raise SystemExit(f"demo: {path} exists and is not an earlier demo result; choose another --out")
        shutil.rmtree(path)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sccosf-demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="demo_out", help="output directory (default demo_out)")
    parser.add_argument("--checkpoint", help="model file; default: the shipped sccosf_tiny model")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of the synthetic bag")
    parser.add_argument("--size", type=parse_size, default=(240, 320), help="HEIGHTxWIDTH (default 240x320)")
    parser.add_argument("--rate", type=float, default=1.0, help="replay speed factor")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads for the node and the evaluator (default 1: they share the "
        "CPU, and on 2 busy cores 2 threads measured up to 100x slower; 0 = torch's)",
    )
    parser.add_argument("--domain-id", type=int, help="ROS_DOMAIN_ID (default: the environment's)")
    parser.add_argument("--no-offline", action="store_true", help="skip the offline evaluation")
    parser.add_argument("--no-live", action="store_true", help="skip the live replay through the node")
    args = parser.parse_args(argv)

    from sccosf_ros.paths import DEFAULT_MODEL_NAME, default_checkpoint_path

    checkpoint = Path(args.checkpoint) if args.checkpoint else default_checkpoint_path()
    if checkpoint is None or not checkpoint.is_file():
        print(
            f"demo: error: no model: {checkpoint or DEFAULT_MODEL_NAME} not found. The demo runs the "
            "shipped models/sccosf_tiny.safetensors; pass --checkpoint FILE (train one with sccosf-train).",
            file=sys.stderr,
        )
        return 2

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bag = out / "demo_bag"
    if bag.exists():
        shutil.rmtree(bag)
    spec = SyntheticBagSpec(seconds=args.seconds, height=args.size[0], width=args.size[1])
    counts = write_synthetic_bag(bag, spec)
    print(f"[1/3] bag: {bag}  (" + ", ".join(f"{t} x{n}" for t, n in sorted(counts.items())) + ")")

    from sccosf_ros.cli.evaluate import print_summary

    live = None
    if not args.no_live:
        from sccosf_ros.replay import ReplayConfig, ReplayError, replay_bag, ros_missing

        missing = ros_missing()
        if missing:
            print(f"[2/3] live replay skipped: rclpy/sensor_msgs not importable ({missing})")
        else:
            print(f"[2/3] live: starting fusion_node, replaying at {args.rate}x")
            cfg = ReplayConfig(
                checkpoint=checkpoint,
                device=args.device,
                rate=args.rate,
                domain_id=args.domain_id,
                num_threads=args.threads or None,
            )
            try:
                live = replay_bag(bag, _fresh(out / "live"), cfg)
            except ReplayError as exc:
                print(f"demo: error: live replay failed: {exc}", file=sys.stderr)
                return 1
            print_summary(live)
    offline = None
    if not args.no_offline:
        from sccosf_ros.evaluation import EvalConfig, evaluate_bag

        print("[3/3] offline: every pair through the same pairing and processing, no drops")
        cfg_off = EvalConfig(checkpoint=checkpoint, device=args.device, num_threads=args.threads or None)
        offline = evaluate_bag(bag, _fresh(out / "offline"), cfg_off)
        print_summary(offline)

    print("\nWhere to look:")
    for name, rep in (("live", live), ("offline", offline)):
        if rep:
            o = rep["outputs"]
            print(
                f"  {name:8s} report {o['report_md']}\n           sheet  {o['contact_sheet']}\n"
                f"           bag    {o['output_bag']}"
            )
    print(
        "  Synthetic scenes: the numbers show that the pipeline works, not how well the model does on\n"
        "  real cameras (see docs/evaluation.md)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
