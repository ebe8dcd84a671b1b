"""The model card's cross-rig section: the checkpoint on another camera rig's frames it never trained on.

Why: users run the package on *their* cameras. A second rig (RoadScene: FLIR ADAS frames, another thermal
core, another visible camera, smaller objects) with its own detection boxes shows whether the segmentation
holds away from the rig it learned from. In one run, on the same frames: the checkpoint's box score and a
teacher's (``--teacher``), the fused image against the per-pixel maximum (no published fused images exist
for that rig), and contact sheets of night and day frames with the boxes drawn in.

Frames are told apart as night or day by the mean luminance of the visible image's top third, where the
sky is (RoadScene's names do not say): below :data:`NIGHT_SKY_LUMA` of 255 is night. The whole frame's mean
does not separate them: RoadScene's visible frames are tone-mapped, and street lights and headlights lift a
night frame's mean to that of a day frame (night 88-154, day 98-185 on RoadScene's test frames; the top
third: night 63-139, day 154-218).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sccosf_ros.engine import FusionEngine
from sccosf_ros.metrics.boxes import BoxDir
from sccosf_ros.metrics.fusion import FUSION_METRICS, fusion_metrics, to_gray255
from sccosf_ros.report import ContactSheet
from sccosf_train import teachers
from sccosf_train.compare_models import markdown_table, score_masks
from sccosf_train.dataset import find_image, read_thermal, read_visible
from sccosf_train.figures import mask_picture, max_baseline

NIGHT_SKY_LUMA = 145.0
SCORED = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf")
ROWS = ["visible", "infrared", "SC-CoSF (ours)", "mask and boxes"]


def is_night_frame(gray_visible: np.ndarray) -> bool:
    """Whether the sky (the frame's top third) is dark: grey 0-255 below :data:`NIGHT_SKY_LUMA`."""
    return float(gray_visible[: max(1, gray_visible.shape[0] // 3)].mean()) < NIGHT_SKY_LUMA


def score_cross_rig(
    engine: FusionEngine,
    root: Path,
    names: Sequence[str],
    boxes: BoxDir,
    teacher: str | None,
    teacher_weights: str | None,
    out: Path,
) -> dict[str, Any]:
    """Box score (model and teacher), fusion against the maximum, and the night/day sheets (to ``out``)."""
    night, day = ContactSheet(ROWS), ContactSheet(ROWS)
    masks: list[tuple[str, np.ndarray]] = []
    rows: dict[str, list[dict[str, float]]] = {"ours": [], "max": []}
    frames = {"night": 0, "day": 0}
    for name in names:
        rgb = read_visible(find_image(root / "vi", name))
        ir = read_thermal(find_image(root / "ir", name))
        res = engine.infer(rgb, ir)
        masks.append((name, res.mask))
        g_ir, g_vi = to_gray255(ir), to_gray255(rgb)
        rows["ours"].append(fusion_metrics(to_gray255(res.fused), g_ir, g_vi))
        rows["max"].append(fusion_metrics(to_gray255(max_baseline(rgb, ir)), g_ir, g_vi))
        is_night = is_night_frame(g_vi)
        frames["night" if is_night else "day"] += 1
        frame_boxes = boxes.boxes(name, rgb.shape[1], rgb.shape[0])
        picture = mask_picture(res.fused, res.mask, engine.palette, frame_boxes)
        images = {"visible": rgb, "infrared": ir, "SC-CoSF (ours)": res.fused, "mask and boxes": picture}
        (night if is_night else day).add(name, images)
    results = {"SC-CoSF (this model)": score_masks(masks, boxes)[0]}
    if teacher is not None:
        t = teachers.load_teacher(teacher, teacher_weights)
        theirs = [
            (
                n,
                teachers.predict_mask(
                    t, read_visible(find_image(root / "vi", n)), read_thermal(find_image(root / "ir", n))
                ),
            )
            for n in names
        ]
        results[f"{t.title} (teacher, {t.citation})"] = score_masks(theirs, boxes)[0]
    means = {k: {m: float(np.nanmean([r[m] for r in v])) for m in FUSION_METRICS} for k, v in rows.items()}
    night.save(out / "cross_rig_night_contact_sheet.png")
    day.save(out / "cross_rig_day_contact_sheet.png")
    return {
        "root": str(root),
        "frames": len(names),
        "night_day": frames,
        "boxes": str(boxes.root),
        "dont_care": str(boxes.ignore) if boxes.ignore else None,
        "box_score": results,
        "fusion": {
            "means": means,
            "wins_vs_max": [m for m in SCORED if means["ours"][m] > means["max"][m]],
            "pairs_won_vs_max": {
                m: int(sum(o[m] > r[m] for o, r in zip(rows["ours"], rows["max"], strict=True)))
                for m in FUSION_METRICS
            },
        },
    }


def cross_rig_markdown(section: dict[str, Any]) -> str:
    f = section["fusion"]
    lines = [
        f"Cross-rig: {section['frames']} frames of `{section['root']}` ({section['night_day']['day']} day, "
        f"{section['night_day']['night']} night) that no training step saw; boxes `{section['boxes']}`"
        + (f", don't-care regions `{section['dont_care']}`" if section["dont_care"] else "")
        + ".",
        "",
        markdown_table(section["box_score"]),
        "",
        "| fused image | " + " | ".join(FUSION_METRICS) + " |",
        "|---|" + "---|" * len(FUSION_METRICS),
    ]
    for key, label in (("ours", "SC-CoSF (ours)"), ("max", "max(Y_vis, IR) baseline")):
        lines.append(f"| {label} | " + " | ".join(f"{f['means'][key][m]:.3f}" for m in FUSION_METRICS) + " |")
    won = " | ".join(f"{f['pairs_won_vs_max'][m]}/{section['frames']}" for m in FUSION_METRICS)
    lines += [
        f"| frames where ours > max | {won} |",
        "",
        f"Wins against the max baseline ({len(f['wins_vs_max'])}/{len(SCORED)}): "
        f"{', '.join(f['wins_vs_max']) or '-'}.",
        "",
    ]
    return "\n".join(lines)
