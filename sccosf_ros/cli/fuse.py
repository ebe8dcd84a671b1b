"""``sccosf-fuse``: fuse folders of registered RGB/thermal images offline, no ROS needed.

Files pair by name stem (``rgb/00012.png`` with ``thermal/00012.png``, any image extension), the layout of
MSRS-style datasets (``vi/`` + ``ir/``). For each pair it writes ``fused/``, ``segmentation/`` (mono8 class
ids), ``segmentation_color/`` (palette colours) and ``overlay/`` (colours blended over the fused image)
PNGs under ``--out``. A file that cannot be read is reported and skipped; only problems that stop the whole
run (no pairs, bad checkpoint, bad option) end it, with one message and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from sccosf_ros.backends import PRECISIONS, backend_names
from sccosf_ros.errors import SccosfError
from sccosf_ros.image_folders import pair_by_stem, read_rgb, read_thermal
from sccosf_ros.imaging import ThermalNormalizer, colorize_mask, overlay

PROG = "sccosf-fuse"
OUTPUT_DIRS = ("fused", "segmentation", "segmentation_color", "overlay")


class UserError(SccosfError):
    """A fatal problem of this run (no pairs, an output that cannot be written); one line, no traceback."""


def _warn(msg: str) -> None:
    print(f"{PROG}: warning: {msg}", file=sys.stderr)


class _ThermalPrep:
    """Per-frame thermal normalisation (files are independent images, so no smoothing across them)."""

    def __init__(self, mode: str) -> None:
        self._norm = ThermalNormalizer(mode, smoothing=0.0)

    def __call__(self, thermal: np.ndarray) -> np.ndarray:
        self._norm.reset()
        return self._norm(thermal)


def _load_homography(path: str | None) -> np.ndarray | None:
    if path is None:
        return None
    p = Path(path)
    try:
        h = np.load(p, allow_pickle=False) if p.suffix == ".npy" else np.loadtxt(p, delimiter=None)
    except (OSError, ValueError) as exc:
        raise UserError(f"--homography {p}: cannot read a 3x3 matrix ({exc})") from None
    return np.asarray(h, dtype=np.float64)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rgb", required=True, type=Path, help="folder of visible images")
    parser.add_argument("--thermal", required=True, type=Path, help="folder of thermal images (8/16-bit)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped tiny model")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS)
    parser.add_argument(
        "--backend",
        default="torch",
        choices=backend_names(),
        help="onnxruntime: the exported ONNX graph (a .onnx --checkpoint, or exported per frame size "
        "into a cache); docs/onnx.md",
    )
    parser.add_argument(
        "--thermal-norm",
        default="auto",
        choices=("auto", "fixed", "minmax", "percentile"),
        help="auto: 8-bit as is, otherwise per-image 1-99 percentile; fixed: the dtype's full range",
    )
    parser.add_argument("--overlay-alpha", type=float, default=0.5, help="colour weight in overlay/ (0..1)")
    parser.add_argument("--homography", default=None, help="3x3 thermal->RGB pixel map (.txt or .npy)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch or onnxruntime)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _write(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise OSError(f"cannot write {path}")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from sccosf_ros.engine import FusionEngine

    if not 0.0 <= args.overlay_alpha <= 1.0:
        raise UserError(f"--overlay-alpha must be in [0, 1], got {args.overlay_alpha}")
    pairs, lone_rgb, lone_thermal = pair_by_stem(args.rgb, args.thermal, PROG)
    for p in lone_rgb:
        _warn(f"no thermal image for {p}")
    for p in lone_thermal:
        _warn(f"no RGB image for {p}")
    if not pairs:
        raise UserError(f"no image pairs: nothing in {args.rgb} and {args.thermal} shares a file stem")
    homography = _load_homography(args.homography)
    engine = FusionEngine(
        args.checkpoint,
        args.device,
        args.precision,
        homography=homography,
        num_threads=args.threads,
        backend=args.backend,
    )
    prep = _ThermalPrep(args.thermal_norm)
    out_dirs = {name: args.out / name for name in OUTPUT_DIRS}
    for d in out_dirs.values():
        d.mkdir(parents=True, exist_ok=True)

    done, failed = 0, 0
    infer_ms: list[float] = []
    start = time.perf_counter()
    with engine:
        for stem, rgb_path, thermal_path in tqdm(pairs, desc=PROG, unit="pair", disable=args.quiet or None):
            try:
                rgb = read_rgb(rgb_path)
                thermal = prep(read_thermal(thermal_path))
                result = engine.infer(rgb, thermal)
            except (SccosfError, OSError, cv2.error) as exc:
                _warn(f"skipping {stem} ({rgb_path.name}, {thermal_path.name}): {exc}")
                failed += 1
                continue
            color = colorize_mask(result.mask, engine.palette)
            fused_bgr = cv2.cvtColor(result.fused, cv2.COLOR_RGB2BGR)
            try:
                _write(out_dirs["fused"] / f"{stem}.png", fused_bgr)
                _write(out_dirs["segmentation"] / f"{stem}.png", result.mask)
                _write(out_dirs["segmentation_color"] / f"{stem}.png", cv2.cvtColor(color, cv2.COLOR_RGB2BGR))
                blended = overlay(result.fused, color, args.overlay_alpha)
                _write(out_dirs["overlay"] / f"{stem}.png", cv2.cvtColor(blended, cv2.COLOR_RGB2BGR))
            except (OSError, cv2.error) as exc:
                raise UserError(str(exc)) from None
            infer_ms.append(result.timings["inference"])
            done += 1
    elapsed = time.perf_counter() - start
    fps = done / elapsed if elapsed > 0 else float("nan")
    mean_ms = sum(infer_ms) / len(infer_ms) if infer_ms else float("nan")
    print(
        f"{PROG}: {done} pairs fused into {args.out} ({failed} skipped, "
        f"{len(lone_rgb) + len(lone_thermal)} unpaired) in {elapsed:.1f} s: {fps:.2f} pairs/s overall, "
        f"network {mean_ms:.1f} ms/pair on {engine.device} ({engine.precision}, {engine.backend})"
    )
    return 0 if done else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except SccosfError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
