"""Logit adjustment of a class-weighted segmentation head, tuned on validation data.

``python -m sccosf_train.calibrate SRC.safetensors OUT.safetensors`` (synthetic validation scenes, mIoU) or
``... --msrs-root ../shared/data/msrs --split config/msrs_dev_split.txt`` (real pairs, the box score's
mean F against their detection boxes; never the test pairs).

Why: cross-entropy with class weights ``w_c`` (ENet's, up to ~47 for thin classes) trains logits that are
shifted by about ``log w_c`` from calibrated ones, so rare classes are over-predicted: on the validation
scenes the shipped head found 81 % of bike pixels at 32 % precision. Subtracting ``alpha * log w_c``
from the logits (logit adjustment, Menon et al., ICLR 2021) trades some of that recall back for
precision; ``alpha`` = 1 undoes the weighting entirely, which maximises accuracy, not IoU, so ``alpha`` is
chosen on validation data: the trainer's synthetic validation stream (never the held-out test stream of the
model card), or real pairs held out of training scored with the box score.

The shift is folded into the bias of the layer that produces the logits (the refinement's last
convolution, or the coarse head's without one): a constant per class survives bilinear upsampling
exactly, so the network and the engine are unchanged, and the fused image is untouched (ReAW does not read
the logits). The choice and every candidate's validation mIoU are recorded in the metadata.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sccosf_ros.checkpoint import load_checkpoint, save_checkpoint
from sccosf_ros.engine import FusionEngine
from sccosf_ros.metrics.boxes import Box, BoxDir, BoxScore
from sccosf_ros.metrics.segmentation import ConfusionMatrix
from sccosf_synth.scenes import generate_scene
from sccosf_train.dataset import SyntheticDataset, find_image, read_split_file, read_thermal, read_visible

DEFAULT_ALPHAS = (0.0, 0.25, 0.5, 0.625, 0.75, 1.0)
_SEG_MODULES = ("icrm.head", "icrm.refine")


def logit_bias_key(state: dict[str, torch.Tensor]) -> str:
    """Name of the bias that produces the segmentation logits (refinement first, else the coarse head)."""
    if "icrm.refine.out.bias" in state:
        return "icrm.refine.out.bias"
    heads = sorted(k for k in state if k.startswith("icrm.head.") and k.endswith(".bias"))
    if not heads:
        raise KeyError("no segmentation head bias in this checkpoint")
    return max(heads, key=lambda k: int(k.split(".")[2]))  # the head's last layer


def training_class_weights(training: dict[str, Any]) -> list[float]:
    """Class weights of the latest stage that trained the segmentation head (walks ``init_from_training``)."""
    record: dict[str, Any] | None = training
    while record:
        only = record.get("config", {}).get("train_only") or []
        trained_seg = not only or any(p in _SEG_MODULES for p in only)
        weights = record.get("data", {}).get("seg_class_weights")
        if trained_seg:
            if weights is None:
                raise ValueError(
                    "the stage that trained the segmentation head used no class weights: nothing to adjust"
                )
            return [float(v) for v in weights]
        record = record.get("data", {}).get("init_from_training")
    raise ValueError("no training record of the segmentation head in this checkpoint's metadata")


def validation_logits(
    engine: FusionEngine, n: int, seed: int, size: tuple[int, int]
) -> list[tuple[torch.Tensor, np.ndarray]]:
    """(log class probabilities, labels) of ``n`` synthetic validation scenes, through the engine (the path
    the node and the model card use). Log-probabilities differ from logits by a per-pixel constant, so a
    per-class shift changes their argmax exactly as it changes the logits'."""
    data = SyntheticDataset(n, seed, size)
    out = []
    for i in range(n):
        scene = generate_scene(data.scene_seed(i), *size)
        probs = engine.infer(scene.rgb, scene.thermal, return_probs=True).probs
        assert probs is not None
        out.append((torch.from_numpy(probs).log(), scene.labels))
    return out


