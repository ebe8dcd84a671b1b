"""``sccosf-export --onnx OUT.onnx``: an SC-CoSF checkpoint as an ONNX graph for ONNX Runtime / TensorRT.

The graph takes uint8 RGB (B, H, W, 3) and float32 thermal (B, H, W) in [0, 1] at one fixed H×W and returns
the fused uint8 image, the uint8 class mask and the float logits: the engine's whole forward, with its
pre/post-processing. Before the file is written, ONNX Runtime runs it against PyTorch on synthetic frames
of that size and the differences are printed and stored in the file (metadata ``sccosf_onnx``); class
names and palette travel in the metadata ``sccosf``. Use it with ``FusionEngine(..., backend="onnxruntime")``,
the node's ``backend:=onnxruntime checkpoint:=OUT.onnx``, or ``sccosf-fuse --backend onnxruntime``.
See docs/onnx.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sccosf_ros.backends.onnx_exporter import export_onnx
from sccosf_ros.backends.onnx_format import DEFAULT_OPSET
from sccosf_ros.errors import SccosfError
from sccosf_ros.paths import default_checkpoint_path

PROG = "sccosf-export"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--onnx", required=True, type=Path, metavar="OUT.onnx", help="file to write")
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped tiny model")
    parser.add_argument(
        "--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"), help="frame size (fixed)"
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
    parser.add_argument("--json", action="store_true", help="print the export record as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    checkpoint = args.checkpoint or default_checkpoint_path()
    if checkpoint is None:
        print(f"{PROG}: error: no --checkpoint and no shipped model found", file=sys.stderr)
        return 2
    if args.onnx.suffix.lower() != ".onnx":
        print(f"{PROG}: error: --onnx must name a .onnx file, got {args.onnx}", file=sys.stderr)
        return 2
    if args.opset < 18:
        print(f"{PROG}: error: --opset must be >= 18 (antialiased Resize), got {args.opset}", file=sys.stderr)
        return 2
    h, w = args.size
    try:
        info = export_onnx(
            checkpoint,
            args.onnx,
            h,
            w,
            seg_refine=not args.no_seg_refine,
            dynamic_batch=args.dynamic_batch,
            opset=args.opset,
            check=not args.no_check,
        )
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
        f"{PROG}: wrote {args.onnx} ({args.onnx.stat().st_size / 1e6:.1f} MB) from {Path(checkpoint).name}: "
        f"{h}x{w}, batch {batch}, {refine} the segmentation refinement, opset {info.opset}, {info.export_s} s"
    )
    if c:
        print(
            f"{PROG}: ONNX Runtime (CPU) vs PyTorch on {c['frames']} synthetic frame(s): fused max diff "
            f"{c['fused_max_diff']} grey level(s), mask agreement {c['mask_agreement']:.4%}, logits max diff "
            f"{c['logits_max_abs_diff']:.2e}"
        )
    else:
        print(f"{PROG}: not checked (--no-check)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
