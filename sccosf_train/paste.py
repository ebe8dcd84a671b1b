"""Copy-paste of labelled objects into training frames, for classes that are small and rare on a rig.

Why: a second rig's few training frames hold 30 persons and 5 bicycles, and the model misses small, distant
people there. Pasting objects cut from labelled frames (both rigs) onto other frames gives many more
examples of them on that rig's backgrounds (simple copy-paste: Ghiasi et al., CVPR 2021). An object is a
connected region of the chosen classes in a label map (a rider and its bicycle stay one object, each pixel
keeping its class); regions touching the frame edge (cut objects) and tiny ones are not used. Pasting
happens on the raw frames, before the camera randomisation and the geometric augmentation, so a pasted
object goes through the same simulated sensor as its new background.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from sccosf_train.augment import IGNORE_INDEX


@dataclass(frozen=True)
class PasteConfig:
    """How many objects a training frame receives and how tall they are."""

    max_objects: int = 3  # each labelled frame receives 0..max_objects objects (uniform)
    height: tuple[float, float] = (0.04, 0.3)  # object height / frame height, drawn log-uniform
    max_upscale: float = 1.5  # never enlarge an object more than this (it would only blur)
    ground: float = 0.4  # an object's bottom edge lies in the frame's lower (1 - ground) part

    def __post_init__(self) -> None:
        lo, hi = self.height
        if self.max_objects < 0:
            raise ValueError(f"paste: max_objects must be >= 0, got {self.max_objects}")
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"paste: height must be 0 < low <= high <= 1, got {self.height}")


@dataclass(frozen=True)
class PasteObject:
    """One object: its pixels in both images and its label patch (255 outside the object)."""

    rgb: np.ndarray  # h x w x 3 uint8
    thermal: np.ndarray  # h x w uint8
    labels: np.ndarray  # h x w uint8


def cut_objects(
    rgb: np.ndarray,
    thermal: np.ndarray,
    labels: np.ndarray,
    classes: Iterable[int],
    min_pixels: int = 64,
    min_height: int = 12,
    max_ignored_outline: float = 0.2,
) -> list[PasteObject]:
    """The objects of ``classes`` in one labelled frame (8-connected regions). Left out: regions touching
    the frame edge, and regions whose outline is mostly ignored pixels (more than ``max_ignored_outline`` of
    it), whose extent the labels do not know (e.g. a pseudo label's box core for an object the teacher
    missed)."""
    mask = np.isin(labels, list(classes)).astype(np.uint8)
    n, comp, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    h_img, w_img = labels.shape
    out = []
    for i in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[i])
        if area < min_pixels or h < min_height or x == 0 or y == 0 or x + w == w_img or y + h == h_img:
            continue
        own = comp[y : y + h, x : x + w] == i
        y0, x0 = y - 1, x - 1  # the outline: one pixel around the region (inside the frame, see above)
        ring = cv2.dilate(np.pad(own, 1).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        ring &= ~np.pad(own, 1)
        if (labels[y0 : y + h + 1, x0 : x + w + 1][ring] == IGNORE_INDEX).mean() > max_ignored_outline:
            continue
        lab = np.where(own, labels[y : y + h, x : x + w], IGNORE_INDEX).astype(np.uint8)
        out.append(PasteObject(rgb[y : y + h, x : x + w].copy(), thermal[y : y + h, x : x + w].copy(), lab))
    return out


class ObjectBank:
    """Objects to paste, drawn class-balanced: each draw picks a class (by an object's most frequent class),
    then one of its objects, so a rare class (bicycles) is pasted as often as a common one."""

    def __init__(self, objects: Iterable[PasteObject]) -> None:
        self.by_class: dict[int, list[PasteObject]] = {}
        for obj in objects:
            ids, counts = np.unique(obj.labels[obj.labels != IGNORE_INDEX], return_counts=True)
            self.by_class.setdefault(int(ids[np.argmax(counts)]), []).append(obj)
        self.classes = sorted(self.by_class)

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_class.values())

    def counts(self) -> dict[int, int]:
        return {c: len(self.by_class[c]) for c in self.classes}

    def draw(self, rng: np.random.Generator) -> PasteObject:
        objs = self.by_class[self.classes[int(rng.integers(len(self.classes)))]]
        return objs[int(rng.integers(len(objs)))]

    def paste(
        self,
        rgb: np.ndarray,
        thermal: np.ndarray,
        labels: np.ndarray,
        rng: np.random.Generator,
        cfg: PasteConfig,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Copies of the three arrays with 0..``cfg.max_objects`` objects pasted (later ones on top)."""
        if not self.classes or cfg.max_objects == 0:
            return rgb, thermal, labels
        rgb, thermal, labels = rgb.copy(), thermal.copy(), labels.copy()
        h_img, w_img = labels.shape
        for _ in range(int(rng.integers(cfg.max_objects + 1))):
            obj = self.draw(rng)
            target = h_img * float(np.exp(rng.uniform(np.log(cfg.height[0]), np.log(cfg.height[1]))))
            s = min(target / obj.labels.shape[0], cfg.max_upscale)
            h, w = (max(1, round(d * s)) for d in obj.labels.shape)
            if h > h_img or w > w_img:
                continue
            interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
            o_rgb = cv2.resize(obj.rgb, (w, h), interpolation=interp)
            o_th = cv2.resize(obj.thermal, (w, h), interpolation=interp)
            o_lab = cv2.resize(obj.labels, (w, h), interpolation=cv2.INTER_NEAREST)
            if rng.random() < 0.5:
                o_rgb, o_th, o_lab = o_rgb[:, ::-1], o_th[:, ::-1], o_lab[:, ::-1]
            bottom = int(rng.uniform(max(cfg.ground * h_img, h), h_img + 1))
            top, left = bottom - h, int(rng.integers(w_img - w + 1))
            m = o_lab != IGNORE_INDEX
            region = (slice(top, bottom), slice(left, left + w))
            rgb[region][m], thermal[region][m], labels[region][m] = o_rgb[m], o_th[m], o_lab[m]
        return rgb, thermal, labels
