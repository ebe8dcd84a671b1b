"""Offline evaluation of a bag: pair, run the network, score, write an output bag and a report. No ROS.

Why offline as well as live (``sccosf_ros.replay``): with no executor, DDS or drops in the way, every pair
the node's synchroniser would form is processed, so the scores depend on the model and the data only and are
reproducible; the live replay then measures what the real node adds (latency, drops). Both paths run the
node's own pipeline: :class:`~sccosf_ros.pairing.ApproximateTimePairer` with the node's default queue and
slop, and :class:`~sccosf_ros.pipeline.PairProcessor` for decoding, thermal normalisation and output
encoding, so the output bag holds exactly what the node would publish for those inputs, and the scores are
computed on exactly what the network saw (the pipeline returns its inputs).

Scoring conventions: fusion metrics (:mod:`sccosf_ros.metrics.fusion`) compare the fused image with the
visible frame and with the thermal frame *as the network saw it* (normalised to [0, 1], resampled to the RGB
grid); segmentation is scored against the label image whose header stamp equals the RGB frame's stamp exactly,
and, with ``boxes``, against detection boxes (:mod:`sccosf_ros.bag_boxes` ties frames to box files).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sccosf_ros import bags, topics
from sccosf_ros.bag_boxes import BoxFrameScorer, load_frame_names
from sccosf_ros.imaging.color import colorize_mask
from sccosf_ros.imaging.resize import warp_thermal_to_rgb
from sccosf_ros.imaging.thermal import ThermalNormalizer
from sccosf_ros.metrics.boxes import BoxDir
from sccosf_ros.metrics.fusion import FUSION_METRICS, fusion_metrics, to_gray255
from sccosf_ros.metrics.segmentation import ConfusionMatrix
from sccosf_ros.pairing import ApproximateTimePairer, Pair
from sccosf_ros.pipeline import SYNC_QUEUE_SIZE, SYNC_SLOP_S, BadInputError, PairProcessor, ThermalSettings
from sccosf_ros.report import ContactSheet, write_report

OUTPUT_TOPICS = {
    "fused": topics.FUSED,
    "segmentation": topics.SEGMENTATION,
    "segmentation_color": topics.SEGMENTATION_COLOR,
}
FUSION_CONVENTION = (
    "Grey 0-255, no stretching; MI in nats and MI, SSIM, VIF summed over (F, IR) + (F, VI) "
    "(CDDFuse/EMMA evaluator convention, see docs/metrics.md). IR = thermal as the network saw it."
)
SHEET_ROWS = ["visible", "thermal", "fused", "segmentation", "ground truth"]


@dataclass
class EvalConfig:
    """Topics, pairing and model settings; pairing defaults are the node's own parameter defaults."""

    rgb_topic: str = topics.CAMERA_RGB
    thermal_topic: str = topics.CAMERA_THERMAL
    label_topic: str | None = topics.LABELS
    boxes: str | Path | None = None  # {fusion,infrared,visible}/NAME.txt or NAME.txt (docs/metrics.md)
    box_ignore: str | Path | None = None  # don't-care boxes NAME.txt (objects cut by the frame edge)
    box_names: str | Path | None = None  # which frame is which name (sccosf_ros.bag_boxes); None: the bag's
    checkpoint: str | Path | None = None
    device: str = "auto"
    precision: str = "fp32"
    backend: str = "torch"  # or "onnxruntime" (docs/onnx.md)
    num_threads: int | None = None  # torch CPU threads; None = torch's default (see docs/evaluation.md)
    slop: float = SYNC_SLOP_S
    queue_size: int = SYNC_QUEUE_SIZE
    max_pairs: int | None = None
    storage: str = "mcap"
    write_bag: bool = True
    progress: bool = True
    contact_columns: int = 6


def make_normalizer() -> ThermalNormalizer:
    """The node's default thermal normaliser (the pipeline's defaults), so offline and live inputs agree."""
    return ThermalSettings().normalizer()


def load_labels(bag: str | Path, topic: str | None) -> tuple[dict[int, bytes] | None, str | None]:
    """Label images by header stamp, PNG-compressed in memory (class maps shrink ~30x), or (None, reason)."""
    if not topic:
        return None, "no label topic given"
    if topic not in bags.bag_topics(bag):
        return None, f"label topic {topic} not in the bag: no segmentation scores"
    out: dict[int, bytes] = {}
    for m in bags.read_images(bag, [topic]):
        if m.array.ndim != 2 or not np.issubdtype(m.array.dtype, np.integer):
            raise bags.BagError(f"labels on {topic} must be single-channel class ids, got {m.encoding}")
        ok, png = cv2.imencode(".png", np.ascontiguousarray(m.array))
        if not ok:
            raise bags.BagError(f"cannot buffer label at stamp {m.stamp_ns}")
        out[m.stamp_ns] = png.tobytes()
    return out, None


