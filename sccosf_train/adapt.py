"""``sccosf-adapt``: adapt a model to a user's camera rig from unlabelled recordings, in bounded time.

Input: two image folders (``--rgb DIR --thermal DIR``, pairs by file name) or a bag (``BAG --rgb-topic T
--thermal-topic T``) from the user's cameras. Output in ``--out``: ``adapted.safetensors`` (the engine's
format; the node loads it with ``checkpoint:=...``), ``report.md`` / ``report.json`` (what changed, on pairs
held out of the adaptation) and the working folders (``pairs/``, ``round1/``, ...), which make a second run
with the same arguments resume instead of starting again.

How, with no labels (docs/training.md, "Adapting to a new rig"):

* **resolution**: a rig whose frames are smaller than the model's reference frame (640x480) runs the network
  at a higher internal scale, up to the pixels that frame gets (``ModelConfig.min_internal_pixels``), so its
  small objects are not lost; frames that size or larger are unchanged.
* **segmentation by self-training**: in each round the current model labels the pairs itself, averaged over
  test-time views (mirrored; scales 1 and 1.5, so small objects are seen large), keeping confident pixels
  and, for persons, only regions shaped like a person (:mod:`sccosf_train.self_labels`); the next model
  learns them from *augmented* views (camera-rig randomisation, scale): consistency between the view that
  labels and the view that learns. With
  ``--boxes`` (the user's detection boxes, YOLO files named like the images), box-corrected pseudo labels
  replace the self labels where a pair has boxes (:func:`sccosf_train.pseudo_labels.make_labels`).
* **fusion by its own objectives**: the trainer's no-reference fusion loss, with the fused image anchored to
  the start model's (it already fuses well on a new rig; the anchor keeps it).

It stops by itself: ``--minutes`` bounds the whole run (default 20) and every round gets its share.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sccosf_ros.checkpoint import load_checkpoint, read_checkpoint_meta, save_checkpoint
from sccosf_ros.engine import FusionEngine
from sccosf_ros.errors import ConfigError, SccosfError
from sccosf_ros.metrics.boxes import BoxDir
from sccosf_ros.paths import default_checkpoint_path
from sccosf_ros.report import json_safe
from sccosf_train import teachers
from sccosf_train.adapt_data import PairSource, collect_pairs, parse_homography
from sccosf_train.adapt_report import changed_share, markdown, measure
from sccosf_train.config import TrainConfig
from sccosf_train.dataset import find_image, read_thermal, read_visible
from sccosf_train.pseudo_labels import LabelRules, make_labels
from sccosf_train.self_labels import SelfLabelRules, self_labels
from sccosf_train.train import train

VIEW_SCALES = (1.0, 1.5)
BOX_RULES = LabelRules(outside_box="background", missed_core=0.6, boxless_min_conf=0.9)
# The training recipe of a round: the shipped model's loss weights (config/train_tiny.yaml, docs/training.md)
# with the fused image anchored to the start model, rig randomisation, and a constant learning rate (a round
# cut short by the budget then ends where a longer one would have passed).
RECIPE: dict[str, Any] = {
    "pretrained_encoder": "none",
    "val_split": "none",
    "synthetic_train": 0,
    "synthetic_val": 0,
    "crop": (256, 320),
    "batch_size": 8,
    "lr": 1e-4,
    "schedule": "constant",
    "warmup_steps": 5,
    "w_seg": 1.0,
    "w_fusion": 1.0,
    "w_int": 4.0,
    "w_grad": 10.0,
    "w_ssim": 4.0,
    "fg_weight": 4.0,
    "fg_target": "max",
    "grad_mode": "floor",
    "w_anchor": 20.0,
    "seg_class_weights": "none",
    "aug_rig": True,
    "aug_aspect": 0.15,
    "workers": 1,
    "progress": False,
    "tensorboard": False,
    "log_every": 5,
}


@dataclass(frozen=True)
class AdaptSettings:
    """Everything that decides what a run does (a resumed run must have the same)."""

    source: PairSource
    start: str
    boxes: str | None
    box_ignore: str | None
    rounds: int
    epochs_per_round: int
    holdout: float
    repeat: int
    scale: tuple[float, float]
    rules: SelfLabelRules
    keep_start: float = 0.5


def split_names(names: list[str], holdout: float) -> tuple[list[str], list[str]]:
    """(adapt, held out): the last ``holdout`` share, a contiguous block (neighbouring frames of a recording
    are near copies, so a block keeps the report honest), at least one pair each."""
    n_hold = min(len(names) - 1, max(1, round(len(names) * holdout)))
    return names[: len(names) - n_hold], names[len(names) - n_hold :]


def label_round(
    teacher_ckpt: str,
    folder: Path,
    names: list[str],
    out: Path,
    settings: AdaptSettings,
    boxes: BoxDir | None,
) -> float:
    """Write ``out/NAME.png`` labels for ``names`` from ``teacher_ckpt``; returns the labelled share."""
    out.mkdir(parents=True, exist_ok=True)
    teacher = teachers.load_teacher("sccosf", teacher_ckpt)
    labelled = pixels = 0
    for name in names:
        rgb = read_visible(find_image(folder / "vi", name))
        ir = read_thermal(find_image(folder / "ir", name))
        views = list(teachers.view_probs(teacher, rgb, ir, True, VIEW_SCALES).values())
        frame_boxes = boxes.boxes(name, rgb.shape[1], rgb.shape[0]) if boxes is not None else None
        if frame_boxes is None:
            label, _ = self_labels(views, settings.rules)
        else:
            label, _ = make_labels(np.mean(views, 0), frame_boxes, BOX_RULES)
        if not cv2.imwrite(str(out / f"{name}.png"), label):
            raise OSError(f"cannot write {out / f'{name}.png'}")
        labelled += int((label != 255).sum())
        pixels += label.size
    return labelled / max(1, pixels)


def round_config(
    settings: AdaptSettings,
    folder: Path,
    labels: Path,
    split: Path,
    run: Path,
    teacher: str,
    minutes: float,
    threads: int | None,
) -> TrainConfig:
    lo, hi = settings.scale
    spec = f"root={folder},labels={labels},split={split},repeat={settings.repeat},scale={lo}:{hi}"
    meta = read_checkpoint_meta(settings.start)
    resume = (run / "last_state.pt").is_file()
    return TrainConfig(
        **RECIPE,
        preset=meta.preset,
        num_classes=meta.num_classes,
        extra_real=(spec,),
        epochs=settings.epochs_per_round,
        fusion_anchor=settings.start,
        init_from=None if resume else teacher,
        resume=str(run) if resume else None,
        out=str(run),
        max_minutes=max(minutes, 0.05),
        threads=threads,
    )


REFERENCE_FRAME = (480, 640)  # the frame size the shipped models are tuned and timed for


def rig_floor(start: str) -> int:
    """The resolution floor for the rig: at least the network pixels a reference frame gets (for a preset
    that runs below full resolution), never lower than the start model's own."""
    cfg = read_checkpoint_meta(start).config
    scale = float(cfg.get("internal_scale", 1.0))
    reference = int(REFERENCE_FRAME[0] * REFERENCE_FRAME[1] * scale * scale) if scale < 1.0 else 0
    return max(int(cfg.get("min_internal_pixels", 0)), reference)


