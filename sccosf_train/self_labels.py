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
   bike their own; the five box-less classes ``boxless_conf``) and, with ``agree``, every view's own argmax
   is that class (off by default: on RoadScene it removed small objects, not mistakes);
3. ``unsure_objects="background"`` turns car/person/bike pixels that fail rule 2 into background (the model's
   unsure detections are taken as false: precision up, recall down); ``"ignore"`` leaves them unlabelled;
4. **shape priors** (``shapes``, person by default): each connected region the mean argmax gives a class
   with a prior is kept as that class only if it has the shape such objects have in a road scene (a
   standing person is taller than wide, compact, and small in the frame); a region that fails is left
   unlabelled (``misshapen="ignore"``, the default) or taught as background (``"background"``). Ignoring
   it scored better: on RoadScene's dev frames, after one round from the MSRS-only model, mean of car and
   person F 0.459 against 0.404 with "background", which taught the model to stop finding people (that
   run also trained 3 epochs against 7 in its budget, on a busier machine).
   Why a prior at all: on a new rig the model's mistakes are not less confident than its hits (RoadScene:
   "person" pixels at probability >= 0.9 lie in a person box 42 % of the time), but they have the wrong
   shape: sun-warmed foliage, windows and poles come out as wide, ragged or huge regions. Measured on the
   RoadScene training frames with the MSRS-only model, the prior alone takes person precision from 0.06 to
   0.28 at hit rate 0.53 (from 0.63): labels the model can learn its mistakes from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from sccosf_train.augment import IGNORE_INDEX

OBJECT_CLASSES = (1, 2, 3)  # car, person, bike (MSRS ids)


@dataclass(frozen=True)
class ShapePrior:
    """What a region of one class may look like: height/width ratio, solidity (area over its bounding box),
    and its area as a share of the frame."""

    aspect: tuple[float, float] = (1.1, 6.0)
    min_solidity: float = 0.45
    max_area_share: float = 0.08
    min_pixels: int = 6

    def accepts(self, stats: np.ndarray, frame_pixels: int) -> np.ndarray:
        """Per region (rows of ``cv2.connectedComponentsWithStats``' stats): whether it fits."""
        w, h, area = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT], stats[:, cv2.CC_STAT_AREA]
        ratio = h / np.maximum(w, 1)
        solidity = area / np.maximum(w * h, 1)
        return (
            (ratio >= self.aspect[0])
            & (ratio <= self.aspect[1])
            & (solidity >= self.min_solidity)
            & (area <= self.max_area_share * frame_pixels)
            & (area >= self.min_pixels)
        )


PERSON_SHAPE = ShapePrior()


@dataclass(frozen=True)
class SelfLabelRules:
    """Thresholds of the rules in the module docstring."""

    min_conf: float = 0.7
    class_conf: Mapping[int, float] = field(default_factory=lambda: {1: 0.8, 2: 0.5, 3: 0.9})
    boxless_conf: float = 0.95
    agree: bool = False
    unsure_objects: str = "ignore"
    shapes: Mapping[int, ShapePrior] = field(default_factory=lambda: {2: PERSON_SHAPE})
    misshapen: str = "ignore"

    def __post_init__(self) -> None:
        for name in ("unsure_objects", "misshapen"):
            if getattr(self, name) not in ("ignore", "background"):
                raise ValueError(f"{name} must be 'ignore' or 'background', got {getattr(self, name)!r}")
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
    misshapen_pixels = 0
    for c, prior in rules.shapes.items():
        _, regions, stats, _ = cv2.connectedComponentsWithStats((label == c).astype(np.uint8), connectivity=8)
        fits = prior.accepts(stats, label.size)
        fits[0] = True  # region 0 is everything else
        wrong = ~fits[regions]
        misshapen_pixels += int(wrong.sum())
        out[wrong] = 0 if rules.misshapen == "background" else IGNORE_INDEX
    counts = np.bincount(out[out < k], minlength=k)
    return out, {
        "pixels": int(label.size),
        "kept": int(keep.sum()),
        "not_confident": int((~confident).sum()),
        "views_disagree": int((confident & ~agree).sum()),
        "unsure_objects": int(unsure_obj.sum()),
        "misshapen": misshapen_pixels,
        "ignored": int((out == IGNORE_INDEX).sum()),
        "class_pixels": {int(i): int(n) for i, n in enumerate(counts)},
    }