def _decode_label(png: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)


@dataclass
class FrameScorer:
    """Per-frame fusion metrics, the confusion matrix and the contact sheet; shared with the live replay."""

    class_names: list[str]
    palette: np.ndarray
    labels: dict[int, bytes] | None = None
    contact_columns: int = 6
    frames: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    box_scorer: BoxFrameScorer | None = None

    def __post_init__(self) -> None:
        self.confusion = ConfusionMatrix(len(self.class_names))
        rows = SHEET_ROWS if self.labels is not None else SHEET_ROWS[:-1]
        self.sheet = ContactSheet(rows, columns=self.contact_columns)
        self.labelled = 0
        self.metric_ms: list[float] = []

    def warn(self, text: str) -> None:
        """Record a warning once (reports list each distinct problem, not every frame)."""
        if text not in self.warnings:
            self.warnings.append(text)

    def add(
        self,
        stamp_ns: int,
        rgb: np.ndarray,
        thermal: np.ndarray,
        fused: np.ndarray,
        mask: np.ndarray,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Score one frame: ``rgb`` uint8 (H, W, 3), ``thermal`` float [0, 1] or uint8 (any size),
        ``fused`` uint8 (H, W, 3), ``mask`` uint8 (H, W). Returns the per-frame record."""
        t0 = time.perf_counter()
        if thermal.shape[:2] != rgb.shape[:2]:
            thermal = warp_thermal_to_rgb(thermal, rgb.shape, None)
        record: dict[str, Any] = {"stamp_ns": int(stamp_ns), **(extra or {})}
        try:
            record.update(fusion_metrics(to_gray255(fused), to_gray255(thermal), to_gray255(rgb)))
        except ValueError as exc:  # e.g. a frame smaller than the SSIM window: keep going, say why
            self.warn(f"fusion metrics skipped for some frames: {exc}")
        label = None
        if self.labels is not None:
            png = self.labels.get(int(stamp_ns))
            record["labelled"] = png is not None
            if png is not None:
                label = _decode_label(png)
                if label.shape != mask.shape:
                    self.warn(f"labels {label.shape} resized (nearest) to the mask size {mask.shape}")
                    label = cv2.resize(label, mask.shape[::-1], interpolation=cv2.INTER_NEAREST)
                try:
                    self.confusion.update(mask, label)
                    self.labelled += 1
                except ValueError as exc:
                    self.warn(f"label at {stamp_ns} not scored: {exc}")
        if self.box_scorer is not None:
            self.box_scorer.add(stamp_ns, mask, record)
        self.metric_ms.append((time.perf_counter() - t0) * 1e3)
        self.frames.append(record)
        if self.sheet.wants_next():
            rows = {
                "visible": rgb,
                "thermal": thermal,
                "fused": fused,
                "segmentation": colorize_mask(mask, self.palette),
            }
            if label is not None:
                rows["ground truth"] = colorize_mask(label, self.palette)
            self.sheet.add(f"t={(stamp_ns - self.frames[0]['stamp_ns']) / 1e9:.2f} s", rows)
        else:
            self.sheet.skip()
        return record

    def fusion_summary(self) -> dict[str, Any]:
        means = {}
        for name in FUSION_METRICS:
            vals = [f[name] for f in self.frames if name in f and math.isfinite(f[name])]
            means[name] = float(np.mean(vals)) if vals else None
        scored = sum(1 for f in self.frames if "EN" in f)
        return {"frames": scored, "convention": FUSION_CONVENTION, "mean": means, "per_frame": self.frames}

    def segmentation_summary(self) -> dict[str, Any] | None:
        if self.labels is None or self.labelled == 0:
            return None
        iou = self.confusion.iou()
        support = self.confusion.matrix.sum(1)
        return {
            "miou": self.confusion.miou(),
            "pixel_accuracy": self.confusion.pixel_accuracy(),
            "frames": self.labelled,
            "per_class_iou": {n: float(v) for n, v in zip(self.class_names, iou, strict=True)},
            "support": {n: int(s) for n, s in zip(self.class_names, support, strict=True)},
            "confusion_matrix": self.confusion.matrix.tolist(),
        }


def _progress(total: int, enabled: bool, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, unit="msg", desc=desc, dynamic_ncols=True, leave=False)


def _pairing_counts(pairer: ApproximateTimePairer, evaluated: int, bad: Mapping[str, int]) -> dict[str, Any]:
    st = pairer.stats()
    return {
        "rgb_messages": st.received["rgb"],
        "thermal_messages": st.received["thermal"],
        "pairs_matched": st.matched,
        "pairs_evaluated": evaluated,
        "pairs_rejected": sum(bad.values()),
        "rgb_unmatched": st.received["rgb"] - st.matched,
        "thermal_unmatched": st.received["thermal"] - st.matched,
        "rejected_by_kind": dict(bad),
        "pairing_resets": st.resets,  # stamps went back (a looped or concatenated bag): pairing began afresh
    }


def _torch_threads() -> int | None:
    try:
        import torch
    except ImportError:
        return None
    return int(torch.get_num_threads())


def open_engine(
    checkpoint: str | Path | None,
    device: str,
    precision: str,
    num_threads: int | None = None,
    backend: str = "torch",
) -> Any:
    """A :class:`FusionEngine`; imported here so that bag tools do not pay for torch."""
    from sccosf_ros.engine import FusionEngine

    return FusionEngine(
        checkpoint=checkpoint, device=device, precision=precision, num_threads=num_threads, backend=backend
    )


def warm_up(engine: Any, rgb: bags.TopicInfo) -> float | None:
    """One untimed inference at the bag's RGB size, so lazy initialisation does not count as throughput."""
    if not hasattr(engine, "warmup") or len(rgb.sizes) != 1:
        return None
    width, height = (int(v) for v in rgb.sizes[0].split("x"))
    return float(engine.warmup(height, width, runs=1))


def _compressed_inputs(bag: str | Path, inputs: list[str]) -> set[str]:
    """The streams (``rgb``, ``thermal``; ``inputs`` in that order) whose topic holds CompressedImage: each
    may be either, as the node's ``rgb_transport`` / ``thermal_transport``."""
    topics = bags.bag_topics(bag)
    for t in inputs:
        if t not in topics:
            raise bags.BagError(f"topic {t} not in bag {bag}; the bag holds: {', '.join(sorted(topics))}")
    return {s for s, t in zip(("rgb", "thermal"), inputs, strict=True) if topics[t] == bags.COMPRESSED_TYPE}


def _box_scorer(bag: str | Path, cfg: EvalConfig) -> BoxFrameScorer | None:
    if cfg.boxes is None:
        return None
    box_dir = BoxDir(cfg.boxes, ignore=cfg.box_ignore)
    names, source = load_frame_names(cfg.box_names, bag, cfg.rgb_topic, box_dir)
    return BoxFrameScorer(box_dir, names, source)


def evaluate_bag(
    bag: str | Path, out_dir: str | Path, config: EvalConfig | None = None, engine: Any = None
) -> dict[str, Any]:
    """Evaluate ``bag`` into ``out_dir``: report.md/json, contact_sheet.png and output_bag.

    Returns the report dict. Inputs are processed in recording order, as the node would receive them.
    """
    cfg = config or EvalConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    inputs = [cfg.rgb_topic, cfg.thermal_topic]
    compressed = _compressed_inputs(bag, inputs)  # fail before labels or the model when the bag cannot do
    labels, label_note = load_labels(bag, cfg.label_topic)
    box_scorer = _box_scorer(bag, cfg)  # before the model loads: a wrong mapping fails fast
    copy_topics = inputs + ([cfg.label_topic] if labels is not None and cfg.label_topic else [])
    engine = engine or open_engine(cfg.checkpoint, cfg.device, cfg.precision, cfg.num_threads, cfg.backend)
    processor = PairProcessor(
        engine, make_normalizer(), engine.palette, set(OUTPUT_TOPICS), compressed=compressed
    )
    pairer = ApproximateTimePairer(cfg.queue_size, cfg.slop)
    scorer = FrameScorer(
        list(engine.class_names), engine.palette, labels, cfg.contact_columns, box_scorer=box_scorer
    )
    bag_path = out / "output_bag"
    if cfg.write_bag and bag_path.exists():
        raise bags.BagError(f"{bag_path} exists; evaluate into an empty directory")
    writer = bags.BagWriter(bag_path, cfg.storage) if cfg.write_bag else None
    info = bags.bag_info(bag)
    total = sum(info.topic(t).count for t in copy_topics)
    warmup_ms = warm_up(engine, info.topic(cfg.rgb_topic))
    bad: dict[str, int] = {}
    stage_ms: dict[str, list[float]] = {}
    skews: list[float] = []
    evaluated = 0
    t_start = time.perf_counter()
    try:
        with _progress(total, cfg.progress, "sccosf-eval") as bar:
            for raw in bags.read_raw(bag, copy_topics):
                if cfg.max_pairs is not None and evaluated >= cfg.max_pairs:
                    break
                bar.update(1)
                if writer is not None:
                    writer.write_raw(raw.topic, raw.msgtype, raw.log_time_ns, raw.data)
                if raw.topic not in inputs:
                    continue
                msg = bags.TYPESTORE.deserialize_cdr(raw.data, raw.msgtype)
                stream = "rgb" if raw.topic == cfg.rgb_topic else "thermal"
                for pair in pairer.add(stream, bags.stamp_to_ns(msg.header.stamp), msg):
                    ok = _process_pair(pair, processor, scorer, writer, raw.log_time_ns, bad, stage_ms)
                    if ok:
                        evaluated += 1
                        skews.append(pair.skew_ns / 1e6)
                bar.set_postfix(pairs=evaluated, refresh=False)
    finally:
        if writer is not None:
            writer.close()
    wall = time.perf_counter() - t_start
    outputs = {
        "report_md": str(out / "report.md"),
        "report_json": str(out / "report.json"),
        "output_bag": str(bag_path) if writer is not None else None,
    }
    sheet = scorer.sheet.save(out / "contact_sheet.png")
    outputs["contact_sheet"] = str(sheet) if sheet else None
    report: dict[str, Any] = {
        "title": "SC-CoSF offline evaluation",
        "mode": "offline (every pair the node's synchroniser forms, no drops)",
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "bag": str(bag),
        "checkpoint": str(getattr(engine, "checkpoint", cfg.checkpoint)),
        "device": str(getattr(engine, "device", cfg.device)),
        "backend": str(getattr(engine, "backend", cfg.backend)),
        "threads": _torch_threads(),
        "topics": {"rgb": cfg.rgb_topic, "thermal": cfg.thermal_topic, "labels": cfg.label_topic},
        "pairing": {"slop_s": cfg.slop, "queue_size": cfg.queue_size},
        "pairs": {
            **_pairing_counts(pairer, evaluated, bad),
            "skew_ms_abs_mean": float(np.mean(np.abs(skews))) if skews else None,
            "skew_ms_abs_max": float(np.max(np.abs(skews))) if skews else None,
        },
        "throughput": {
            "pairs": evaluated,
            "wall_s": wall,
            "pairs_per_s": evaluated / wall if wall > 0 else None,
            "bag_duration_s": info.duration_s,
            "warmup_ms": warmup_ms,
            "stage_ms_mean": {k: float(np.mean(v)) for k, v in stage_ms.items()},
            "metrics_ms_mean": float(np.mean(scorer.metric_ms)) if scorer.metric_ms else None,
        },
        "fusion": scorer.fusion_summary(),
        "segmentation": scorer.segmentation_summary(),
        "box_score": box_scorer.summary() if box_scorer is not None else None,
        "outputs": outputs,
        "warnings": scorer.warnings + [f"{k}: {v} pairs rejected" for k, v in bad.items()],
    }
    if report["segmentation"] is None:
        report["segmentation_note"] = label_note or "no label matched an evaluated RGB stamp: no mIoU"
    write_report(out, report)
    return report


def _process_pair(
    pair: Pair,
    processor: PairProcessor,
    scorer: FrameScorer,
    writer: bags.BagWriter | None,
    log_time_ns: int,
    bad: dict[str, int],
    stage_ms: dict[str, list[float]],
) -> bool:
    """Run one pair as the node would; count (not raise) bad input. Outputs are logged when the pair formed
    (the arrival that completed it), which keeps the output bag's log times monotonic."""
    try:
        output = processor.process(pair.rgb, pair.thermal)
    except BadInputError as exc:
        bad[exc.kind] = bad.get(exc.kind, 0) + 1
        scorer.warn(f"rejected pair at {pair.rgb_stamp_ns}: {exc}")
        return False
    result = output.result
    for k, v in {**output.timings, **getattr(result, "timings", {})}.items():
        stage_ms.setdefault(k, []).append(float(v))
    if writer is not None:
        frame_id = str(pair.rgb.header.frame_id)
        for name, fields in output.images.items():
            msg = bags.message_from_fields(fields, pair.rgb_stamp_ns, frame_id)
            data = bags.TYPESTORE.serialize_cdr(msg, bags.IMAGE_TYPE)
            writer.write_raw(OUTPUT_TOPICS[name], bags.IMAGE_TYPE, log_time_ns, data)
    scorer.add(
        pair.rgb_stamp_ns,
        output.rgb,
        output.thermal,
        np.asarray(result.fused),
        np.asarray(result.mask),
        {
            "thermal_stamp_ns": pair.thermal_stamp_ns,
            "skew_ms": pair.skew_ns / 1e6,
            "infer_ms": output.timings.get("infer"),
        },
    )
    return True


__all__ = ["EvalConfig", "FrameScorer", "evaluate_bag", "load_labels", "make_normalizer", "open_engine"]