def with_floor(src: str | Path, dst: Path, floor: int, record: dict[str, Any] | None = None) -> Path:
    """``src``'s weights as ``dst`` with the resolution floor (and an adaptation record) in its metadata."""
    state, meta = load_checkpoint(src)
    return save_for_rig(dst, state, meta, floor, record)


def save_for_rig(
    dst: Path, state: dict[str, Any], meta: Any, floor: int, record: dict[str, Any] | None = None
) -> Path:
    """``state`` saved as ``dst`` with the resolution floor (and an adaptation record) in ``meta``."""
    meta.config = {**meta.config, "min_internal_pixels": int(floor)}
    if record is not None:
        meta.training = {**meta.training, "sccosf_adapt": record}
    return save_checkpoint(dst, state, meta)


def blend(start: str | Path, trained: str | Path, keep_start: float) -> tuple[dict[str, Any], Any]:
    """Weights ``keep_start * start + (1 - keep_start) * trained`` (both of one lineage), ``trained``'s
    metadata. Why: self-training on one rig forgets the others (an MSRS-only model adapted on RoadScene
    lost MSRS person F 0.76 -> 0.36); averaging the weights of the start and the fine-tuned model keeps most
    of either's skill (weight-space ensembling, Wortsman et al., CVPR 2022, "WiSE-FT")."""
    a, _ = load_checkpoint(start)
    b, meta = load_checkpoint(trained)
    if a.keys() != b.keys():
        raise ConfigError(f"cannot blend {start} and {trained}: different networks")
    out = {
        k: (
            (keep_start * a[k].float() + (1.0 - keep_start) * v.float()).to(v.dtype)
            if v.is_floating_point()
            else v
        )
        for k, v in b.items()
    }
    return out, meta


