"""``sccosf-export --onnx OUT.onnx``: an SC-CoSF checkpoint as an ONNX graph for ONNX Runtime / TensorRT.

The graph takes uint8 RGB (B, H, W, 3) and float32 thermal (B, H, W) in [0, 1] at one fixed H×W and returns
the fused uint8 image, the uint8 class mask and the float logits: the engine's whole forward, with its
pre/post-processing. Before the file is written, ONNX Runtime runs it against PyTorch on synthetic frames
of that size and the differences are printed and stored in the file (metadata ``sccosf_onnx``); class
names and palette travel in the metadata ``sccosf``. Use it with ``FusionEngine(..., backend="onnxruntime")``,
the node's ``backend:=onnxruntime checkpoint:=OUT.onnx``, or ``sccosf-fuse --backend onnxruntime``.

``--int8 --calibration DIR`` writes an INT8 graph instead (static quantisation calibrated on real pairs of
DIR, validation pairs left out; the file records how): faster where the CPU has fast integer kernels, the
same inputs and outputs. See docs/onnx.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sccosf_ros.backends.onnx_exporter import export_onnx
from sccosf_ros.backends.onnx_format import DEFAULT_OPSET, ExportInfo
from sccosf_ros.backends.onnx_int8 import (
    DEFAULT_CALIBRATION_PAIRS,
    DEFAULT_RECIPE,
    MIN_CALIBRATION_PAIRS,
    describe_quantization,
    export_int8,
)
from sccosf_ros.errors import SccosfError
from sccosf_ros.paths import default_checkpoint_path

PROG = "sccosf-export"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--onnx", required=True, type=Path, metavar="OUT.onnx", help="file to write")
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="default: the shipped tiny model; with --int8 also a float .onnx file from sccosf-export",
    )
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="frame size (fixed; default 480 640, or with --int8 from a float .onnx --checkpoint its own)",
    )
    parser.add_argument(
        "--no-seg-refine",
        action="store_true",
        help="export without the segmentation refinement (the coarse mask; for seg_refine:=false)",
    )
    parser.add_argument(
        "--dynamic-batch", action="store_true", help="symbolic batch dimension (default: batch 1)"
    )
    parser.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (>= 18: antialiased Resize)"
    )
    parser.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime vs PyTorch check")
    int8 = parser.add_argument_group("INT8 (docs/onnx.md, 'INT8')")
    int8.add_argument(
        "--int8",
        action="store_true",
        help="quantise to INT8 (static, QDQ, per-channel weights) for ONNX Runtime; needs --calibration",
    )
    int8.add_argument(
        "--calibration",
        type=Path,
        metavar="DIR",
        help="real pairs to calibrate on: DIR/vi + DIR/ir (MSRS layout) or DIR/rgb + DIR/thermal; names "
        "with an image in DIR/seafusion (validation pairs) are left out",
    )
    int8.add_argument(
        "--calibration-pairs",
        type=int,
        default=DEFAULT_CALIBRATION_PAIRS,
        metavar="N",
        help=f"pairs used, spread over the sorted names (default {DEFAULT_CALIBRATION_PAIRS}, "
        f"at least {MIN_CALIBRATION_PAIRS})",
    )
    int8.add_argument(
        "--calibration-method",
        choices=("percentile", "minmax"),
        default=DEFAULT_RECIPE.calibration,
        help="activation ranges: percentile (default; 99.999 %% of the range seen, held every quality bound) "
        "or minmax (the whole range; missed the bike F bound by 0.001)",
    )
    int8.add_argument(
        "--calibration-exclude",
        type=Path,
        metavar="FILE",
        help="names (one a line) never to calibrate on, e.g. config/msrs_dev_split.txt",
    )
    parser.add_argument("--json", action="store_true", help="print the export record as JSON")
    return parser


def _usage_error(args: argparse.Namespace) -> str | None:
    """What is wrong with the options (one line), or None."""
    if args.onnx.suffix.lower() != ".onnx":
        return f"--onnx must name a .onnx file, got {args.onnx}"
    if args.opset < 18:
        return f"--opset must be >= 18 (antialiased Resize), got {args.opset}"
    if args.int8 and args.calibration is None:
        return "--int8 needs --calibration DIR (real image pairs to calibrate on)"
    if not args.int8 and (args.calibration or args.calibration_exclude):
        return "--calibration and --calibration-exclude go with --int8"
    if args.int8 and args.dynamic_batch:
        return "--int8 exports batch 1 only (no --dynamic-batch)"
    return None


def _export(args: argparse.Namespace, checkpoint: Path) -> ExportInfo:
    h, w = args.size or (None, None)
    if args.int8:
        return export_int8(
            checkpoint,
            args.onnx,
            args.calibration,
            h,
            w,
            seg_refine=not args.no_seg_refine,
            pairs=args.calibration_pairs,
            exclude=args.calibration_exclude,
            recipe=DEFAULT_RECIPE.replace(calibration=args.calibration_method),
            check=not args.no_check,
        )
    return export_onnx(
        checkpoint,
        args.onnx,
        h or 480,
        w or 640,
        seg_refine=not args.no_seg_refine,
        dynamic_batch=args.dynamic_batch,
        opset=args.opset,
        check=not args.no_check,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    checkpoint = args.checkpoint or default_checkpoint_path()
    problem = _usage_error(args)
    if checkpoint is None:
        problem = "no --checkpoint and no shipped model found"
    if problem:
        print(f"{PROG}: error: {problem}", file=sys.stderr)
        return 2
    try:
        info = _export(args, Path(checkpoint))
    except SccosfError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(info.to_json())
        return 0
    c = info.check
    refine = "with" if info.seg_refine else "without"
    batch = "dynamic" if info.batch is None else info.batch
    print(
        f"{PROG}: wrote {args.onnx} ({args.onnx.stat().st_size / 1e6:.1f} MB, {info.precision}) from "
        f"{Path(checkpoint).name}: {info.height}x{info.width}, batch {batch}, {refine} the segmentation "
        f"refinement, opset {info.opset}, {info.export_s} s"
    )
    if c:
        print(
            f"{PROG}: ONNX Runtime (CPU) vs PyTorch on {c['frames']} synthetic frame(s): fused max diff "
            f"{c['fused_max_diff']} grey level(s), mask agreement {c['mask_agreement']:.4%}, logits max diff "
            f"{c['logits_max_abs_diff']:.2e}" + (" (the float graph)" if info.precision == "int8" else "")
        )
    else:
        print(f"{PROG}: not checked (--no-check)")
    if info.precision == "int8":
        print(f"{PROG}: {describe_quantization(info)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
