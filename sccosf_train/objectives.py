"""What a training step optimises: callables from (network outputs, batch) to named losses with a "total".

The loop (:mod:`sccosf_train.train`) calls one :data:`Objective` and knows nothing of its terms, so a new
loss or a teacher run inside one plugs in here (or through ``train(objective=...)``) without touching it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from sccosf_train.config import TrainConfig
from sccosf_train.losses import LossWeights, joint_loss

Objective = Callable[[dict[str, Tensor], dict[str, Tensor]], dict[str, Tensor]]
"""(network outputs, batch on the device) -> named losses, ``"total"`` being the one optimised."""


class JointObjective:
    """The default objective: segmentation cross-entropy plus the fusion loss (:func:`joint_loss`)."""

    def __init__(self, weights: LossWeights) -> None:
        self.weights = weights

    def __call__(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return joint_loss(
            {k: v.float() for k, v in outputs.items()},
            batch["rgb"],
            batch["thermal"],
            batch["labels"],
            batch["has_labels"],
            self.weights,
        )


class FusionAnchor:
    """Another objective plus ``weight`` × L1 between the fused luminance and a frozen reference model's.

    Why: training the shared network for a new segmentation target moves the features the fusion decoder
    reads, and the no-reference fusion metrics drift with them (measured: MI −0.32, VIF −0.03 on held-out
    training pairs after 12 epochs, not recovered by retraining the ReAW head). Anchoring the fused image to
    the model it started from keeps what the fusion had learnt while the segmentation learns anew (the
    "learning without forgetting" idea, Li and Hoiem, ECCV 2016), at the cost of one forward pass of the
    reference per step.
    """

    def __init__(self, base: Objective, reference: torch.nn.Module, weight: float) -> None:
        self.base = base
        self.reference = reference.eval().requires_grad_(False)
        self.weight = float(weight)

    def __call__(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        losses = dict(self.base(outputs, batch))
        with torch.no_grad():
            target = self.reference(batch["rgb"], batch["thermal"])["fused_y"].float()
        anchor = F.l1_loss(outputs["fused_y"].float(), target)
        losses["anchor"] = anchor
        losses["total"] = losses["total"] + self.weight * anchor
        return losses


def make_objective(
    cfg: TrainConfig, class_weights: tuple[float, ...] | None, device: torch.device
) -> Objective:
    """The objective a configuration describes: the joint loss, anchored to ``--fusion-anchor`` if given."""
    objective: Objective = JointObjective(cfg.loss_weights(class_weights))
    if cfg.fusion_anchor:
        from sccosf_ros.checkpoint import build_from_checkpoint

        reference, _ = build_from_checkpoint(Path(cfg.fusion_anchor))
        # Training runs every network at its preset's internal scale; a checkpoint's resolution floor for
        # small frames (an inference setting) would run the reference on training crops at full size.
        reference.config = replace(reference.config, min_internal_pixels=0)
        objective = FusionAnchor(objective, reference.to(device), cfg.w_anchor)
    return objective
