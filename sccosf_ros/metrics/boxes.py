"""A segmentation score from detection boxes: real-data evidence where no pixel labels exist.

Why: pixel labels are rare and expensive; detection boxes (person, bicycle, car) are common and, for MSRS,
public. Boxes cannot say which pixels of a rectangle belong to the object, but they can say two things a
segmentation must get right: pixels of a class far from any box of that class are wrong (*precision*), and
an annotated object whose box holds almost none of its class was missed (*hit rate*). Definition, choices
and limits: ``docs/metrics.md`` ("Box score").

Conventions (all documented there):

* box files are YOLO text, ``class cx cy w h`` normalised to [0, 1]; MSRS detection classes 0 person,
  1 bicycle, 2 car map to mask ids 2, 3, 1 (:data:`YOLO_TO_MSRS`);
* a box covers the pixels whose centre lies inside it (edges ``(cx ± w/2)·W`` etc., half-open), clipped to
  the image; a box thinner than one pixel keeps the pixel under its centre;
* objects: the boxes of one class from every variant (fused / infrared / visible annotations) are merged
  where two overlap with pixel IoU > 0.5, transitively (union-find); an object's region for hit and fill
  is the union of its group's boxes (every pixel some annotator put in that object's box);
* sums are accumulated over all frames (like a confusion matrix), so big and small frames count by pixels
  and objects, not per frame.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sccosf_ros.errors import InputError

YOLO_TO_MSRS: Mapping[int, int] = {0: 2, 1: 3, 2: 1}  # person, bicycle, car -> MSRS person, bike, car
BOX_CLASSES: Mapping[int, str] = {1: "car", 2: "person", 3: "bike"}  # MSRS ids the boxes can judge
BOXLESS_CLASSES: tuple[int, ...] = (4, 5, 6, 7, 8)  # curve, car_stop, guardrail, color_cone, bump
BOX_VARIANTS: tuple[str, ...] = ("fusion", "infrared", "visible")
MIN_COVER = 0.25  # an object is hit when its class covers at least this share of its box
MERGE_IOU = 0.5  # boxes of one class with IoU above this are one object
OBJECT_BOX_POLICIES = ("union", "mean", "max")


class BoxFileError(InputError):
    """A box file cannot be parsed; the message names the file and line."""


@dataclass(frozen=True)
class Box:
    """A box in pixels, half-open ``[x0, x1) x [y0, y1)``, with its MSRS class id and where it came from."""

    cls: int
    x0: int
    y0: int
    x1: int
    y1: int
    source: str = ""

    @property
    def area(self) -> int:
        return max(0, self.x1 - self.x0) * max(0, self.y1 - self.y0)


def _pixel_span(lo: float, hi: float, size: int) -> tuple[int, int]:
    """Pixels whose centre ``i + 0.5`` lies in ``[lo, hi)``, clipped to ``[0, size)``; at least the pixel
    under the centre when the span is thinner than a pixel (a box is never empty)."""
    a = max(0, min(size, math.ceil(lo - 0.5)))
    b = max(0, min(size, math.ceil(hi - 0.5)))
    if b <= a:
        c = min(size - 1, max(0, math.floor((lo + hi) / 2)))
        a, b = c, c + 1
    return a, b


def box_from_edges(
    cls: int, x0: float, y0: float, x1: float, y1: float, width: int, height: int, source: str = ""
) -> Box:
    """A :class:`Box` from continuous pixel edges (rounded by pixel centres, see the module docstring)."""
    a, b = _pixel_span(x0, x1, width)
    c, d = _pixel_span(y0, y1, height)
    return Box(int(cls), a, c, b, d, source)


def yolo_box(
    cls: int, cx: float, cy: float, w: float, h: float, width: int, height: int, source: str = ""
) -> Box:
    """A normalised YOLO box (centre, size in [0, 1]) on a ``width`` x ``height`` image."""
    return box_from_edges(
        cls,
        (cx - w / 2) * width,
        (cy - h / 2) * height,
        (cx + w / 2) * width,
        (cy + h / 2) * height,
        width,
        height,
        source,
    )


def parse_yolo(
    text: str, width: int, height: int, source: str = "", class_map: Mapping[int, int] = YOLO_TO_MSRS
) -> list[Box]:
    """Boxes of a YOLO text (one ``class cx cy w h`` a line, blank lines allowed), as MSRS-id boxes."""
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{source or '<text>'}:{lineno}"
        if len(fields) != 5:
            raise BoxFileError(f"{where}: expected 'class cx cy w h', got {len(fields)} fields: {line!r}")
        try:
            yolo_cls = int(fields[0])
            cx, cy, w, h = (float(v) for v in fields[1:])
        except ValueError:
            raise BoxFileError(f"{where}: not numbers: {line!r}") from None
        if yolo_cls not in class_map:
            raise BoxFileError(f"{where}: class {yolo_cls} not in {dict(class_map)}")
        if not all(math.isfinite(v) for v in (cx, cy, w, h)) or w < 0 or h < 0:
            raise BoxFileError(f"{where}: invalid box {line!r}")
        out.append(yolo_box(class_map[yolo_cls], cx, cy, w, h, width, height, source))
    return out


class BoxDir:
    """Box files in the MSRS detection layout: ``root/{fusion,infrared,visible}/NAME.txt``.

    At least one variant folder must exist. For a name, a variant without a file means "nothing annotated
    in that variant" (YOLO convention: empty images may lack a file); a name with no file in *any* variant
    is not annotated at all, and :meth:`boxes` returns None for it (the frame is not scored: scoring it
    would count every prediction as a false positive).
    """

    def __init__(self, root: str | Path, variants: Sequence[str] = BOX_VARIANTS) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"box folder {self.root} does not exist")
        self.variants = [v for v in variants if (self.root / v).is_dir()]
        if not self.variants:
            raise FileNotFoundError(
                f"{self.root}: none of the box folders {', '.join(v + '/' for v in variants)} exists"
            )

    def names(self) -> list[str]:
        """Every name with a box file in at least one variant, sorted."""
        return sorted({p.stem for v in self.variants for p in (self.root / v).glob("*.txt")})

    def has(self, name: str) -> bool:
        return any((self.root / v / f"{name}.txt").is_file() for v in self.variants)

    def boxes(self, name: str, width: int, height: int) -> list[Box] | None:
        """All variants' boxes of ``name`` on a ``width`` x ``height`` image, or None when not annotated."""
        if not self.has(name):
            return None
        out: list[Box] = []
        for v in self.variants:
            path = self.root / v / f"{name}.txt"
            if path.is_file():
                out += parse_yolo(path.read_text(), width, height, source=str(path))
        return out


