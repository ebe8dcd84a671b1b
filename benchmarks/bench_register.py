"""``sccosf-register``'s accuracy on real pairs: MSRS thermal frames moved by known homographies.

For each trial a random homography ``Ht`` (scale 0.9-1.1, rotation +-3 deg, shift +-30 px, perspective up
to 1e-5 /px: about 2 px at the corners) moves the thermal frames of a random set of registered MSRS pairs
(``../shared/data/msrs``, 640x480): the simulated thermal camera sees ``ir(Ht x)``, so the homography to
find is ``H0 @ Ht``, where ``H0`` is how the dataset's own pairs align. The figures:

* ``corner_error_px``: mean distance of the 640x480 frame's corners under the estimate and under ``Ht``,
  taking the dataset's pairs as perfectly registered (``H0 = I``);
* ``change_error_px``: the same for the recovered change ``inv(H0_hat) @ H_hat`` against ``Ht``, with
  ``H0_hat`` the tool's own estimate on the unmoved folder (all pairs, once): how well a change of the rig
  is measured, whatever the dataset's residual misregistration.
* ``same_scenes_change_px``: the same with ``H0_hat`` estimated on the trial's own pairs before they were
  moved: the change measured on unchanged scenes, without the scatter between sets of scenes (with a
  baseline between the cameras, each set of scenes has its own best homography).

* ``h0_halves_apart_px``: how far apart the two halves of the folder (alternate pairs, fitted independently)
  put ``H0``: whether ``dataset_alignment_h0_corner_px`` is the pairs' own misregistration or the tool's
  scatter.
* ``box_offset_px``: an estimate of ``H0`` that owes nothing to the tool: the median offset (x, y) of the
  public MSRS detection boxes annotated on the visible frame from the same object's box annotated on the
  infrared frame (same class, IoU > 0.5), over the folder's boxes.

``edge_ncc_pairs``, ``edge_ncc_mismatched`` and ``halves_apart_px`` are the trials' evidence figures (the
pairs' edge correlation, that of mismatched pairs, the distance of the halves), what the refusals test.

Empty borders of the moved frames are passed as masks (a real thermal frame has none). Figures go to stdout
as JSON; the timing is per trial, on this machine as it is loaded.

    python benchmarks/bench_register.py [--msrs DIR] [--trials 20] [--pairs 32] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
from figures import emit

from sccosf_ros.metrics.boxes import BoxDir, box_iou, parse_yolo
from sccosf_ros.registration import (
    RegistrationError,
    corner_distance,
    estimate_homography,
)

ROOT = Path(__file__).resolve().parents[1]
HW = (480, 640)


def random_homography(rng: np.random.Generator, hw: tuple[int, int] = HW) -> np.ndarray:
    """Scale 0.9-1.1, rotation +-3 deg and perspective up to 1e-5 /px about the centre, shift +-30 px."""
    h, w = hw
    s, a = rng.uniform(0.9, 1.1), np.deg2rad(rng.uniform(-3.0, 3.0))
    centre = np.array([[1, 0, -(w - 1) / 2], [0, 1, -(h - 1) / 2], [0, 0, 1.0]])
    rot = np.array([[s * np.cos(a), -s * np.sin(a), 0], [s * np.sin(a), s * np.cos(a), 0], [0, 0, 1.0]])
    persp = np.eye(3)
    persp[2, :2] = rng.uniform(-1e-5, 1e-5, 2)
    back = np.array(
        [[1, 0, (w - 1) / 2 + rng.uniform(-30, 30)], [0, 1, (h - 1) / 2 + rng.uniform(-30, 30)], [0, 0, 1]]
    )
    out = back @ persp @ rot @ centre
    return out / out[2, 2]


def load_pairs(msrs: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    pairs = []
    for ir in sorted((msrs / "ir").iterdir()):
        vi = cv2.imread(str(msrs / "vi" / ir.name), cv2.IMREAD_COLOR)
        th = cv2.imread(str(ir), cv2.IMREAD_GRAYSCALE)
        if vi is not None and th is not None:
            pairs.append((cv2.cvtColor(vi, cv2.COLOR_BGR2RGB), th))
    return pairs


def box_offset(msrs: Path) -> dict[str, float] | None:
    """Median centre offset (px) of each visible-frame box from the infrared-frame box of the same object."""
    if not (msrs / "boxes").is_dir():
        return None
    offsets = []
    for name in BoxDir(msrs / "boxes", ("infrared",)).names():
        variants = [msrs / "boxes" / v / f"{name}.txt" for v in ("infrared", "visible")]
        ir, vi = (parse_yolo(f.read_text(), HW[1], HW[0]) if f.is_file() else [] for f in variants)
        for a in ir:
            best = max((b for b in vi if b.cls == a.cls), key=lambda b: box_iou(a, b), default=None)
            if best is not None and box_iou(a, best) > 0.5:
                offsets.append(((best.x0 + best.x1 - a.x0 - a.x1) / 2, (best.y0 + best.y1 - a.y0 - a.y1) / 2))
    if not offsets:
        return None
    dx, dy = np.median(np.array(offsets), axis=0)
    return {"boxes": len(offsets), "dx": round(float(dx), 2), "dy": round(float(dy), 2)}


def shift_at(h: np.ndarray, msrs: Path) -> dict[str, float]:
    """Median shift ``h(p) - p`` over the infrared boxes' centres (where :func:`box_offset` measures)."""
    centres = [
        ((b.x0 + b.x1 - 1) / 2, (b.y0 + b.y1 - 1) / 2)
        for f in sorted((msrs / "boxes" / "infrared").glob("*.txt"))
        for b in parse_yolo(f.read_text(), HW[1], HW[0])
    ] or [((HW[1] - 1) / 2, (HW[0] - 1) / 2)]
    pts = np.array(centres, np.float64)[None]
    dx, dy = np.median(cv2.perspectiveTransform(pts, h)[0] - pts[0], axis=0)
    return {"dx": round(float(dx), 2), "dy": round(float(dy), 2)}


