"""Score what the node published during a replay and write the report (ROS-free).

The frames are scored by the offline evaluator's :class:`~sccosf_ros.evaluation.FrameScorer`, so a live and
an offline report of one bag compare figure for figure; what only the live path has is latency (by stamp,
in one process clock) and the node's own counters (where the bag's inputs went).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from sccosf_ros import bags, topics
from sccosf_ros.evaluation import FrameScorer, make_normalizer
from sccosf_ros.imaging.color import to_rgb
from sccosf_ros.imaging.thermal import to_thermal_gray
from sccosf_ros.replay.bag_survey import BagScan, OutputTally, ReplayJob, stamp_of
from sccosf_ros.replay.config import ReplayConfig, ReplayError
from sccosf_ros.replay.player import OUTPUTS, Playback
from sccosf_ros.report import write_report

Outputs = dict[str, dict[int, tuple[int, bytes]]]  # topic -> RGB stamp -> (receipt ns, CDR bytes)


def percentiles(values: Sequence[float]) -> dict[str, float | int | None]:
    """p50/p95/p99/max/mean/count of a list of timings (all None for an empty list)."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None, "count": 0}
    a = np.asarray(values, np.float64)
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"p50": p50, "p95": p95, "p99": p99, "max": a.max(), "mean": a.mean(), "count": len(a)}


def outputs_by_stamp(playback: Playback) -> Outputs:
    """The first output per RGB stamp of the bag, per topic (warm-up outputs carry stamps before the bag).
    A looped bag's later passes repeat frames already scored; they count in the tallies and latencies only."""
    bag_stamps = set(playback.publish_ns)
    outputs: Outputs = {}
    for topic, items in playback.received.items():
        by_stamp: dict[int, tuple[int, bytes]] = {}
        for t, data in items:
            s = stamp_of(data)
            if s in bag_stamps:
                by_stamp.setdefault(s, (t, data))
        outputs[topic] = by_stamp
    return outputs


def _decode(data: bytes) -> np.ndarray:
    msg = bags.TYPESTORE.deserialize_cdr(data, bags.IMAGE_TYPE)
    array, _ = bags.decode_image(msg, bags.IMAGE_TYPE)
    return np.asarray(array)


def class_info(playback: Playback, cfg: ReplayConfig) -> tuple[list[str], np.ndarray]:
    """Class names and palette as the node announced them (latched ``class_names``, parameter overrides
    included), else from the checkpoint's metadata."""
    if playback.class_info is not None:
        info = json.loads(playback.class_info)
        palette = [tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in info["palette"]]
        return list(info["class_names"]), np.array(palette, np.uint8).reshape(-1, 3)
    from sccosf_ros.checkpoint import read_checkpoint_meta
    from sccosf_ros.paths import default_checkpoint_path

    path = cfg.checkpoint or default_checkpoint_path()
    if path is None:
        raise ReplayError("the node announced no class names and no checkpoint is known to read them from")
    meta = read_checkpoint_meta(path)
    return list(meta.class_names), np.array(meta.palette, np.uint8).reshape(-1, 3)


def _partners(outputs: Outputs, scan: BagScan) -> dict[int, int]:
    """RGB stamp -> thermal stamp for every output that can be scored (the nearest thermal frame when the
    offline pairing did not pair that RGB frame)."""
    segs = outputs[topics.SEGMENTATION]
    want: dict[int, int] = {}
    for s in sorted(outputs[topics.FUSED]):
        t_stamp = scan.expected.get(s)
        if t_stamp is None and scan.thermal_stamps:
            t_stamp = min(scan.thermal_stamps, key=lambda x: abs(x - s))
        if t_stamp is not None and s in segs:
            want[s] = t_stamp
    return want


