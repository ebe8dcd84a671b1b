"""Figures for a checkpoint's model card: fusion against SeAFusion and a trivial baseline, synthetic mIoU.

``python -m sccosf_train.model_card --checkpoint CKPT --msrs-root ../shared/data/msrs --out DIR`` scores,
on the MSRS pairs that have a SeAFusion output (the held-out validation split), three fused images with the
project's metrics (:mod:`sccosf_ros.metrics.fusion`, one convention for all three):

* the checkpoint's fused image (the engine's output, exactly what the node publishes);
* SeAFusion's published output (Tang et al., Information Fusion 82, 2022);
* the trivial baseline: per-pixel maximum of visible luminance and infrared, visible chroma kept.

It scores segmentation on the same real pairs with the box score (:mod:`sccosf_ros.metrics.boxes`, against the
public MSRS detection boxes), next to a teacher's masks in the same run (``--teacher``, default MFNet;
``--no-teacher`` to skip it), and on held-out synthetic scenes (seeds the trainer never uses); and draws a
comparison sheet and contact sheets of real night and day pairs with their masks over the fused image and the
boxes drawn in. Writes ``model_card.json`` (summaries; per-pair values only as the pair counts the card
shows), ``model_card.md`` and the PNGs to DIR.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sccosf_ros.engine import FusionEngine
from sccosf_ros.imaging.color import colorize_mask, overlay, rgb_to_ycbcr, ycbcr_to_rgb
from sccosf_ros.metrics.boxes import Box, BoxDir
from sccosf_ros.metrics.fusion import FUSION_METRICS, fusion_metrics, to_gray255
from sccosf_ros.metrics.segmentation import ConfusionMatrix
from sccosf_ros.report import ContactSheet
from sccosf_synth.scenes import generate_scene
from sccosf_train import teachers
from sccosf_train.compare_models import markdown_table, score_masks
from sccosf_train.dataset import SyntheticDataset, seafusion_split

# Disjoint from the trainer's synthetic streams (training: seed, validation: seed + 10000).
HELD_OUT_SYNTHETIC_SEED = 20_001
# Metrics where the target counts wins; SSIM is the guard (must not fall below SeAFusion's).
SCORED = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf")


def max_baseline(rgb: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """Per-pixel maximum of visible luminance and infrared, with the visible chroma: uint8 RGB."""
    ycc = rgb_to_ycbcr(rgb.astype(np.float32) / 255.0)
    ycc[..., 0] = np.maximum(ycc[..., 0], ir.astype(np.float32) / 255.0)
    return np.clip(np.rint(ycbcr_to_rgb(ycc) * 255.0), 0, 255).astype(np.uint8)


def _read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise OSError(f"cannot read {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _read_gray(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise OSError(f"cannot read {path}")
    return img


def _find(folder: Path, name: str) -> Path:
    for ext in (".png", ".jpg", ".bmp", ".tif"):
        if (folder / f"{name}{ext}").exists():
            return folder / f"{name}{ext}"
    raise FileNotFoundError(f"{folder}/{name}.*")


BOX_COLOURS = {1: (255, 0, 255), 2: (255, 255, 0), 3: (0, 255, 255)}  # car, person, bike outlines


def mask_picture(
    fused: np.ndarray, mask: np.ndarray, palette: np.ndarray, boxes: list[Box] | None
) -> np.ndarray:
    """The mask as a person reads it: palette colours over the fused image (background untouched), with
    the annotated detection boxes outlined (car magenta, person yellow, bike cyan)."""
    pic = overlay(fused, colorize_mask(mask, palette), alpha=0.6, mask=mask != 0)
    for b in boxes or []:
        cv2.rectangle(pic, (b.x0, b.y0), (b.x1 - 1, b.y1 - 1), BOX_COLOURS.get(b.cls, (255, 255, 255)), 2)
    return pic


@dataclass
class Sheets:
    """The card's pictures: every pair beside the references, and real night and day pairs with masks."""

    comparison: ContactSheet
    night: ContactSheet
    day: ContactSheet
    boxes: BoxDir | None = None
    masks: list[tuple[str, np.ndarray]] = field(default_factory=list)

    def add(self, name: str, images: dict[str, np.ndarray], mask: np.ndarray, palette: np.ndarray) -> None:
        self.masks.append((name, mask))
        self.comparison.add(name, images)
        frame_boxes = self.boxes.boxes(name, mask.shape[1], mask.shape[0]) if self.boxes else None
        picture = dict(images)
        picture["mask and boxes"] = mask_picture(images["SC-CoSF (ours)"], mask, palette, frame_boxes)
        keys = ("visible", "infrared", "SC-CoSF (ours)", "mask and boxes")
        (self.night if name.endswith("N") else self.day).add(name, {k: picture[k] for k in keys})


