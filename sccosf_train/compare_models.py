"""Box score of SC-CoSF checkpoints and of a teacher (default MFNet) on MSRS pairs, in one run (no ROS).

``python -m sccosf_train.compare_models --msrs-root ../shared/data/msrs --out runs/box_score`` scores the
shipped model (or ``--checkpoint`` files) and the teacher (``--teacher``, default MFNet) on the 61 validation
pairs (the pairs with a SeAFusion output, never trained on) against the MSRS detection boxes, and writes
``box_score.json`` and ``box_score.md``. Definition of the score: ``docs/metrics.md`` ("Box score"). Scoring
every model in the same run on the same pairs keeps the comparison fair (same boxes, same pairs, same code).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from sccosf_ros.metrics.boxes import BoxDir, BoxScore
from sccosf_ros.report import json_safe
from sccosf_train import teachers
from sccosf_train.dataset import find_image, read_split_file, read_thermal, read_visible, seafusion_split

MaskFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def split_names(root: Path, split: str) -> list[str]:
    """``val`` (SeAFusion names), ``train`` (the others), ``all``, or a file of names."""
    if split in ("train", "val"):
        train, val = seafusion_split(root)
        return train if split == "train" else val
    if split == "all":
        return sorted(p.stem for p in (root / "ir").iterdir() if p.is_file())
    return read_split_file(split)


def score_masks(
    masks: Iterable[tuple[str, np.ndarray]], boxes: BoxDir, **score_kw: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Box score of ``(name, mask)`` pairs; names without a box file are skipped and listed."""
    score = BoxScore(**score_kw)
    frames, unannotated = [], []
    for name, mask in masks:
        frame_boxes = boxes.boxes(name, mask.shape[1], mask.shape[0])
        if frame_boxes is None:
            unannotated.append(name)
            continue
        frames.append({"name": name, **score.update(mask, frame_boxes)})
    result = score.result()
    result["unannotated"] = unannotated
    return result, frames


def _pct(v: float | None) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{100 * v:.1f} %"


def num_cell(v: float | None) -> str:
    """A table cell: three decimals, or a dash for a missing or undefined value."""
    return "–" if v is None or not math.isfinite(v) else f"{v:.3f}"