def _state(out: Path, settings: AdaptSettings) -> dict[str, Any]:
    """What earlier runs with the same settings finished (resume); a different setting starts afresh."""
    path = out / "adapt_state.json"
    key = json.loads(json.dumps(asdict(settings), default=str))
    if path.is_file():
        state = json.loads(path.read_text())
        if state.get("settings") == key:
            return state
    return {"settings": key, "rounds": []}


def adapt(settings: AdaptSettings, out: Path, minutes: float, threads: int | None) -> dict[str, Any]:
    """The whole run; returns the report (also written to ``out``)."""
    t0 = time.perf_counter()
    deadline = t0 + 60.0 * minutes
    folder = out / "pairs"
    names = collect_pairs(settings.source, folder)
    adapt_names, held = split_names(names, settings.holdout)
    split = out / "adapt_split.txt"
    split.write_text("\n".join(adapt_names) + "\n")
    boxes = BoxDir(settings.boxes, ignore=settings.box_ignore) if settings.boxes else None
    state = _state(out, settings)
    floor = rig_floor(settings.start)
    start_for_rig = with_floor(settings.start, out / "start_for_rig.safetensors", floor)
    teacher = state["rounds"][-1]["checkpoint"] if state["rounds"] else str(start_for_rig)
    stopped = False
    for r in range(len(state["rounds"]) + 1, settings.rounds + 1):
        t_round = time.perf_counter()
        labelled_by = teacher
        labels = out / f"round{r}" / "labels"
        share = label_round(teacher, folder, adapt_names, labels, settings, boxes)
        left = (deadline - time.perf_counter()) / 60.0
        budget = left / (settings.rounds - r + 1)
        run = out / f"round{r}" / "train"
        summary = train(
            round_config(settings, folder, labels, split, run, teacher, budget, threads), ["sccosf-adapt"]
        )
        teacher = str(with_floor(run / "last.safetensors", run / "last_for_rig.safetensors", floor))
        # a round that used its share goes on to the next; the whole run ends at the deadline
        stopped = time.perf_counter() > deadline
        state["rounds"].append({
            "round": r, "teacher": labelled_by, "checkpoint": teacher,
            "labelled_share": share, "epochs": summary["epochs_completed"], "stopped_by_time": stopped,
            "minutes": (time.perf_counter() - t_round) / 60.0,
        })  # fmt: skip
        (out / "adapt_state.json").write_text(json.dumps(state, indent=1))
        if stopped:
            break
    record = {"rounds": state["rounds"], "min_internal_pixels": floor, "keep_start": settings.keep_start}
    weights, meta = blend(start_for_rig, teacher, settings.keep_start)
    adapted = save_for_rig(out / "adapted.safetensors", weights, meta, floor, record)
    before, m0 = measure(FusionEngine(settings.start, device="cpu", backend="torch"), folder, held, boxes)
    after, m1 = measure(FusionEngine(adapted, device="cpu", backend="torch"), folder, held, boxes)
    report = {
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "start": settings.start,
        "adapted": str(adapted),
        "pairs": {"adapt": len(adapt_names), "holdout": len(held), "holdout_names": held},
        "minutes": minutes,
        "wall_s": time.perf_counter() - t0,
        "stopped_by_time": stopped,
        "keep_start": settings.keep_start,
        "min_internal_pixels": {
            "start": int(read_checkpoint_meta(settings.start).config.get("min_internal_pixels", 0)),
            "adapted": floor,
        },
        "rounds": state["rounds"],
        "before": before,
        "after": after,
        "changed_share": changed_share(m0, m1),
    }
    (out / "report.json").write_text(json.dumps(json_safe(report), indent=1))
    (out / "report.md").write_text(markdown(report))
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sccosf-adapt", description=__doc__.split("\n\n")[0])
    p.add_argument("bag", nargs="?", help="a rosbag2 folder or file with the rig's two image topics")
    p.add_argument("--rgb", help="folder of RGB images (pairs by file name with --thermal)")
    p.add_argument("--thermal", help="folder of thermal images")
    p.add_argument("--rgb-topic", default=PairSource.rgb_topic)
    p.add_argument("--thermal-topic", default=PairSource.thermal_topic)
    p.add_argument("--homography", help="thermal -> RGB homography, 9 numbers (sccosf-register writes it)")
    p.add_argument(
        "--out", required=True, help="output folder (a second run with the same arguments resumes)"
    )
    p.add_argument("--checkpoint", help="model to start from (default: the shipped model)")
    p.add_argument("--boxes", help="your detection boxes (YOLO NAME.txt, classes 0 person, 1 bicycle, 2 car)")
    p.add_argument("--box-ignore", help="don't-care boxes NAME.txt (objects cut by the frame edge)")
    p.add_argument("--minutes", type=float, default=20.0, help="time budget of the whole run (default 20)")
    p.add_argument("--rounds", type=int, default=2, help="self-training rounds (default 2)")
    p.add_argument("--epochs-per-round", type=int, default=8, help="at most this many epochs a round")
    p.add_argument(
        "--max-pairs", type=int, default=200, help="use at most this many pairs, spread over the input"
    )
    p.add_argument("--holdout", type=float, default=0.2, help="share of pairs held out for the report (0.2)")
    p.add_argument(
        "--keep-start", type=float, default=0.5,
        help="share of the start model's weights in the output (0: the self-trained model alone; 0.5)",
    )  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return p


