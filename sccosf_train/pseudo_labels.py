"""Pseudo labels for real pairs from a teacher segmenter *and* the detection boxes (no ROS).

Why both: the teacher (``--teacher``, default MFNet: :mod:`sccosf_train.teachers`) gives dense masks with real
mistakes; the boxes are real human annotations but only rectangles for three classes. Each corrects the other
where it is strong:

1. the teacher's class probabilities, averaged over test-time views (horizontal flip, optional scales);
2. **low confidence -> ignore** (255): a pixel whose top probability is below ``min_conf``;
3. **promote inside boxes**: inside a box of car / person / bike, a pixel the teacher calls background or
   left unsure but gives that class at least ``promote`` probability becomes that class (the box says an
   object is there; the teacher's shape says where);
4. **outside boxes -> ignore**: car / person / bike pixels outside every box of their class (all variants,
   grown by ``box_margin`` pixels) are not trusted: a false positive or an object nobody annotated
   (``outside_box="background"`` takes the boxes as the complete list of objects and makes them background);
5. **missed boxes are not background**: an object (boxes merged as in the box score) whose region the
   labels cover less than ``missed_cover`` is one the teacher missed; its background pixels become ignore,
   not background. Optionally (``box_background="ignore"``) background inside every box is ignored.
6. **the core of a missed box is the object** (``missed_core``, off by default): in such an object, the
   ellipse centred in its (consensus) box with semi-axes ``missed_core`` times the box's half-sizes takes
   the box's class where the labels say background or ignore. A box says an object of that class fills its
   middle; this is the "box interior" weak label of box-supervised segmentation (Khoreva et al., CVPR 2017,
   "Simple Does It"), used only where the teacher found nothing. The rest of the box stays ignored.

Everything else keeps the teacher's class, the five box-less classes included (boxes cannot judge them).
Written as MSRS-like class-id PNGs (``OUT/Label/NAME.png``, uint8, 255 = ignore), optional teacher
probabilities for distillation (``OUT/probs/NAME.npy``, float16 (9, H/4, W/4)), and a per-pair record of
every rule's effect (``OUT/records.json``). Never written into ``../shared``.

``python -m sccosf_train.pseudo_labels --msrs-root ../shared/data/msrs --out runs/pseudo --split train``;
``--compare`` instead scores a table of rule settings on the split with the box score (``docs/training.md``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from sccosf_ros.metrics.boxes import BOX_CLASSES, Box, BoxDir, BoxScore, consensus_box, merge_boxes
from sccosf_ros.report import json_safe
from sccosf_train import teachers
from sccosf_train.augment import IGNORE_INDEX
from sccosf_train.compare_models import markdown_table, split_names
from sccosf_train.dataset import read_thermal, read_visible


@dataclass(frozen=True)
class LabelRules:
    """The settings of the rules in the module docstring (defaults: the setting chosen on training pairs)."""

    min_conf: float = 0.5
    promote: float | None = 0.3  # None: no promotion
    outside_box: str = "ignore"  # or "keep", or "background"
    box_margin: int = 4
    missed_cover: float = 0.25
    missed_box: str = "ignore"  # or "keep" (the teacher's background stays background)
    box_background: str = "keep"  # or "ignore": background inside every box is ignored
    missed_core: float | None = None  # rule 6: ellipse of this relative size in a missed box; None: off
    boxless_min_conf: float | None = None  # a stricter threshold for ids 4-8; None: min_conf

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("outside_box", self.outside_box, ("ignore", "keep", "background")),
            ("missed_box", self.missed_box, ("ignore", "keep")),
            ("box_background", self.box_background, ("keep", "ignore")),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if not 0 <= self.min_conf <= 1 or self.box_margin < 0:
            raise ValueError("min_conf must be in [0, 1] and box_margin >= 0")
        if self.missed_core is not None and not 0 < self.missed_core <= 1:
            raise ValueError(f"missed_core must be in (0, 1] or None, got {self.missed_core}")


def _box_union(shape: tuple[int, int], boxes: Sequence[Box], margin: int = 0) -> np.ndarray:
    h, w = shape
    out = np.zeros(shape, bool)
    for b in boxes:
        out[max(0, b.y0 - margin) : min(h, b.y1 + margin), max(0, b.x0 - margin) : min(w, b.x1 + margin)] = (
            True
        )
    return out


def core_ellipse(shape: tuple[int, int], box: Box, size: float) -> np.ndarray:
    """Pixels (by centre) in the ellipse centred in ``box``, semi-axes ``size`` times the box's half-sizes."""
    h, w = shape
    cx, cy = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2
    ax, ay = max(size * (box.x1 - box.x0) / 2, 0.5), max(size * (box.y1 - box.y0) / 2, 0.5)
    yy, xx = np.ogrid[:h, :w]
    return ((xx + 0.5 - cx) / ax) ** 2 + ((yy + 0.5 - cy) / ay) ** 2 <= 1.0