def box_iou(a: Box, b: Box) -> float:
    """Pixel IoU of two boxes (0 when both are empty)."""
    iw = max(0, min(a.x1, b.x1) - max(a.x0, b.x0))
    ih = max(0, min(a.y1, b.y1) - max(a.y0, b.y0))
    inter = iw * ih
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def merge_boxes(boxes: Sequence[Box], iou_threshold: float = MERGE_IOU) -> list[list[Box]]:
    """Objects: groups of same-class boxes connected by IoU > ``iou_threshold`` (union-find, transitive).

    Order-independent (a chain A~B~C is one object even if A and C do not overlap). Groups come out in the
    order of their first box.
    """
    parent = list(range(len(boxes)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            if boxes[i].cls == boxes[j].cls and box_iou(boxes[i], boxes[j]) > iou_threshold:
                ri, rj = find(i), find(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[Box]] = {}
    for i, b in enumerate(boxes):
        groups.setdefault(find(i), []).append(b)
    return list(groups.values())


def consensus_box(group: Sequence[Box]) -> Box:
    """The mean of the group's pixel edges, rounded to whole pixels (half up): one box per object."""
    if len(group) == 1:
        return group[0]
    edges = np.array([[b.x0, b.y0, b.x1, b.y1] for b in group], np.float64).mean(0)
    x0, y0, x1, y1 = (math.floor(v + 0.5) for v in edges)
    return Box(group[0].cls, x0, y0, max(x1, x0 + 1), max(y1, y0 + 1), "consensus")


def _coverage(is_cls: np.ndarray, box: Box) -> float:
    return float(is_cls[box.y0 : box.y1, box.x0 : box.x1].mean()) if box.area else 0.0


def object_coverage(is_cls: np.ndarray, group: Sequence[Box], policy: str = "union") -> float:
    """Share of an object's region covered by its class. ``policy``: ``union`` (the union of the group's
    boxes, the default), ``mean`` (the consensus box), ``max`` (the best-covered box of the group)."""
    if policy == "mean":
        return _coverage(is_cls, consensus_box(group))
    if policy == "max":
        return max(_coverage(is_cls, b) for b in group)
    if policy == "union":
        if len(group) == 1:
            return _coverage(is_cls, group[0])
        x0, y0 = min(b.x0 for b in group), min(b.y0 for b in group)
        x1, y1 = max(b.x1 for b in group), max(b.y1 for b in group)
        region = np.zeros((y1 - y0, x1 - x0), bool)  # the group's enclosing rectangle, not the frame
        for b in group:
            region[b.y0 - y0 : b.y1 - y0, b.x0 - x0 : b.x1 - x0] = True
        return float(is_cls[y0:y1, x0:x1][region].mean()) if region.any() else 0.0
    raise ValueError(f"object box policy must be one of {OBJECT_BOX_POLICIES}, got {policy!r}")


def f_score(precision: float, hit_rate: float) -> float:
    """Harmonic mean; 0 when the hit rate is 0 (nothing found, whatever the precision, even undefined);
    NaN when the hit rate is undefined (no object of the class: nothing to find)."""
    if math.isnan(hit_rate):
        return float("nan")
    if hit_rate == 0 or math.isnan(precision) or precision + hit_rate == 0:
        return 0.0
    return 2 * precision * hit_rate / (precision + hit_rate)


@dataclass
class _ClassCounts:
    pred_pixels: int = 0
    pred_in_box: int = 0
    objects: int = 0
    hits: int = 0
    fill_sum: float = 0.0


class BoxScore:
    """Accumulates the box score of predicted masks over a set of frames (see the module docstring).

    ``update(mask, boxes)`` takes an (H, W) integer class-id mask and the frame's boxes in mask pixels
    (e.g. from :meth:`BoxDir.boxes` with the mask's size); ``result()`` returns the score. Pixels equal to
    ``ignore_index`` (a label map's "unknown") are no prediction of any class and are left out of the
    box-less share's denominator; they still count as uncovered inside an object's region.
    """

    def __init__(
        self,
        num_classes: int = 9,
        classes: Mapping[int, str] = BOX_CLASSES,
        boxless: Sequence[int] = BOXLESS_CLASSES,
        min_cover: float = MIN_COVER,
        merge_iou: float = MERGE_IOU,
        object_box: str = "union",
        ignore_index: int | None = 255,
    ) -> None:
        if object_box not in OBJECT_BOX_POLICIES:
            raise ValueError(f"object_box must be one of {OBJECT_BOX_POLICIES}, got {object_box!r}")
        if not 0 < min_cover <= 1:
            raise ValueError(f"min_cover must be in (0, 1], got {min_cover}")
        self.num_classes = int(num_classes)
        self.classes = dict(classes)
        self.boxless = tuple(boxless)
        for c in (*self.classes, *self.boxless):
            if not 0 <= c < self.num_classes:
                raise ValueError(f"class id {c} outside 0..{self.num_classes - 1}")
        self.min_cover = float(min_cover)
        self.merge_iou = float(merge_iou)
        self.object_box = object_box
        if ignore_index is not None and 0 <= ignore_index < self.num_classes:
            raise ValueError(f"ignore_index {ignore_index} collides with a class id")
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        self.counts = {c: _ClassCounts() for c in self.classes}
        self.frames = 0
        self.pixels = 0
        self.ignored_pixels = 0
        self.boxless_pixels = 0

    def update(self, mask: np.ndarray, boxes: Iterable[Box]) -> dict[str, Any]:
        """Score one frame; returns its own counts (per class: predicted pixels, in-box pixels, objects,
        hits) so callers can keep per-frame records."""
        mask = np.asarray(mask)
        if mask.ndim != 2 or not np.issubdtype(mask.dtype, np.integer):
            raise ValueError(f"mask must be a 2-D integer class-id array, got {mask.shape} {mask.dtype}")
        ignored = mask == self.ignore_index if self.ignore_index is not None else np.zeros(mask.shape, bool)
        valid = mask[~ignored]
        if valid.size and (valid.min() < 0 or valid.max() >= self.num_classes):
            raise ValueError(
                f"mask holds ids outside 0..{self.num_classes - 1} (ignore_index={self.ignore_index})"
            )
        h, w = mask.shape
        boxes = list(boxes)
        for b in boxes:
            if not (0 <= b.x0 <= b.x1 <= w and 0 <= b.y0 <= b.y1 <= h):
                raise ValueError(f"box {b} lies outside the {w}x{h} mask")
        frame: dict[str, Any] = {}
        for c, name in self.classes.items():
            is_cls = mask == c
            mine = [b for b in boxes if b.cls == c]
            inside = np.zeros(mask.shape, bool)
            for b in mine:
                inside[b.y0 : b.y1, b.x0 : b.x1] = True
            groups = merge_boxes(mine, self.merge_iou)
            covers = [object_coverage(is_cls, g, self.object_box) for g in groups]
            hits = sum(v >= self.min_cover for v in covers)
            pred = int(is_cls.sum())
            in_box = int(is_cls[inside].sum())
            k = self.counts[c]
            k.pred_pixels += pred
            k.pred_in_box += in_box
            k.objects += len(groups)
            k.hits += hits
            k.fill_sum += float(sum(covers))
            frame[name] = {"pred_pixels": pred, "pred_in_box": in_box, "objects": len(groups), "hits": hits}
        boxless = int(np.isin(mask, self.boxless).sum())
        n_ignored = int(ignored.sum())
        self.frames += 1
        self.pixels += mask.size - n_ignored
        self.ignored_pixels += n_ignored
        self.boxless_pixels += boxless
        frame["boxless_pixels"] = boxless
        return frame

    def merge(self, other: BoxScore) -> BoxScore:
        """Add another accumulator's counts (same settings). Returns self."""
        same = (
            self.classes,
            self.boxless,
            self.min_cover,
            self.merge_iou,
            self.object_box,
            self.ignore_index,
        )
        theirs = (other.classes, other.boxless, other.min_cover, other.merge_iou, other.object_box)
        if same != (*theirs, other.ignore_index):
            raise ValueError("cannot merge box scores with different settings")
        for c, k in other.counts.items():
            mine = self.counts[c]
            mine.pred_pixels += k.pred_pixels
            mine.pred_in_box += k.pred_in_box
            mine.objects += k.objects
            mine.hits += k.hits
            mine.fill_sum += k.fill_sum
        self.frames += other.frames
        self.pixels += other.pixels
        self.ignored_pixels += other.ignored_pixels
        self.boxless_pixels += other.boxless_pixels
        return self

    def result(self) -> dict[str, Any]:
        """Per class precision / hit rate / F / fill with their counts, ``mean_F`` (over classes with at
        least one object), ``fill`` (mean over all objects) and ``boxless_share``. Undefined values are NaN:
        precision without any predicted pixel, hit rate and fill without any object, F without objects."""
        nan = float("nan")
        per_class = {}
        fs = []
        fill_sum = 0.0
        objects = 0
        for c, name in self.classes.items():
            k = self.counts[c]
            p = k.pred_in_box / k.pred_pixels if k.pred_pixels else nan
            hit = k.hits / k.objects if k.objects else nan
            f = f_score(p, hit)
            if not math.isnan(f):
                fs.append(f)
            per_class[name] = {
                "id": c,
                "precision": p,
                "hit_rate": hit,
                "F": f,
                "fill": k.fill_sum / k.objects if k.objects else nan,
                "objects": k.objects,
                "hits": k.hits,
                "pred_pixels": k.pred_pixels,
                "pred_in_box": k.pred_in_box,
            }
            fill_sum += k.fill_sum
            objects += k.objects
        return {
            "mean_F": float(np.mean(fs)) if fs else nan,
            "fill": fill_sum / objects if objects else nan,
            "boxless_share": self.boxless_pixels / self.pixels if self.pixels else nan,
            "per_class": per_class,
            "frames": self.frames,
            "pixels": self.pixels,
            "ignored_pixels": self.ignored_pixels,
            "settings": {
                "min_cover": self.min_cover,
                "merge_iou": self.merge_iou,
                "object_box": self.object_box,
                "boxless_classes": list(self.boxless),
                "ignore_index": self.ignore_index,
            },
        }


__all__ = [
    "BOXLESS_CLASSES",
    "BOX_CLASSES",
    "BOX_VARIANTS",
    "MERGE_IOU",
    "MIN_COVER",
    "YOLO_TO_MSRS",
    "Box",
    "BoxDir",
    "BoxFileError",
    "BoxScore",
    "box_from_edges",
    "box_iou",
    "consensus_box",
    "f_score",
    "merge_boxes",
    "object_coverage",
    "parse_yolo",
    "yolo_box",
]