def score_fusion(engine: FusionEngine, root: Path, names: list[str], sheets: Sheets) -> dict[str, Any]:
    """Per-method mean metrics over ``names`` and per-metric pair counts, filling the picture sheets."""
    rows: dict[str, list[dict[str, float]]] = {"ours": [], "seafusion": [], "max": []}
    infer_ms: list[float] = []
    for name in names:
        rgb = _read_rgb(_find(root / "vi", name))
        ir = _read_gray(_find(root / "ir", name))
        sea = _read_rgb(_find(root / "seafusion", name))
        t0 = time.perf_counter()
        res = engine.infer(rgb, ir)
        infer_ms.append((time.perf_counter() - t0) * 1e3)
        trivial = max_baseline(rgb, ir)
        g_ir, g_vi = to_gray255(ir), to_gray255(rgb)
        for key, fused in (("ours", res.fused), ("seafusion", sea), ("max", trivial)):
            rows[key].append(fusion_metrics(to_gray255(fused), g_ir, g_vi))
        images = {
            "visible": rgb,
            "infrared": ir,
            "max baseline": trivial,
            "SeAFusion": sea,
            "SC-CoSF (ours)": res.fused,
            "segmentation": colorize_mask(res.mask, engine.palette),
        }
        sheets.add(name, images, res.mask, engine.palette)
    means = {k: {m: float(np.nanmean([r[m] for r in v])) for m in FUSION_METRICS} for k, v in rows.items()}
    ours = means["ours"]
    wins_sea = [m for m in SCORED if ours[m] > means["seafusion"][m]]
    wins_max = [m for m in SCORED if ours[m] > means["max"][m]]
    return {
        "pairs_won": pairs_won(rows),
        "pairs": len(names),
        "means": means,
        "wins_vs_seafusion": wins_sea,
        "wins_vs_max": wins_max,
        "ssim_not_below_seafusion": ours["SSIM"] >= means["seafusion"]["SSIM"],
        "engine_ms_median": float(np.median(infer_ms)) if infer_ms else None,
    }


def pairs_won(rows: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, int]]:
    """Per metric, on how many pairs ours scores higher than each reference.

    A mean can be won by a hair (or by a few outlier pairs); the pair count says how consistent it is.
    """
    metrics = list(rows["ours"][0]) if rows["ours"] else []
    return {
        ref: {m: int(sum(o[m] > r[m] for o, r in zip(rows["ours"], rows[ref], strict=True))) for m in metrics}
        for ref in ("seafusion", "max")
    }


def score_boxes(
    sheets: Sheets, root: Path, names: list[str], teacher: str | None, teacher_weights: str | None
) -> dict[str, Any] | None:
    """Box score of the checkpoint's masks (collected while scoring fusion) and, in the same run on the same
    pairs, of the ``teacher``'s (None: none): the comparison the card reports. None without a box folder."""
    if sheets.boxes is None:
        return None
    results = {"SC-CoSF (this model)": score_masks(sheets.masks, sheets.boxes)[0]}
    if teacher is not None:
        t = teachers.load_teacher(teacher, teacher_weights)
        masks = [
            (n, teachers.predict_mask(t, _read_rgb(_find(root / "vi", n)), _read_gray(_find(root / "ir", n))))
            for n in names
        ]
        results[f"{t.title} (teacher, {t.citation})"] = score_masks(masks, sheets.boxes)[0]
    return {
        "boxes": str(sheets.boxes.root),
        "variants": sheets.boxes.variants,
        "pairs": len(names),
        "results": results,
    }


def score_segmentation(engine: FusionEngine, n: int, size: tuple[int, int]) -> dict[str, Any]:
    """mIoU of the engine on ``n`` held-out synthetic scenes (synthetic labels: the only ones here)."""
    data = SyntheticDataset(n, HELD_OUT_SYNTHETIC_SEED, size)
    cm = ConfusionMatrix(engine.num_classes, ignore_index=255)
    for i in range(n):
        scene = generate_scene(data.scene_seed(i), *size)
        res = engine.infer(scene.rgb, scene.thermal)
        cm.update(res.mask, scene.labels)
    return {
        "scenes": n,
        "seed": HELD_OUT_SYNTHETIC_SEED,
        "size": list(size),
        "miou": cm.miou(),
        "pixel_accuracy": cm.pixel_accuracy(),
        "iou": {name: float(v) for name, v in zip(engine.class_names, cm.iou(), strict=True)},
    }