def moved(pairs: list, ht: np.ndarray) -> tuple[list, list]:
    """The thermal frames as a camera displaced by ``ht`` sees them, and where they hold data."""
    inv = np.linalg.inv(ht)
    ones = np.full(HW, 255, np.uint8)
    mask = cv2.warpPerspective(ones, inv, HW[::-1], flags=cv2.INTER_NEAREST)
    return [(rgb, cv2.warpPerspective(th, inv, HW[::-1])) for rgb, th in pairs], [mask] * len(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--msrs", type=Path, default=ROOT.parent / "shared" / "data" / "msrs")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=64, help="pairs per trial (the CLI's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the figures here (JSON)")
    args = parser.parse_args()
    pairs = load_pairs(args.msrs)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    reg0 = estimate_homography(pairs)
    h0 = reg0.homography
    h0_s = time.perf_counter() - t0
    corner, change, same, secs, failures, ncc = [], [], [], [], [], []
    for _ in range(args.trials):
        ht = random_homography(rng)
        picked = [pairs[k] for k in rng.choice(len(pairs), args.pairs, replace=False)]
        frames, masks = moved(picked, ht)
        t = time.perf_counter()
        try:
            reg = estimate_homography(frames, thermal_masks=masks)
        except RegistrationError as exc:
            failures.append(str(exc))
            continue
        secs.append(time.perf_counter() - t)
        h = reg.homography
        ncc.append((reg.similarity, reg.mismatched_similarity, reg.halves_apart_px))
        corner.append(corner_distance(h, ht, HW))
        change.append(corner_distance(np.linalg.inv(h0) @ h, ht, HW))
        try:
            h0_same = estimate_homography(picked).homography
        except RegistrationError:  # the unmoved pairs refused: this trial has no same-scenes figure
            continue
        same.append(corner_distance(np.linalg.inv(h0_same) @ h, ht, HW))

    def stats(v: list[float]) -> dict[str, float]:
        return (
            {
                "median": round(float(np.median(v)), 2),
                "p90": round(float(np.percentile(v, 90)), 2),
                "max": round(float(np.max(v)), 2),
            }
            if v
            else {}
        )

    figures = {
        "pairs_in_folder": len(pairs),
        "trials": args.trials,
        "pairs_per_trial": args.pairs,
        "failures": len(failures),
        "failure_messages": failures[:3],
        "corner_error_px": stats(corner),
        "change_error_px": stats(change),
        "same_scenes_change_px": stats(same),
        "dataset_alignment_h0_corner_px": round(corner_distance(h0, np.eye(3), HW), 2),
        "h0_halves_apart_px": round(reg0.halves_apart_px, 2),
        "h0_shift_of_boxes_px": shift_at(h0, args.msrs),
        "box_offset_px": box_offset(args.msrs),
        "h0_estimate_s": round(h0_s, 1),
        "seconds_per_trial": stats(secs),
        "edge_ncc_pairs": stats([v[0] for v in ncc]),
        "edge_ncc_mismatched": stats([v[1] for v in ncc]),
        "halves_apart_px": stats([v[2] for v in ncc]),
    }
    emit(figures, args.out)


if __name__ == "__main__":
    main()