def settings_from_args(args: argparse.Namespace) -> AdaptSettings:
    source = PairSource(args.rgb, args.thermal, args.bag, args.rgb_topic, args.thermal_topic,
                        parse_homography(args.homography), args.max_pairs)  # fmt: skip
    start = str(Path(args.checkpoint) if args.checkpoint else default_checkpoint_path())
    read_checkpoint_meta(start)  # a missing or corrupt checkpoint fails here, before any work
    for name, value, ok in (
        ("--minutes", args.minutes, args.minutes > 0),
        ("--rounds", args.rounds, args.rounds >= 1),
        ("--epochs-per-round", args.epochs_per_round, args.epochs_per_round >= 1),
        ("--holdout", args.holdout, 0 < args.holdout < 1),
        ("--keep-start", args.keep_start, 0 <= args.keep_start < 1),
    ):
        if not ok:
            raise ConfigError(f"{name} out of range: {value}")
    return AdaptSettings(source, start, args.boxes, args.box_ignore, args.rounds, args.epochs_per_round,
                         args.holdout, 4, (0.6, 1.6), SelfLabelRules(), args.keep_start)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        report = adapt(settings, out, args.minutes, args.threads)
    except (SccosfError, OSError, ValueError) as exc:
        print(f"sccosf-adapt: error: {exc}", file=sys.stderr)
        return 2
    print((out / "report.md").read_text())
    print(f"adapted model: {report['adapted']} ({report['wall_s'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