def make_labels(
    probs: np.ndarray, boxes: Sequence[Box], rules: LabelRules = LabelRules()
) -> tuple[np.ndarray, dict[str, Any]]:
    """Class-id labels (H, W) uint8 with 255 = ignore from teacher probabilities (K, H, W) and the frame's
    boxes (MSRS ids, pixels of this size), and a record of what each rule did (pixel and object counts)."""
    probs = np.asarray(probs, np.float32)
    if probs.ndim != 3:
        raise ValueError(f"probs must be (K, H, W), got {probs.shape}")
    k = probs.shape[0]
    shape = probs.shape[1:]
    label = probs.argmax(0).astype(np.uint8)
    conf = probs.max(0)
    rec: dict[str, Any] = {}
    low = conf < rules.min_conf
    if rules.boxless_min_conf is not None:
        boxless = (label >= 4) & (label < k)
        low |= boxless & (conf < rules.boxless_min_conf)
    rec["low_conf"] = int(low.sum())
    label[low] = IGNORE_INDEX
    promoted = outside = missed_px = box_bg = core_px = 0
    objects = missed = 0
    for c in BOX_CLASSES:
        mine = [b for b in boxes if b.cls == c]
        inside = _box_union(shape, mine)
        if rules.promote is not None and mine:
            up = inside & (probs[c] >= rules.promote) & ((label == 0) | (label == IGNORE_INDEX))
            promoted += int(up.sum())
            label[up] = c
        if rules.outside_box != "keep":
            out = (label == c) & ~_box_union(shape, mine, rules.box_margin)
            outside += int(out.sum())
            label[out] = IGNORE_INDEX if rules.outside_box == "ignore" else 0
        for group in merge_boxes(mine):
            objects += 1
            region = _box_union(shape, group)
            cover = float((label[region] == c).mean())
            if cover < rules.missed_cover:
                missed += 1
                if rules.missed_box == "ignore":
                    bg = region & (label == 0)
                    missed_px += int(bg.sum())
                    label[bg] = IGNORE_INDEX
                if rules.missed_core is not None:
                    core = core_ellipse(shape, consensus_box(group), rules.missed_core) & region
                    core &= (label == 0) | (label == IGNORE_INDEX)
                    core_px += int(core.sum())
                    label[core] = c
        if rules.box_background == "ignore":
            bg = inside & (label == 0)
            box_bg += int(bg.sum())
            label[bg] = IGNORE_INDEX
    rec.update(
        promoted=promoted,
        outside_box=outside,
        missed_box_background=missed_px,
        box_background=box_bg,
        missed_core=core_px,
        objects=objects,
        objects_missed_by_teacher=missed,
        ignored=int((label == IGNORE_INDEX).sum()),
        pixels=int(label.size),
        class_pixels={int(i): int(n) for i, n in enumerate(np.bincount(label[label < k], minlength=k))},
    )
    return label, rec


# ------------------------------------------------------------------------------------------ teacher views
SCALES_DEFAULT = (1.0,)