def real_logits(
    engine: FusionEngine, root: str, names: Sequence[str], boxes: BoxDir
) -> list[tuple[torch.Tensor, list[Box]]]:
    """(log class probabilities, detection boxes) of real pairs that have box files, through the engine."""
    out = []
    for name in names:
        rgb = read_visible(find_image(Path(root) / "vi", name))
        ir = read_thermal(find_image(Path(root) / "ir", name))
        frame_boxes = boxes.boxes(name, rgb.shape[1], rgb.shape[0])
        if frame_boxes is None:
            continue
        probs = engine.infer(rgb, ir, return_probs=True).probs
        assert probs is not None
        out.append((torch.from_numpy(probs).log(), frame_boxes))
    return out


def box_f_with_shift(
    samples: Sequence[tuple[torch.Tensor, list[Box]]], shift: torch.Tensor, num_classes: int
) -> float:
    score = BoxScore(num_classes)
    for logits, boxes in samples:
        score.update((logits + shift[:, None, None]).argmax(0).to(torch.uint8).numpy(), boxes)
    return float(score.result()["mean_F"])


def miou_with_shift(
    samples: Sequence[tuple[torch.Tensor, np.ndarray]], shift: torch.Tensor, num_classes: int
) -> float:
    cm = ConfusionMatrix(num_classes, ignore_index=255)
    for logits, labels in samples:
        cm.update((logits + shift[:, None, None]).argmax(0).numpy(), labels)
    return cm.miou()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", help="checkpoint whose segmentation head was trained with class weights")
    p.add_argument("dst", help="calibrated checkpoint to write")
    p.add_argument("--alphas", type=float, nargs="+", default=DEFAULT_ALPHAS, help="candidates for alpha")
    p.add_argument("--scenes", type=int, default=16, help="synthetic validation scenes")
    p.add_argument(
        "--seed",
        type=int,
        default=10_001,
        help="their seed stream (the trainer's validation stream: synthetic_seed + 10000)",
    )
    p.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    p.add_argument(
        "--msrs-root", help="score real pairs of this MSRS-layout folder with the box score instead"
    )
    p.add_argument("--split", help="with --msrs-root: a file of pair names held out of training")
    p.add_argument("--boxes", help="with --msrs-root: box folder (default MSRS_ROOT/boxes)")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.msrs_root and not args.split:
        p.error("--msrs-root needs --split (pairs held out of training, never the test pairs)")

    state, meta = load_checkpoint(args.src)
    if "calibration" in meta.training:
        raise SystemExit(f"{args.src} is already calibrated ({meta.training['calibration']['method']})")
    log_w = torch.log(torch.tensor(training_class_weights(meta.training)))
    with FusionEngine(args.src, device="cpu") as engine:
        if args.msrs_root:
            names = read_split_file(args.split)
            boxes = BoxDir(args.boxes or f"{args.msrs_root}/boxes")
            samples: Any = real_logits(engine, args.msrs_root, names, boxes)
            score_fn, what = box_f_with_shift, "box-score mean F"
            validation = {"pairs": len(samples), "msrs_root": args.msrs_root, "split": args.split}
        else:
            samples = validation_logits(engine, args.scenes, args.seed, tuple(args.size))
            score_fn, what = miou_with_shift, "mIoU"
            validation = {"scenes": args.scenes, "seed": args.seed, "size": list(args.size)}
    scores = {a: score_fn(samples, -a * log_w, meta.num_classes) for a in args.alphas}
    best = max(scores, key=lambda a: (scores[a], -a))  # ties: the smaller change
    key = logit_bias_key(state)
    bias = state[key]
    state[key] = (bias.double() - best * log_w.double()).to(bias.dtype)
    meta.training = {
        **meta.training,
        "calibration": {
            "method": "logit adjustment: logits - alpha * log(class weight)",
            "alpha": best,
            "bias": key,
            "class_weights": [round(math.exp(v), 4) for v in log_w.tolist()],
            "validation": {
                **validation,
                "metric": what,
                "score_by_alpha": {str(a): round(s, 4) for a, s in scores.items()},
            },
            "source": str(args.src),
        },
    }
    save_checkpoint(args.dst, state, meta)
    for a, s in scores.items():
        print(f"alpha {a:<6g} validation {what} {s:.4f}{'  <- chosen' if a == best else ''}")
    print(f"wrote {args.dst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
