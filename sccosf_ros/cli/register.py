"""``sccosf-register``: find the thermal->RGB homography of a camera rig from many image pairs. No ROS.

From folders of simultaneous pairs matched by file name (``--rgb DIR --thermal DIR``) or from a bag
(``BAG --rgb-topic T --thermal-topic T``, paired by stamp as the node pairs them). Writes a params file the
node loads (``ros2 launch sccosf_ros fusion.launch.py params_file:=...``, or ``--params-file`` with
``ros2 run``) and a check picture: edges of the RGB frame (green) and of the thermal frame (magenta) before
and after the warp. Pairs should show the scene at several depths and positions; the method and its
measured accuracy are in docs/registration.md. When the estimate cannot be trusted (no pairs, unrelated
images, too few edges) it says why and writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import yaml

from sccosf_ros import bags
from sccosf_ros.errors import SccosfError
from sccosf_ros.image_folders import pair_by_stem, read_rgb, read_thermal, spread
from sccosf_ros.imaging.color import to_rgb
from sccosf_ros.imaging.resize import warp_thermal_to_rgb
from sccosf_ros.pairing import ApproximateTimePairer
from sccosf_ros.pipeline import SYNC_QUEUE_SIZE, SYNC_SLOP_S
from sccosf_ros.registration import (
    Registration,
    edge_image,
    estimate_homography,
    to_gray255,
)

PROG = "sccosf-register"
Pair = tuple[np.ndarray, np.ndarray]


class UserError(SccosfError):
    """A problem with this run's options or inputs; printed as one line."""


def folder_pairs(rgb_dir: Path, thermal_dir: Path, max_pairs: int) -> list[Pair]:
    """Up to ``max_pairs`` pairs spread evenly over the folders' common file names."""
    matched, _, _ = pair_by_stem(rgb_dir, thermal_dir, PROG)
    if not matched:
        raise UserError(f"no file names in common between {rgb_dir} and {thermal_dir} (pairs match by name)")
    pairs = []
    for k in spread(len(matched), max_pairs):
        stem, rgb, thermal = matched[k]
        try:
            pairs.append((read_rgb(rgb), read_thermal(thermal)))
        except SccosfError as exc:
            print(f"{PROG}: warning: skipping {stem}: {exc}", file=sys.stderr)
    return pairs


def bag_pairs(bag: Path, rgb_topic: str, thermal_topic: str, max_pairs: int) -> list[Pair]:
    """Pairs of a bag, paired by stamp with the node's defaults, thinned evenly to at most ``max_pairs``."""
    pairer = ApproximateTimePairer(SYNC_QUEUE_SIZE, SYNC_SLOP_S)
    kept: list[Pair] = []
    stride, seen = 1, 0
    for m in bags.read_images(bag, [rgb_topic, thermal_topic]):
        stream = "rgb" if m.topic == rgb_topic else "thermal"
        for p in pairer.add(stream, m.stamp_ns, (m.array, m.encoding)):
            if seen % stride == 0:
                kept.append((to_rgb(*p.rgb), np.array(p.thermal[0])))
                if len(kept) >= 2 * max_pairs:  # keep every second one and halve the rate from now on
                    kept, stride = kept[::2], stride * 2
            seen += 1
    return [kept[k] for k in spread(len(kept), max_pairs)]


def params_yaml(reg: Registration, source: str) -> str:
    """The node's params file with the ``homography`` parameter (9 row-major numbers, thermal -> RGB)."""
    text = ",".join(f"{v:.10g}" for v in reg.homography.ravel())
    body = yaml.safe_dump({"fusion_node": {"ros__parameters": {"homography": text}}}, sort_keys=False)
    header = (
        f"# Thermal->RGB homography from sccosf-register (docs/registration.md), source: {source}\n"
        f"# thermal {reg.thermal_hw[1]}x{reg.thermal_hw[0]} -> RGB {reg.rgb_hw[1]}x{reg.rgb_hw[0]}; "
        f"{reg.summary()}\n"
    )
    return header + body