def _wins(against: str, metrics: list[str]) -> str:
    return f"Wins against {against} ({len(metrics)}/{len(SCORED)}): {', '.join(metrics) or '-'}."


def render_markdown(card: dict[str, Any]) -> str:
    f = card["fusion"]
    lines = [
        f"Fusion on the {f['pairs']} held-out MSRS pairs with a SeAFusion output "
        "(project metrics: grey 0-255, no stretching, MI in nats and SSIM/VIF summed over the two sources).",
        "",
        "| method | " + " | ".join(FUSION_METRICS) + " |",
        "|---|" + "---|" * len(FUSION_METRICS),
    ]
    label = {"ours": "SC-CoSF tiny (ours)", "seafusion": "SeAFusion", "max": "max(Y_vis, IR) baseline"}
    for key in ("ours", "seafusion", "max"):
        vals = " | ".join(f"{f['means'][key][m]:.3f}" for m in FUSION_METRICS)
        lines.append(f"| {label[key]} | {vals} |")
    if "pairs_won" in f:
        for ref, name in (("seafusion", "SeAFusion"), ("max", "max baseline")):
            vals = " | ".join(f"{f['pairs_won'][ref][m]}/{f['pairs']}" for m in FUSION_METRICS)
            lines.append(f"| pairs where ours > {name} | {vals} |")
    lines += [
        "",
        _wins("SeAFusion", f["wins_vs_seafusion"]),
        _wins("the max baseline", f["wins_vs_max"]),
        f"SSIM not below SeAFusion's: {f['ssim_not_below_seafusion']}.",
        "",
    ]
    b = card.get("box_score")
    if b:
        lines += [
            f"Segmentation on the same {b['pairs']} real pairs, scored against the MSRS detection boxes "
            "(box score, docs/metrics.md):",
            "",
            markdown_table(b["results"]),
            "",
        ]
    s = card["segmentation"]
    lines += [
        f"Segmentation on {s['scenes']} held-out synthetic scenes ({s['size'][0]}x{s['size'][1]}, seed "
        f"{s['seed']}): mIoU {s['miou']:.3f}, pixel accuracy {s['pixel_accuracy']:.3f}.",
        "",
        "| class | IoU |",
        "|---|---|",
    ]
    for cls, v in s["iou"].items():
        lines.append(f"| {cls} | {'n/a' if v is None or v != v else f'{v:.3f}'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="checkpoint to score (safetensors)")
    p.add_argument("--msrs-root", required=True, help="MSRS folder with ir/, vi/ and seafusion/")
    p.add_argument("--out", required=True, help="output folder for model_card.{json,md} and pictures")
    p.add_argument("--synthetic-scenes", type=int, default=100, help="held-out synthetic scenes for mIoU")
    p.add_argument(
        "--synthetic-size",
        type=int,
        nargs=2,
        default=(480, 640),
        metavar=("H", "W"),
        help="size of the held-out synthetic scenes",
    )
    p.add_argument("--max-pairs", type=int, default=None, help="score only the first N validation pairs")
    p.add_argument("--boxes", help="detection boxes (MSRS box layout); default MSRS_ROOT/boxes when present")
    p.add_argument("--no-teacher", action="store_true", help="do not score a teacher beside it")
    teachers.add_arguments(p)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)

    root, out = Path(args.msrs_root), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    engine = FusionEngine(args.checkpoint, device=args.device, num_threads=args.threads)
    _, val = seafusion_split(root)
    val = val[: args.max_pairs] if args.max_pairs else val
    rows = ["visible", "infrared", "SC-CoSF (ours)", "mask and boxes"]
    boxes = Path(args.boxes) if args.boxes else root / "boxes"
    sheets = Sheets(
        ContactSheet(["visible", "infrared", "max baseline", "SeAFusion", "SC-CoSF (ours)", "segmentation"]),
        ContactSheet(rows),
        ContactSheet(rows),
        BoxDir(boxes) if boxes.is_dir() else None,
    )
    card = {
        "checkpoint": str(args.checkpoint),
        "fusion": score_fusion(engine, root, val, sheets),
        "box_score": score_boxes(
            sheets, root, val, None if args.no_teacher else args.teacher, args.teacher_weights
        ),
        "segmentation": score_segmentation(engine, args.synthetic_scenes, tuple(args.synthetic_size)),
    }
    sheets.comparison.save(out / "fusion_comparison.png")
    sheets.night.save(out / "night_contact_sheet.png")
    sheets.day.save(out / "day_contact_sheet.png")
    (out / "model_card.json").write_text(json.dumps(card, indent=1, default=float))
    md = render_markdown(card)
    (out / "model_card.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
