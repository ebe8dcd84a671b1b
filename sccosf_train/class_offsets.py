"""Per-class logit offsets of the segmentation head, chosen on held-out pairs of one or more camera rigs.

``python -m sccosf_train.class_offsets SRC.safetensors OUT.safetensors --msrs-root ../shared/data/msrs
--split config/msrs_dev_split.txt --cross-rig ../shared/data/roadscene --cross-rig-split
config/roadscene_dev.txt``

Why: a segmenter trained with class weights and pseudo labels on one rig is not calibrated on another: on
RoadScene's dev frames the shipped model found too few of the small, distant people, and on MSRS its bike
recall fell after the second rig was added. A constant added to one class's logits moves the decision
between that class and the others everywhere at once (the background's threshold, in effect); chosen on
held-out pairs of *both* rigs it trades recall and precision per class where one rig alone would overfit
it. Unlike :mod:`sccosf_train.calibrate` (one ``alpha`` along the training class weights), every scored class
gets its own offset from a grid, all combinations tried (a few minutes for 125 combinations on 44 frames).

The score of a set is the box score's F (docs/metrics.md) averaged over the scored classes that have at
least :data:`MIN_OBJECTS` objects in it (RoadScene's dev frames hold almost no bicycle); the objective is
the mean over the sets. Ties go to the smaller total offset. The offsets are folded into the bias of the
layer that produces the logits (:func:`sccosf_train.calibrate.logit_bias_key`), so the network, the ONNX
export and the engine are unchanged and the fused image is untouched; the choice, the sets and the best
rows of the search are recorded in the checkpoint's ``training.calibration``.
"""

from __future__ import annotations

import argparse
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sccosf_ros.checkpoint import load_checkpoint, save_checkpoint
from sccosf_ros.engine import FusionEngine
from sccosf_ros.metrics.boxes import BOX_CLASSES, Box, BoxDir, BoxScore
from sccosf_train.calibrate import logit_bias_key, real_logits
from sccosf_train.dataset import read_split_file

OFFSET_GRID = (0.0, 0.5, 1.0, 1.5, 2.0)
MIN_OBJECTS = 10
"""A class with fewer objects than this in a set is not scored there (its F is noise)."""
ROWS_KEPT = 10


@dataclass
class DevSet:
    """Held-out pairs of one rig: their log class probabilities and boxes."""

    label: str
    samples: list[tuple[torch.Tensor, list[Box]]]
    source: dict[str, Any]


def set_score(dev: DevSet, shift: torch.Tensor, num_classes: int, classes: Sequence[int]) -> dict[str, Any]:
    """Box F per scored class of ``dev`` with ``shift`` added to the logits, and their mean over the
    classes with at least :data:`MIN_OBJECTS` objects."""
    score = BoxScore(num_classes)
    for logits, boxes in dev.samples:
        score.update((logits + shift[:, None, None]).argmax(0).to(torch.uint8).numpy(), boxes)
    per_class = score.result()["per_class"]
    rows = {BOX_CLASSES[c]: per_class[BOX_CLASSES[c]] for c in classes}
    counted = [r["F"] for r in rows.values() if r["objects"] >= MIN_OBJECTS]
    return {
        "F": {name: round(r["F"], 4) for name, r in rows.items()},
        "mean": float(np.mean(counted)) if counted else math.nan,
    }


def search_offsets(
    sets: Sequence[DevSet], classes: Sequence[int], grid: Sequence[float], num_classes: int
) -> list[dict[str, Any]]:
    """Every combination of ``grid`` values for ``classes``, scored on every set; best first."""
    rows = []
    for combo in itertools.product(grid, repeat=len(classes)):
        shift = torch.zeros(num_classes)
        shift[list(classes)] = torch.tensor(combo, dtype=torch.float32)
        per_set = {dev.label: set_score(dev, shift, num_classes, classes) for dev in sets}
        objective = float(np.mean([s["mean"] for s in per_set.values()]))
        offsets = {BOX_CLASSES[c]: float(v) for c, v in zip(classes, combo, strict=True)}
        rows.append({"offsets": offsets, "objective": objective, "sets": per_set})
    return sorted(rows, key=lambda r: (-round(r["objective"], 6), sum(r["offsets"].values())))