def _edges_overlay(rgb: np.ndarray, thermal_on_rgb: np.ndarray, valid: np.ndarray) -> np.ndarray:
    grey = to_gray255(rgb)
    picture = np.repeat((grey * 0.35)[:, :, None], 3, axis=2)
    inside = cv2.erode(valid, np.ones((7, 7), np.uint8)) > 0  # the warped frame's own border is no edge
    for edges, colour in (
        (edge_image(grey, 1.5, 16.0), (0, 255, 0)),
        (edge_image(thermal_on_rgb, 1.5, 16.0) * inside, (255, 0, 255)),
    ):
        strong = edges > np.percentile(edges, 92)
        picture[strong] = 0.5 * picture[strong] + 0.5 * np.array(colour, np.float32)
    return np.clip(picture, 0, 255).astype(np.uint8)


def check_picture(pairs: Sequence[Pair], reg: Registration, rows: int = 3) -> np.ndarray:
    """Edges of the RGB frame (green) and thermal frame (magenta): resized only (left), warped (right)."""
    out = []
    for k in spread(len(pairs), rows):
        rgb, thermal = pairs[k]
        th = to_gray255(thermal)
        ones = np.full(th.shape, 255, np.uint8)
        sides = []
        for h in (None, reg.homography):
            warped = warp_thermal_to_rgb(th, rgb.shape, h)
            sides.append(_edges_overlay(rgb, warped, warp_thermal_to_rgb(ones, rgb.shape, h)))
        out.append(np.hstack([sides[0], np.full((rgb.shape[0], 8, 3), 255, np.uint8), sides[1]]))
    picture = np.vstack(out)
    for x, label in ((10, "before (resize only)"), (picture.shape[1] // 2 + 10, "after (homography)")):
        cv2.putText(picture, label, (x, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2, cv2.LINE_AA)
    return picture


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("bag", nargs="?", help="a bag with both cameras (instead of --rgb/--thermal)")
    parser.add_argument("--rgb", type=Path, help="folder of visible images")
    parser.add_argument("--thermal", type=Path, help="folder of thermal images (same file names)")
    parser.add_argument("--rgb-topic", default="/camera/rgb/image_raw")
    parser.add_argument("--thermal-topic", default="/camera/thermal/image_raw")
    parser.add_argument("--out", type=Path, required=True, help="params YAML to write")
    parser.add_argument("--check", type=Path, help="check picture (default: next to --out, *_check.png)")
    parser.add_argument("--max-pairs", type=int, default=64, help="pairs used, spread evenly (default 64)")
    return parser


def _load(args: argparse.Namespace) -> tuple[list[Pair], str]:
    if args.max_pairs < 2:
        raise UserError("--max-pairs must be at least 2")
    if args.bag and (args.rgb or args.thermal):
        raise UserError("give either a bag or --rgb and --thermal, not both")
    if args.bag:
        return bag_pairs(Path(args.bag), args.rgb_topic, args.thermal_topic, args.max_pairs), str(args.bag)
    if not (args.rgb and args.thermal):
        raise UserError("give a bag, or --rgb DIR and --thermal DIR")
    return folder_pairs(args.rgb, args.thermal, args.max_pairs), f"{args.rgb} + {args.thermal}"


def run(args: argparse.Namespace) -> int:
    pairs, source = _load(args)
    reg = estimate_homography(pairs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(params_yaml(reg, source))
    check = args.check or args.out.with_name(args.out.stem + "_check.png")
    cv2.imwrite(str(check), cv2.cvtColor(check_picture(pairs, reg), cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out} and {check}: {reg.summary()}")
    print(
        "homography (thermal -> RGB):\n" + np.array2string(reg.homography, precision=6, suppress_small=True)
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (SccosfError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