def _pairs(root: Path, names: Sequence[str], progress: bool) -> Any:
    """``(index, name, rgb, thermal)`` of the split, with a progress bar on stderr."""
    for i, n in enumerate(tqdm(names, unit="pair", disable=not progress, leave=False)):
        yield i, n, read_visible(root / "vi" / f"{n}.png"), read_thermal(root / "ir" / f"{n}.png")


def save_probs(path: Path, probs: np.ndarray, factor: int) -> None:
    """float16 (K, H/f, W/f) area-averaged teacher probabilities: ~0.35 MB a 480x640 pair at f = 4."""
    k, h, w = probs.shape
    small = cv2.resize(probs.transpose(1, 2, 0), (w // factor, h // factor), interpolation=cv2.INTER_AREA)
    np.save(path, small.reshape(h // factor, w // factor, k).transpose(2, 0, 1).astype(np.float16))


# ---------------------------------------------------------------------------------------------- running


def _check_out(out: Path, root: Path) -> None:
    shared = root.resolve()
    o = out.resolve()
    if o == shared or shared in o.parents:
        raise SystemExit(f"--out {out} lies inside the data folder {root}: write pseudo labels elsewhere")


# The table of ``--compare``: (name, flip, scales, rules); "teacher" rows are the plain argmax.
COMPARE: list[tuple[str, bool, tuple[float, ...], LabelRules | None]] = [
    ("teacher argmax (no TTA)", False, (1.0,), None),
    ("teacher argmax, flip", True, (1.0,), None),
    ("teacher argmax, flip + scales 0.75/1/1.25", True, (0.75, 1.0, 1.25), None),
    ("conf 0.5 only", True, (1.0,), LabelRules(promote=None, outside_box="keep", missed_box="keep")),
    ("+ outside boxes ignored", True, (1.0,), LabelRules(promote=None, missed_box="keep")),
    ("+ missed boxes' background ignored", True, (1.0,), LabelRules(promote=None)),
    ("+ promote 0.3 in boxes (default)", True, (1.0,), LabelRules()),
    ("default, promote 0.2", True, (1.0,), LabelRules(promote=0.2)),
    ("default, promote 0.4", True, (1.0,), LabelRules(promote=0.4)),
    ("default, conf 0.7", True, (1.0,), LabelRules(min_conf=0.7)),
    ("default, conf 0.3", True, (1.0,), LabelRules(min_conf=0.3)),
    ("default, margin 0", True, (1.0,), LabelRules(box_margin=0)),
    ("default, margin 12", True, (1.0,), LabelRules(box_margin=12)),
    ("default, all box background ignored", True, (1.0,), LabelRules(box_background="ignore")),
    ("default, scales 0.75/1/1.25", True, (0.75, 1.0, 1.25), LabelRules()),
    ("default + core 0.6 of missed boxes", True, (1.0,), LabelRules(missed_core=0.6)),
]


def compare(args: argparse.Namespace) -> dict[str, Any]:
    """Score every row of :data:`COMPARE` on the split with the box score, teacher run once per pair."""
    root = Path(args.msrs_root)
    names = split_names(root, args.split)
    boxes = BoxDir(args.boxes or root / "boxes")
    teacher = teachers.load_teacher(args.teacher, args.teacher_weights)
    scales = sorted({s for _, _, sc, _ in COMPARE for s in sc})
    scores = {name: BoxScore() for name, *_ in COMPARE}
    ignored = dict.fromkeys(scores, 0)
    pixels = 0
    t0 = time.perf_counter()
    for _, n, rgb, ir in _pairs(root, names, args.progress):
        views = teachers.view_probs(teacher, rgb, ir, True, scales)
        frame_boxes = boxes.boxes(n, rgb.shape[1], rgb.shape[0]) or []
        pixels += rgb.shape[0] * rgb.shape[1]
        for name, flip, sc, rules in COMPARE:
            p = teachers.average_views(views, flip, sc)
            label = p.argmax(0).astype(np.uint8) if rules is None else make_labels(p, frame_boxes, rules)[0]
            scores[name].update(label, frame_boxes)
            ignored[name] += int((label == IGNORE_INDEX).sum())
    results = {}
    for name, flip, sc, rules in COMPARE:
        r = scores[name].result()
        r["ignored_share"] = ignored[name] / pixels if pixels else float("nan")
        r["flip"], r["scales"] = flip, list(sc)
        r["rules"] = asdict(rules) if rules is not None else None
        results[name] = r
    return {
        "split": args.split,
        "pairs": len(names),
        "wall_s": time.perf_counter() - t0,
        "results": results,
    }


def compare_markdown(report: Mapping[str, Any]) -> str:
    res = report["results"]
    lines = [
        f"# Pseudo-label rule settings, box score on {report['pairs']} `{report['split']}` pairs",
        "",
        "Precision is close to 1 by construction once car/person/bike pixels outside boxes are ignored (the "
        "boxes made the labels); hit rate, fill and the ignored share are the informative columns there.",
        "",
        "| setting | car P / H / fill | person P / H / fill | bike P / H / fill | mean F | ignored "
        "| box-less |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for name, r in res.items():
        cells = []
        for c in ("car", "person", "bike"):
            v = r["per_class"][c]
            cells.append(f"{v['precision']:.3f} / {v['hit_rate']:.3f} / {v['fill']:.3f}")
        lines.append(
            f"| {name} | {' | '.join(cells)} | {r['mean_F']:.3f} | {100 * r['ignored_share']:.1f} % | "
            f"{100 * r['boxless_share']:.2f} % |"
        )
    lines += ["", f"Wall time {report['wall_s']:.0f} s.", ""]
    return "\n".join(lines)


def generate(args: argparse.Namespace, rules: LabelRules) -> dict[str, Any]:
    """Write OUT/Label/NAME.png (+ probs, records) for the split; returns the summary."""
    root = Path(args.msrs_root)
    out = Path(args.out)
    _check_out(out, root)
    names = split_names(root, args.split)
    boxes = BoxDir(args.boxes or root / "boxes")
    teacher = teachers.load_teacher(args.teacher, args.teacher_weights)
    (out / "Label").mkdir(parents=True, exist_ok=True)
    if args.probs_factor:
        (out / "probs").mkdir(exist_ok=True)
    score, teacher_score = BoxScore(), BoxScore()
    records = []
    t0 = time.perf_counter()
    for _, n, rgb, ir in _pairs(root, names, args.progress):
        p = teachers.predict_probs(teacher, rgb, ir, args.flip, args.scales)
        frame_boxes = boxes.boxes(n, rgb.shape[1], rgb.shape[0])
        rec: dict[str, Any] = {"name": n, "box_file": frame_boxes is not None}
        label, made = make_labels(p, frame_boxes or [], rules)
        rec.update(made)
        if not cv2.imwrite(str(out / "Label" / f"{n}.png"), label):
            raise OSError(f"cannot write {out / 'Label' / f'{n}.png'}")
        if args.probs_factor:
            save_probs(out / "probs" / f"{n}.npy", p, args.probs_factor)
        if frame_boxes is not None:
            rec["box_score"] = score.update(label, frame_boxes)
            teacher_score.update(p.argmax(0).astype(np.uint8), frame_boxes)
        records.append(rec)
    wall = time.perf_counter() - t0
    ignored = sum(r["ignored"] for r in records)
    pixels = sum(r["pixels"] for r in records)
    summary = {
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "msrs_root": str(root),
        "boxes": str(boxes.root),
        "split": args.split,
        "pairs": len(names),
        "teacher": teacher.weights,
        "tta": {"flip": args.flip, "scales": list(args.scales)},
        "rules": asdict(rules),
        "layout": {
            "labels": "Label/NAME.png uint8 class ids, 255 = ignore",
            "probs": f"probs/NAME.npy float16 (9, H/{args.probs_factor}, W/{args.probs_factor})"
            if args.probs_factor
            else None,
        },
        "wall_s": wall,
        "ignored_share": ignored / pixels if pixels else None,
        "box_score_labels": score.result(),
        "box_score_teacher_argmax": teacher_score.result(),
        "records": records,
    }
    (out / "records.json").write_text(json.dumps(json_safe(summary), indent=1))
    md = [
        f"# Pseudo labels: {len(names)} `{args.split}` pairs",
        "",
        f"Teacher {teacher.title} (flip {args.flip}, scales {list(args.scales)}), rules `{asdict(rules)}`; "
        f"{wall:.0f} s; ignored {100 * summary['ignored_share']:.1f} % of pixels.",
        "",
        markdown_table(
            {"labels": summary["box_score_labels"], "teacher argmax": summary["box_score_teacher_argmax"]}
        ),
        "",
    ]
    (out / "summary.md").write_text("\n".join(md))
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sccosf_train.pseudo_labels", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    d = LabelRules()
    p.add_argument("--msrs-root", required=True, help="MSRS layout folder (ir/, vi/, seafusion/, boxes/)")
    p.add_argument("--out", help="output folder (Label/, probs/, records.json, summary.md)")
    p.add_argument("--boxes", help="box folder; default MSRS_ROOT/boxes")
    p.add_argument(
        "--split", default="train", help="train (default: all pairs not in seafusion/), val, all, file"
    )
    teachers.add_arguments(p)
    p.add_argument("--no-flip", dest="flip", action="store_false", help="no horizontal-flip test-time view")
    p.add_argument("--scales", type=float, nargs="+", default=list(SCALES_DEFAULT), help="test-time scales")
    p.add_argument("--min-conf", type=float, default=d.min_conf)
    p.add_argument("--promote", type=float, default=d.promote, help="negative: no promotion inside boxes")
    p.add_argument("--outside-box", choices=("ignore", "keep", "background"), default=d.outside_box)
    p.add_argument("--box-margin", type=int, default=d.box_margin)
    p.add_argument("--missed-cover", type=float, default=d.missed_cover)
    p.add_argument("--missed-box", choices=("ignore", "keep"), default=d.missed_box)
    p.add_argument("--box-background", choices=("keep", "ignore"), default=d.box_background)
    p.add_argument("--boxless-min-conf", type=float, default=None)
    p.add_argument(
        "--missed-core",
        type=float,
        default=None,
        help="label the core ellipse (relative size) of missed boxes",
    )
    p.add_argument("--probs-factor", type=int, default=4, help="teacher probs downscale; 0: do not save them")
    p.add_argument("--compare", action="store_true", help="score the built-in rule table instead (no labels)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def rules_from_args(args: argparse.Namespace) -> LabelRules:
    return replace(
        LabelRules(),
        min_conf=args.min_conf,
        promote=None if args.promote is None or args.promote < 0 else args.promote,
        outside_box=args.outside_box,
        box_margin=args.box_margin,
        missed_cover=args.missed_cover,
        missed_box=args.missed_box,
        box_background=args.box_background,
        boxless_min_conf=args.boxless_min_conf,
        missed_core=args.missed_core,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.compare:
        report = compare(args)
        text = compare_markdown(report)
        if args.out:
            out = Path(args.out)
            _check_out(out, Path(args.msrs_root))
            out.mkdir(parents=True, exist_ok=True)
            (out / "compare.json").write_text(json.dumps(json_safe(report), indent=1))
            (out / "compare.md").write_text(text)
        print(text)
        return 0
    if not args.out:
        print("pseudo_labels: --out is required (unless --compare)", file=sys.stderr)
        return 2
    summary = generate(args, rules_from_args(args))
    print((Path(args.out) / "summary.md").read_text())
    print(f"wrote {summary['pairs']} label PNGs to {Path(args.out) / 'Label'} in {summary['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