def _dev_sets(engine: FusionEngine, args: argparse.Namespace) -> list[DevSet]:
    msrs = Path(args.msrs_root)
    sets = [
        DevSet(
            "msrs",
            real_logits(engine, str(msrs), read_split_file(args.split), BoxDir(msrs / "boxes")),
            {"root": str(msrs), "split": str(args.split)},
        )
    ]
    if args.cross_rig:
        rig = Path(args.cross_rig)
        ignore = rig / "ignore"
        boxes = BoxDir(rig / "boxes", ignore=ignore if ignore.is_dir() else None)
        samples = real_logits(engine, str(rig), read_split_file(args.cross_rig_split), boxes)
        sets.append(DevSet(rig.name, samples, {"root": str(rig), "split": str(args.cross_rig_split)}))
    for dev in sets:
        dev.source["frames"] = len(dev.samples)
        if not dev.samples:
            raise SystemExit(f"{dev.source['root']}: no pair of {dev.source['split']} has a box file")
    return sets


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", help="checkpoint to adjust")
    p.add_argument("dst", help="adjusted checkpoint to write")
    p.add_argument("--msrs-root", required=True, help="MSRS-layout folder (vi/, ir/, boxes/)")
    p.add_argument("--split", required=True, help="its pairs held out of training (never the test pairs)")
    p.add_argument("--cross-rig", help="a second rig's folder (vi/, ir/, boxes/ NAME.txt, optional ignore/)")
    p.add_argument("--cross-rig-split", help="its frames held out of training (never its test frames)")
    p.add_argument("--classes", nargs="+", default=list(BOX_CLASSES.values()), help="classes to offset")
    p.add_argument("--grid", type=float, nargs="+", default=OFFSET_GRID, help="offsets tried per class")
    p.add_argument("--threads", type=int, default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    if bool(args.cross_rig) != bool(args.cross_rig_split):
        p.error("--cross-rig and --cross-rig-split go together")
    names = {v: k for k, v in BOX_CLASSES.items()}
    unknown = [c for c in args.classes if c not in names]
    if unknown:
        p.error(f"unknown classes {unknown}; the box-scored classes are {list(names)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    state, meta = load_checkpoint(args.src)
    if "calibration" in meta.training:
        raise SystemExit(f"{args.src} is already calibrated ({meta.training['calibration']['method']})")
    classes = [names[c] for c in args.classes]
    with FusionEngine(args.src, device="cpu") as engine:
        sets = _dev_sets(engine, args)
    rows = search_offsets(sets, classes, args.grid, meta.num_classes)
    best = rows[0]
    zero = next(r for r in rows if not any(r["offsets"].values()))
    key = logit_bias_key(state)
    shift = torch.zeros(meta.num_classes, dtype=torch.float64)
    for name, value in best["offsets"].items():
        shift[names[name]] = value
    state[key] = (state[key].double() + shift).to(state[key].dtype)
    meta.training = {
        **meta.training,
        "calibration": {
            "method": "per-class logit offsets chosen on held-out pairs (sccosf_train.class_offsets)",
            "offsets": best["offsets"],
            "bias": key,
            "objective": "mean over the sets of the box F averaged over classes with "
            f">= {MIN_OBJECTS} objects",
            "sets": [dev.source for dev in sets],
            "grid": list(args.grid),
            "without_offsets": zero,
            "best_rows": rows[:ROWS_KEPT],
            "source": str(args.src),
        },
    }
    save_checkpoint(args.dst, state, meta)
    for label, row in (("without offsets", zero), ("chosen", best)):
        sets_txt = "; ".join(f"{k}: mean {v['mean']:.3f} {v['F']}" for k, v in row["sets"].items())
        print(f"{label}: {row['offsets']} objective {row['objective']:.4f} ({sets_txt})")
    print(f"wrote {args.dst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
