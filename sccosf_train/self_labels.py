"""Labels a model gives itself on an unlabelled rig: its confident, view-consistent predictions only.

Why: adapting to a user's cameras (``sccosf-adapt``) has no labels and, on a new rig, no trustworthy teacher
(MFNet collapses on RoadScene). What the model predicts with high confidence *and* the same way in every
test-time view (mirrored, rescaled) is mostly right (measured on RoadScene training frames: car pixels at
mean probability >= 0.9 lie inside a car box 98 % of the time), and training on it with strong
augmentation teaches the network the new rig's appearance (self-training; consistency between a clean view
that labels and an augmented view that learns). Everything else is ignored (255): the loss neither rewards
nor punishes it.

Rules, per pixel, on the views' mean probabilities ``p`` (K, H, W):

1. the class is the argmax of ``p``; its confidence the max;
2. a pixel is kept when its confidence reaches its class's threshold (background ``min_conf``; car, person,
   bike their own, stricter ones; the five box-less classes ``boxless_conf``) and, with ``agree``, every
   view's own argmax is that class;
3. ``unsure_objects="background"`` turns car/person/bike pixels that fail rule 2 into background (the model's
   unsure detections are taken as false: precision up, recall down); ``"ignore"`` leaves them unlabelled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sccosf_train.augment import IGNORE_INDEX

OBJECT_CLASSES = (1, 2, 3)  # car, person, bike (MSRS ids)


@dataclass(frozen=True)
class SelfLabelRules:
    """Thresholds of the rules in the module docstring."""

    min_conf: float = 0.6
    class_conf: Mapping[int, float] = field(default_factory=lambda: {1: 0.9, 2: 0.95, 3: 0.95})
    boxless_conf: float = 0.95
    agree: bool = True
    unsure_objects: str = "ignore"

    def __post_init__(self) -> None:
        if self.unsure_objects not in ("ignore", "background"):
            raise ValueError(f"unsure_objects must be 'ignore' or 'background', got {self.unsure_objects!r}")
        for name, v in (
            ("min_conf", self.min_conf),
            ("boxless_conf", self.boxless_conf),
            *self.class_conf.items(),
        ):
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"threshold {name} must be in [0, 1], got {v}")

    def thresholds(self, num_classes: int) -> np.ndarray:
        """Per class id: the confidence a pixel of that class needs."""
        t = np.full(num_classes, self.boxless_conf, np.float32)
        t[0] = self.min_conf
        for c, v in self.class_conf.items():
            if 0 <= c < num_classes:
                t[c] = v
        return t


def self_labels(
    views: Sequence[np.ndarray], rules: SelfLabelRules = SelfLabelRules()
) -> tuple[np.ndarray, dict[str, Any]]:
    """Class-id labels (H, W) uint8 (255 = ignore) from the probabilities (K, H, W) of each test-time view,
    all on the pair's own grid, and a record of how many pixels each rule kept or dropped."""
    if not views:
        raise ValueError("self_labels needs at least one view")
    stack = np.asarray(views, np.float32)
    if stack.ndim != 4:
        raise ValueError(f"views must be (K, H, W) arrays, got {stack.shape[1:]}")
    k = stack.shape[1]
    mean = stack.mean(0)
    label = mean.argmax(0).astype(np.uint8)
    confident = mean.max(0) >= rules.thresholds(k)[label]
    agree = np.all(stack.argmax(1) == label, axis=0) if rules.agree else np.ones(label.shape, bool)
    keep = confident & agree
    out = np.where(keep, label, IGNORE_INDEX).astype(np.uint8)
    unsure_obj = np.isin(label, OBJECT_CLASSES) & ~keep
    if rules.unsure_objects == "background":
        out[unsure_obj] = 0
    counts = np.bincount(out[out < k], minlength=k)
    return out, {
        "pixels": int(label.size),
        "kept": int(keep.sum()),
        "not_confident": int((~confident).sum()),
        "views_disagree": int((confident & ~agree).sum()),
        "unsure_objects": int(unsure_obj.sum()),
        "ignored": int((out == IGNORE_INDEX).sum()),
        "class_pixels": {int(i): int(n) for i, n in enumerate(counts)},
    }
