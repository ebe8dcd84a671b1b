"""Evaluation reports: a contact sheet PNG and ``report.md`` / ``report.json`` from one summary dict.

Why a contact sheet: no-reference fusion metrics reward raw contrast (a per-pixel maximum beats published
methods on several of them), so a report must show the pictures next to the table. The sheet keeps evenly
spaced frames of a stream of unknown length in bounded memory.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np


def _to_rgb_u8(image: np.ndarray) -> np.ndarray:
    """Grey or RGB, uint8 or float [0, 1], to RGB uint8 for display."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = np.clip(np.nan_to_num(a.astype(np.float32)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return a


class ContactSheet:
    """Evenly spaced thumbnails (columns) of several image rows, for a stream of unknown length.

    Every ``stride``-th frame is kept; when more than ``2 * columns`` are held, every other one is dropped and
    the stride doubles, so memory stays bounded and the kept frames stay evenly spread over the run.
    """

    def __init__(self, rows: list[str], columns: int = 6, thumb_width: int = 240) -> None:
        if columns < 1 or thumb_width < 16:
            raise ValueError("need columns >= 1 and thumb_width >= 16")
        self.rows = list(rows)
        self.columns = columns
        self.thumb_width = thumb_width
        self._stride = 1
        self._seen = 0
        self._kept: list[tuple[str, dict[str, np.ndarray]]] = []

    def wants_next(self) -> bool:
        """Whether the next frame will be kept; if not, call :meth:`skip` instead of building its rows."""
        return self._seen % self._stride == 0

    def skip(self) -> None:
        """Count a frame without building it (only valid when :meth:`wants_next` is False)."""
        self._seen += 1

    def add(self, caption: str, images: Mapping[str, np.ndarray]) -> None:
        """Offer one frame; ``images`` maps row names to images (missing rows are drawn grey)."""
        keep = self.wants_next()
        self._seen += 1
        if not keep:
            return
        thumbs = {}
        for name, img in images.items():
            a = _to_rgb_u8(img)
            h = max(1, round(a.shape[0] * self.thumb_width / a.shape[1]))
            interp = cv2.INTER_NEAREST if name.lower().startswith(("seg", "ground")) else cv2.INTER_AREA
            thumbs[name] = cv2.resize(np.ascontiguousarray(a), (self.thumb_width, h), interpolation=interp)
        self._kept.append((caption, thumbs))
        if len(self._kept) > 2 * self.columns:
            self._kept = self._kept[::2]
            self._stride *= 2

    def __len__(self) -> int:
        return len(self._kept)

    def render(self) -> np.ndarray | None:
        """The sheet as RGB uint8 (rows top to bottom, frames left to right), or None if nothing was added."""
        if not self._kept:
            return None
        idx = np.linspace(0, len(self._kept) - 1, min(self.columns, len(self._kept))).round().astype(int)
        chosen = [self._kept[i] for i in sorted(set(idx.tolist()))]
        rows = [r for r in self.rows if any(r in t for _, t in chosen)]
        th = max(t.shape[0] for _, thumbs in chosen for t in thumbs.values())
        tw, label_w, cap_h, pad = self.thumb_width, 150, 22, 4
        width = label_w + len(chosen) * (tw + pad)
        height = cap_h + len(rows) * (th + pad)
        sheet = np.full((height, width, 3), 255, np.uint8)
        font = cv2.FONT_HERSHEY_SIMPLEX
        for c, (caption, _) in enumerate(chosen):
            cv2.putText(
                sheet, caption[:32], (label_w + c * (tw + pad) + 2, 16), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA
            )
        for r, name in enumerate(rows):
            y = cap_h + r * (th + pad)
            cv2.putText(sheet, name, (4, y + th // 2), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
            for c, (_, thumbs) in enumerate(chosen):
                x = label_w + c * (tw + pad)
                t = thumbs.get(name)
                if t is None:
                    sheet[y : y + th, x : x + tw] = 200
                else:
                    sheet[y : y + t.shape[0], x : x + tw] = t
        return sheet

    def save(self, path: str | Path) -> Path | None:
        """Write the sheet as PNG; returns the path, or None when there was nothing to draw."""
        sheet = self.render()
        if sheet is None:
            return None
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write {path}")
        return path


def json_safe(value: Any) -> Any:
    """NaN/inf become None (JSON has no NaN); numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if math.isfinite(v) else "–"
    return str(v)


def _header(report: Mapping[str, Any]) -> list[str]:
    lines = [f"# {report.get('title', 'SC-CoSF evaluation')}", ""]
    lines += [f"- Bag: `{report.get('bag')}`", f"- Checkpoint: `{report.get('checkpoint')}`"]
    lines += [
        f"- {k.capitalize()}: {report[k]}"
        for k in ("mode", "device", "threads", "rate", "generated")
        if k in report
    ]
    return lines + (["", f"> {report['note']}"] if report.get("note") else [])


def _counts(title: str, counts: Mapping[str, Any] | None) -> list[str]:
    """A two-column table of the mapping's scalar entries (nested groups are left out)."""
    if not counts:
        return []
    rows = [(k, v) for k, v in counts.items() if not isinstance(v, dict)]
    return ["", f"## {title}", "", "| | count |", "|---|---:|"] + [
        f"| {k.replace('_', ' ')} | {_fmt(v)} |" for k, v in rows
    ]


def _throughput(thr: Mapping[str, Any]) -> list[str]:
    if not thr:
        return []
    lines = ["", "## Throughput", "", "| | value |", "|---|---:|"]
    lines += [f"| {k.replace('_', ' ')} | {_fmt(v, 2)} |" for k, v in thr.items() if not isinstance(v, dict)]
    for group, values in thr.items():
        if isinstance(values, dict) and values:
            cells = ", ".join(f"{k} {_fmt(v, 1)}" for k, v in values.items())
            lines.append(f"| {group.replace('_', ' ')} | {cells} |")
    return lines


def _latency(lat: Mapping[str, Any] | None) -> list[str]:
    if not lat:
        return []
    cells = " | ".join(_fmt(lat.get(k), 1) for k in ("p50", "p95", "p99", "max"))
    head = ["", "## End-to-end latency (ms)", "", "| p50 | p95 | p99 | max | n |", "|---:" * 5 + "|"]
    return [*head, f"| {cells} | {lat.get('count')} |"]


def _fusion(fusion: Mapping[str, Any]) -> list[str]:
    mean = fusion.get("mean", {})
    if not mean:
        return []
    lines = ["", f"## Fusion metrics (mean over {fusion.get('frames')} frames)", ""]
    if fusion.get("convention"):
        lines += [fusion["convention"], ""]
    lines += ["| " + " | ".join(mean) + " |", "|" + "---:|" * len(mean)]
    return [*lines, "| " + " | ".join(_fmt(v) for v in mean.values()) + " |"]


def _segmentation(report: Mapping[str, Any]) -> list[str]:
    seg = report.get("segmentation")
    lines = ["", "## Segmentation", ""]
    if not seg:
        return [*lines, str(report.get("segmentation_note", "No ground-truth labels in the bag: no mIoU."))]
    lines.append(
        f"mIoU **{_fmt(seg.get('miou'))}**, pixel accuracy {_fmt(seg.get('pixel_accuracy'))}, "
        f"{seg.get('frames')} labelled frames."
    )
    lines += ["", "| class | IoU | pixels (label) |", "|---|---:|---:|"]
    support = seg.get("support", {})
    lines += [
        f"| {n} | {_fmt(iou)} | {support.get(n, '')} |" for n, iou in seg.get("per_class_iou", {}).items()
    ]
    return [*lines, "", "IoU is – for classes absent from labels and predictions; mIoU averages the rest."]


def _box_score_lines(box: Mapping[str, Any]) -> list[str]:
    """The "Box score" section: detection boxes as evidence (definition in docs/metrics.md)."""
    share = box.get("boxless_share")
    lines = ["", "## Box score (detection boxes)", ""]
    lines.append(
        f"Mean F **{_fmt(box.get('mean_F'))}** over {box.get('frames')} frames; pixels predicted as a "
        f"class the boxes cannot judge (ids {box.get('settings', {}).get('boxless_classes')}): "
        f"{'–' if share is None else f'{100 * share:.1f} %'}; mean fill {_fmt(box.get('fill'))}."
    )
    lines += ["", "| class | precision | hit rate | F | fill | objects |", "|---|---:|---:|---:|---:|---:|"]
    for name, v in box.get("per_class", {}).items():
        lines.append(
            f"| {name} | {_fmt(v.get('precision'))} | {_fmt(v.get('hit_rate'))} | {_fmt(v.get('F'))} | "
            f"{_fmt(v.get('fill'))} | {v.get('objects')} |"
        )
    lines += [
        "",
        f"Boxes `{box.get('boxes')}` ({', '.join(box.get('variants', []))}); frames tied to box files by "
        f"{box.get('names_from')}; {box.get('frames_without_name')} frames without a name, "
        f"{box.get('frames_without_box_file')} without a box file (not scored). Definition and limits: "
        'docs/metrics.md, "Box score".',
    ]
    return lines


def _outputs(outputs: Mapping[str, Any], warnings: list[str] | None) -> list[str]:
    lines: list[str] = []
    if outputs:
        lines += ["", "## Outputs", ""] + [f"- {k.replace('_', ' ')}: `{v}`" for k, v in outputs.items() if v]
        if outputs.get("contact_sheet"):
            lines += ["", f"![contact sheet]({Path(outputs['contact_sheet']).name})"]
    if warnings:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in warnings]
    return lines


def render_markdown(report: Mapping[str, Any]) -> str:
    """``report.md`` from the summary dict that the evaluator and the replay tool build."""
    lines = _header(report)
    lines += _counts("Pairing", report.get("pairs"))
    lines += _counts("The node's own counters (/diagnostics, warm-up excluded)", report.get("node_counters"))
    lines += _throughput(report.get("throughput", {}))
    lines += _latency(report.get("latency_ms"))
    lines += _fusion(report.get("fusion", {}))
    lines += _segmentation(report)
    lines += _box_score_lines(report["box_score"]) if report.get("box_score") else []
    lines += _outputs(report.get("outputs", {}), report.get("warnings"))
    return "\n".join(lines) + "\n"


def write_report(out_dir: str | Path, report: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write ``report.json`` (complete, per-frame values included) and ``report.md`` (summary)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    safe = json_safe(dict(report))
    json_path, md_path = out / "report.json", out / "report.md"
    json_path.write_text(json.dumps(safe, indent=2) + "\n")
    md_path.write_text(render_markdown(safe))
    return md_path, json_path
