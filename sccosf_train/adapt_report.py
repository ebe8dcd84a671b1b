"""What an adaptation changed, measured on pairs it did not train on (``sccosf-adapt``'s report).

Without labels, "better" cannot be measured on a user's rig; what changed can: the share of each class, how
confident the masks are, how many pixels changed class, and the no-reference fusion metrics of the fused
image. With the user's boxes for those pairs, the box score (docs/metrics.md) says whether the masks got
better. Both models run on the same held-out pairs in one run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sccosf_ros.engine import FusionEngine
from sccosf_ros.metrics.boxes import BoxDir, BoxScore
from sccosf_ros.metrics.fusion import FUSION_METRICS, fusion_metrics, to_gray255
from sccosf_train.dataset import find_image, read_thermal, read_visible


def measure(
    engine: FusionEngine, folder: Path, names: Sequence[str], boxes: BoxDir | None
) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Class shares, mean confidence, fusion metrics (and the box score) of ``engine`` on ``names``; also
    the masks, so two models' masks can be compared pixel by pixel."""
    k = engine.num_classes
    pixels = np.zeros(k, np.int64)
    conf_sum, conf_n = 0.0, 0
    rows: list[dict[str, float]] = []
    masks: list[np.ndarray] = []
    score = BoxScore(k) if boxes is not None else None
    for name in names:
        rgb = read_visible(find_image(folder / "vi", name))
        ir = read_thermal(find_image(folder / "ir", name))
        res = engine.infer(rgb, ir, return_probs=True)
        probs = np.asarray(res.probs)
        masks.append(res.mask)
        pixels += np.bincount(res.mask.ravel(), minlength=k)[:k]
        conf_sum += float(probs.max(0).sum())
        conf_n += probs.shape[1] * probs.shape[2]
        rows.append(fusion_metrics(to_gray255(res.fused), to_gray255(ir), to_gray255(rgb)))
        frame_boxes = boxes.boxes(name, rgb.shape[1], rgb.shape[0]) if boxes is not None else None
        if score is not None and frame_boxes is not None:
            score.update(res.mask, frame_boxes)
    share = pixels / max(1, int(pixels.sum()))
    out: dict[str, Any] = {
        "pairs": len(names),
        "class_share": {engine.class_names[i]: float(share[i]) for i in range(k)},
        "mean_confidence": conf_sum / max(1, conf_n),
        "fusion": {m: float(np.nanmean([r[m] for r in rows])) for m in FUSION_METRICS} if rows else {},
    }
    if score is not None and score.frames:
        out["box_score"] = score.result()
    return out, masks


def changed_share(before: Sequence[np.ndarray], after: Sequence[np.ndarray]) -> float:
    """Share of held-out pixels whose class the adaptation changed."""
    total = sum(m.size for m in before)
    diff = sum(int((a != b).sum()) for a, b in zip(before, after, strict=True))
    return diff / total if total else float("nan")


def _fmt(v: float | None, pct: bool = False) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return f"{100 * v:.2f} %" if pct else f"{v:.3f}"


def markdown(report: dict[str, Any]) -> str:
    """The report a user reads: what ran, for how long, and what changed on the held-out pairs."""
    b, a = report["before"], report["after"]
    lines = [
        "# sccosf-adapt report",
        "",
        f"Start model `{report['start']}`; adapted model `{report['adapted']}`.",
        f"{report['pairs']['adapt']} pairs adapted on, {report['pairs']['holdout']} held out for this "
        "report; "
        f"{len(report['rounds'])} self-training round(s) in {report['wall_s'] / 60:.1f} min "
        f"(budget {report['minutes']} min){'; stopped by the budget' if report['stopped_by_time'] else ''}.",
        f"The adapted weights keep {report.get('keep_start', 0.0):.2f} of the start model's "
        "(`--keep-start`).",
        "Resolution floor for small frames (`min_internal_pixels`): "
        f"{report['min_internal_pixels']['start']} -> {report['min_internal_pixels']['adapted']}.",
        f"Held-out pixels whose class changed: {_fmt(report['changed_share'], pct=True)}.",
        "",
        "| on held-out pairs | before | after |",
        "|---|---:|---:|",
        f"| mean confidence | {_fmt(b['mean_confidence'])} | {_fmt(a['mean_confidence'])} |",
    ]
    for name in b["class_share"]:
        lines.append(
            f"| {name} share | {_fmt(b['class_share'][name], True)} | {_fmt(a['class_share'][name], True)} |"
        )
    for m in b["fusion"]:
        lines.append(f"| fusion {m} | {_fmt(b['fusion'][m])} | {_fmt(a['fusion'][m])} |")
    if "box_score" in b and "box_score" in a:
        lines.append(
            f"| box score mean F | {_fmt(b['box_score']['mean_F'])} | {_fmt(a['box_score']['mean_F'])} |"
        )
        for c in b["box_score"]["per_class"]:
            pb, pa = b["box_score"]["per_class"][c], a["box_score"]["per_class"][c]
            lines.append(f"| box F {c} (objects {pb['objects']}) | {_fmt(pb['F'])} | {_fmt(pa['F'])} |")
    lines += ["", "Rounds:", ""]
    for r in report["rounds"]:
        budget = " (budget reached)" if r["stopped_by_time"] else ""
        lines.append(
            f"* round {r['round']}: labels from `{Path(r['teacher']).name}` "
            f"({_fmt(r['labelled_share'], True)} of pixels labelled), {r['epochs']} epoch(s), "
            f"{r['minutes']:.1f} min{budget}"
        )
    return "\n".join(lines) + "\n"