def score_frames(job: ReplayJob, outputs: Outputs, playback: Playback, scorer: FrameScorer) -> None:
    """Score each output against the inputs it was given, decoded again from the bag in one streaming pass;
    only frames an output still waits for are held (partners are within the slop)."""
    cfg = job.cfg
    fused, segs = outputs[topics.FUSED], outputs[topics.SEGMENTATION]
    want = _partners(outputs, job.scan)
    wanted_thermal = set(want.values())
    rgb_frames: dict[int, np.ndarray] = {}
    thermal_frames: dict[int, np.ndarray] = {}
    normalizer = make_normalizer()
    for m in bags.read_images(job.bag, [cfg.rgb_topic, cfg.thermal_topic]):
        if m.topic == cfg.rgb_topic and m.stamp_ns in want:
            rgb_frames[m.stamp_ns] = to_rgb(m.array, m.encoding)
        elif m.topic == cfg.thermal_topic and m.stamp_ns in wanted_thermal:
            thermal_frames[m.stamp_ns] = to_thermal_gray(m.array, m.encoding)
        for s in [s for s in rgb_frames if want[s] in thermal_frames]:
            latency = playback.latency_ms(s, fused[s][0])
            extra = {"thermal_stamp_ns": want[s], "latency_ms": latency}
            thermal = normalizer(thermal_frames[want[s]])
            scorer.add(s, rgb_frames.pop(s), thermal, _decode(fused[s][1]), _decode(segs[s][1]), extra)
        if len(thermal_frames) > 4 * cfg.queue_size:  # drop partners no pending output can still need
            pending = {want[s] for s in rgb_frames}
            for t in [t for t in thermal_frames if t not in pending and t < m.stamp_ns - 10**9]:
                del thermal_frames[t]


def write_output_bag(path: Path, job: ReplayJob, outputs: Outputs, playback: Playback) -> None:
    """The inputs (and labels) as recorded, plus the outputs on the bag's timeline (receipt times mapped)."""
    cfg, labelled = job.cfg, job.labels.by_stamp is not None and job.cfg.label_topic
    copy = [cfg.rgb_topic, cfg.thermal_topic] + ([cfg.label_topic] if labelled else [])
    with bags.BagWriter(path, cfg.storage) as w:
        for m in bags.read_raw(job.bag, copy):
            w.write_raw(m.topic, m.msgtype, m.log_time_ns, m.data)
        for topic, by_stamp in outputs.items():
            for _, (t, data) in sorted(by_stamp.items()):
                log_time = job.scan.t0_log + round((t - playback.t0_wall) * cfg.rate)
                w.write_raw(topic, bags.IMAGE_TYPE, log_time, data)


def node_breakdown(playback: Playback, scan: BagScan, cfg: ReplayConfig) -> dict[str, Any] | None:
    """Where the bag's inputs went, from the node's own counters minus their post-warm-up baseline."""
    d, base = playback.diagnostics, playback.baseline
    if not d or base is None:
        return None

    def num(key: str) -> int | None:
        try:
            return int(float(d[key])) - int(float(base.get(key, 0)))
        except (KeyError, ValueError):
            return None

    got_rgb, got_th = num("rgb_received"), num("thermal_received")
    out: dict[str, Any] = {
        "node_rgb_received": got_rgb,
        "node_thermal_received": got_th,
        "node_pairs_matched": num("matched"),
        "node_pairs_published": num("pairs_processed"),
        "node_pairs_dropped_slow": num("pairs_dropped_slow"),
        "node_bad_inputs": num("bad_inputs_total"),
    }
    if got_rgb is not None and got_th is not None:
        # Lost on the wire or overwritten in the node's input queue (depth input_depth) before its
        # executor took them: the node's callbacks never saw them.
        sent = scan.counts[cfg.rgb_topic] + scan.counts[cfg.thermal_topic]
        out["inputs_not_delivered"] = sent - got_rgb - got_th
    return out


def fused_receipts(playback: Playback) -> list[tuple[int, int]]:
    """(RGB stamp, receipt ns) of every fused output for a frame of the bag, repeats (passes) included."""
    items = ((stamp_of(data), t) for t, data in playback.received[topics.FUSED])
    return [(s, t) for s, t in items if s in playback.publish_ns]


def _pair_counts(scan: BagScan, cfg: ReplayConfig, outputs: Outputs, tally: OutputTally) -> dict[str, int]:
    return {
        "rgb_messages": scan.counts[cfg.rgb_topic],
        "thermal_messages": scan.counts[cfg.thermal_topic],
        "pairs_expected": scan.pairs_expected,
        "pairing_resets": scan.resets,
        "outputs_received": tally.received,
        "outputs_dropped": tally.dropped,
        "outputs_unexpected": tally.unexpected,
        "segmentation_received": len(outputs[topics.SEGMENTATION]),
        "segmentation_color_received": len(outputs[topics.SEGMENTATION_COLOR]),
    }