def markdown_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per model: F per class, mean F, box-less share, fill; then P / H / fill per class."""
    classes = list(next(iter(results.values()))["per_class"])
    head = ["model", *(f"{c} F" for c in classes), "mean F", "box-less share", "fill"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for label, r in results.items():
        pc = r["per_class"]
        cells = [label, *(num_cell(pc[c]["F"]) for c in classes), f"**{num_cell(r['mean_F'])}**"]
        lines.append("| " + " | ".join([*cells, _pct(r["boxless_share"]), num_cell(r["fill"])]) + " |")
    lines += [
        "",
        "| model | class | precision | hit rate | F | fill | objects | hits |",
        "|---|---|" + "---:|" * 6,
    ]
    for label, r in results.items():
        for c, v in r["per_class"].items():
            lines.append(
                f"| {label} | {c} | {num_cell(v['precision'])} | {num_cell(v['hit_rate'])} | "
                f"{num_cell(v['F'])} | {num_cell(v['fill'])} | {v['objects']} | {v['hits']} |"
            )
    return "\n".join(lines)


def sccosf_masker(checkpoint: str | None, threads: int | None) -> tuple[str, MaskFn, str]:
    from sccosf_ros.engine import FusionEngine

    engine = FusionEngine(checkpoint, device="cpu", num_threads=threads)
    return (
        f"SC-CoSF `{engine.checkpoint.name}`",
        lambda rgb, ir: engine.infer(rgb, ir).mask,
        str(engine.checkpoint),
    )


def teacher_masker(name: str, weights: str | None, flip: bool) -> tuple[str, MaskFn, str]:
    teacher = teachers.load_teacher(name, weights)

    def run(rgb: np.ndarray, ir: np.ndarray) -> np.ndarray:
        return teachers.predict_mask(teacher, rgb, ir, flip)

    label = f"{teacher.title} (teacher)" + (" + flip" if flip else "")
    return label, run, teacher.weights


def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(args.msrs_root)
    names = split_names(root, args.split)
    boxes = BoxDir(args.boxes or root / "boxes", ignore=args.box_ignore)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    makers: list[Callable[[], tuple[str, MaskFn, str]]] = [
        (lambda c=c: sccosf_masker(c, args.threads)) for c in (args.checkpoint or [None])
    ]
    if not args.no_teacher:
        makers.append(lambda: teacher_masker(args.teacher, args.teacher_weights, False))
        if args.teacher_flip:
            makers.append(lambda: teacher_masker(args.teacher, args.teacher_weights, True))
    models = [make() for make in makers]
    masks: dict[str, list[tuple[str, np.ndarray]]] = {label: [] for label, _, _ in models}
    seconds = dict.fromkeys(masks, 0.0)
    t_all = time.perf_counter()
    for name in tqdm(names, unit="pair", disable=not args.progress, leave=False):
        rgb, ir = read_visible(find_image(root / "vi", name)), read_thermal(find_image(root / "ir", name))
        for label, fn, _ in models:
            t0 = time.perf_counter()
            masks[label].append((name, np.asarray(fn(rgb, ir))))
            seconds[label] += time.perf_counter() - t0
    results, frames = {}, {}
    for label, _, _ in models:
        results[label], frames[label] = score_masks(masks[label], boxes, object_box=args.object_box)
    report = {
        "title": f"Box score on {root.name} pairs",
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "msrs_root": str(root),
        "boxes": str(boxes.root),
        "box_variants": boxes.variants,
        "split": args.split,
        "pairs": len(names),
        "models": {label: {"source": src, "seconds": seconds[label]} for label, _, src in models},
        "wall_s": time.perf_counter() - t_all,
        "results": results,
        "per_frame": frames,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "box_score.json").write_text(json.dumps(json_safe(report), indent=1))
    dont_care = f", don't-care boxes `{args.box_ignore}`" if args.box_ignore else ""
    md = [
        f"# {report['title']}",
        "",
        f"{len(names)} pairs (`{args.split}`) of `{root}`, boxes `{boxes.root}` "
        f"({', '.join(v or 'NAME.txt' for v in boxes.variants)})"
        f"{dont_care}; "
        f"object region: {args.object_box}; definition in docs/metrics.md. "
        f"Generated {report['generated']}.",
        "",
        markdown_table(results),
        "",
        "Seconds per model (whole split, CPU): "
        + ", ".join(f"{k} {v['seconds']:.1f}" for k, v in report["models"].items()),
        "",
    ]
    (out / "box_score.md").write_text("\n".join(md))
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sccosf_train.compare_models", description=__doc__)
    p.add_argument("--msrs-root", required=True, help="MSRS layout folder (ir/, vi/, seafusion/, boxes/)")
    p.add_argument("--out", required=True, help="folder for box_score.json and box_score.md")
    p.add_argument(
        "--boxes", help="box folder (fusion/, infrared/, visible/ or NAME.txt); default ROOT/boxes"
    )
    p.add_argument("--box-ignore", help="don't-care boxes NAME.txt (objects cut by the frame edge)")
    p.add_argument("--split", default="val", help="val (default), train, all, or a file of names")
    p.add_argument("--checkpoint", action="append", help="SC-CoSF checkpoint(s); default the shipped model")
    teachers.add_arguments(p)
    p.add_argument("--no-teacher", action="store_true", help="score the SC-CoSF checkpoints only")
    p.add_argument(
        "--teacher-flip", action="store_true", help="also score the teacher with a horizontal-flip TTA"
    )
    p.add_argument("--object-box", default="union", choices=("union", "mean", "max"))
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    report = run(args)
    print((Path(args.out) / "box_score.md").read_text())
    print(f"wall {report['wall_s']:.1f} s; wrote {args.out}/box_score.json and box_score.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