def _throughput(playback: Playback, scan: BagScan, outputs: Outputs) -> dict[str, Any]:
    receipts = sorted(t for t, _ in outputs[topics.FUSED].values())
    played_s = (playback.last_publish - playback.t0_wall) / 1e9
    # Rate between the first and last output: (n - 1) intervals, independent of start-up and drain.
    rate = (len(receipts) - 1) / ((receipts[-1] - receipts[0]) / 1e9) if len(receipts) > 2 else None
    return {
        "outputs": len(receipts),
        "replay_wall_s": played_s,
        "outputs_per_s": rate,
        "input_pairs_per_s": scan.pairs_expected / max(played_s, 1e-9),
        "warmup_ms": playback.warm_ms[0] if playback.warm_ms else None,
    }


def score_playback(job: ReplayJob, playback: Playback, warnings: list[str]) -> dict[str, Any]:
    """Latency by stamp, metrics on what arrived, the output bag on the bag's timeline, the report files."""
    bag, out, cfg, scan, labels = job.bag, job.out, job.cfg, job.scan, job.labels
    outputs = outputs_by_stamp(playback)
    receipts = fused_receipts(playback)
    tally = OutputTally.count(scan.expected_count, Counter(s for s, _ in receipts))
    if tally.unexpected:
        warnings.append(
            f"{tally.unexpected} outputs for RGB stamps the offline pairing does not pair (inputs lost on "
            "the wire, or arrival order differed); scored against the nearest thermal frame"
        )
    names, palette = class_info(playback, cfg)
    scorer = FrameScorer(names, palette, labels.by_stamp, cfg.contact_columns)
    score_frames(job, outputs, playback, scorer)
    bag_path = out / "output_bag" if cfg.write_bag else None
    if bag_path is not None:
        write_output_bag(bag_path, job, outputs, playback)
    sheet = scorer.sheet.save(out / "contact_sheet.png")
    latencies = [playback.latency_ms(s, t) for s, t in receipts]
    report: dict[str, Any] = {
        "title": "SC-CoSF live replay through the fusion node",
        "mode": "live (rclpy, DDS, the node's synchroniser and drop-oldest hand-off)",
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "bag": str(bag),
        "checkpoint": str(cfg.checkpoint or "shipped default"),
        "device": cfg.device,
        "threads": cfg.num_threads or "torch default",
        "rate": cfg.rate,
        "note": (
            "Latency = receipt wall time of /sccosf/fused minus publish wall time of the RGB frame with the "
            f"same stamp, in one process clock; {len(playback.warm_ms)} warm-up pair(s) excluded. The IR "
            "reference for fusion metrics is re-normalised here with the node's default normaliser."
        ),
        "topics": {"rgb": cfg.rgb_topic, "thermal": cfg.thermal_topic, "labels": cfg.label_topic},
        "pairing": {"slop_s": cfg.slop, "queue_size": cfg.queue_size},
        "pairs": _pair_counts(scan, cfg, outputs, tally),
        "node_counters": node_breakdown(playback, scan, cfg),
        "latency_ms": percentiles(latencies),
        "throughput": _throughput(playback, scan, outputs),
        "fusion": scorer.fusion_summary(),
        "segmentation": scorer.segmentation_summary(),
        "outputs": {
            "report_md": str(out / "report.md"),
            "report_json": str(out / "report.json"),
            "output_bag": str(bag_path) if bag_path else None,
            "contact_sheet": str(sheet) if sheet else None,
            "node_log": str(out / "node.log") if cfg.start_node else None,
        },
        "warnings": warnings + scorer.warnings,
    }
    if report["segmentation"] is None:
        report["segmentation_note"] = labels.note or "no label matched a received output's stamp: no mIoU"
    write_report(out, report)
    return report


__all__ = ["OUTPUTS", "percentiles", "score_playback"]
