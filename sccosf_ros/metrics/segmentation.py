"""Semantic segmentation scores from an accumulated confusion matrix.

Accumulating counts (not per-image IoUs) is what MSRS/MFNet papers report: per-class IoU over the whole split,
then the mean over classes. Rows are ground truth, columns prediction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class ConfusionMatrix:
    """``num_classes`` x ``num_classes`` pixel counts; target pixels equal to ``ignore_index`` are skipped.

    IoU of a class is NaN when it appears in neither target nor prediction (nothing to score), 0 when it is
    only predicted; ``miou`` is the mean over the non-NaN classes (background included, as MSRS papers do).
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        if ignore_index is not None and 0 <= ignore_index < num_classes:
            raise ValueError(f"ignore_index {ignore_index} collides with a class id (0..{num_classes - 1})")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def reset(self) -> None:
        self.matrix[:] = 0

    def update(self, pred: np.ndarray, target: np.ndarray) -> ConfusionMatrix:
        """Add one prediction/target pair (integer class-id arrays of one shape). Returns self."""
        pred, target = np.asarray(pred), np.asarray(target)
        if pred.shape != target.shape:
            raise ValueError(f"pred shape {pred.shape} != target shape {target.shape}")
        for name, arr in (("pred", pred), ("target", target)):
            if not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(f"{name} must hold integer class ids, got {arr.dtype}")
        keep = np.ones(target.shape, bool) if self.ignore_index is None else target != self.ignore_index
        t = target[keep].astype(np.int64)
        p = pred[keep].astype(np.int64)
        k = self.num_classes
        if t.size and (t.min() < 0 or t.max() >= k):
            bad = t[(t < 0) | (t >= k)][0]
            raise ValueError(
                f"target holds class id {bad} outside 0..{k - 1} (ignore_index={self.ignore_index})"
            )
        if p.size and (p.min() < 0 or p.max() >= k):
            bad = p[(p < 0) | (p >= k)][0]
            raise ValueError(f"pred holds class id {bad} outside 0..{k - 1}")
        self.matrix += np.bincount(t * k + p, minlength=k * k).reshape(k, k)
        return self

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix's counts (e.g. from a worker). Returns self."""
        if other.num_classes != self.num_classes or other.ignore_index != self.ignore_index:
            raise ValueError("cannot merge confusion matrices with different num_classes/ignore_index")
        self.matrix += other.matrix
        return self

    @property
    def total(self) -> int:
        return int(self.matrix.sum())

    def iou(self) -> np.ndarray:
        """Per-class intersection over union, float64 ``(num_classes,)``, NaN where the union is empty."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - tp
        out = np.full(self.num_classes, np.nan)
        np.divide(tp, union, out=out, where=union > 0)
        return out

    def class_accuracy(self) -> np.ndarray:
        """Per-class recall (tp / target pixels), NaN for classes absent from the target."""
        tp = np.diag(self.matrix).astype(np.float64)
        support = self.matrix.sum(1)
        out = np.full(self.num_classes, np.nan)
        np.divide(tp, support, out=out, where=support > 0)
        return out

    def miou(self) -> float:
        """Mean IoU over classes with a defined IoU; NaN before any pixel was counted."""
        values = self.iou()
        values = values[~np.isnan(values)]
        return float(values.mean()) if values.size else float("nan")

    def pixel_accuracy(self) -> float:
        """Correct pixels / counted pixels; NaN when nothing was counted."""
        total = self.total
        return float(np.trace(self.matrix) / total) if total else float("nan")

    def as_dict(self, class_names: Sequence[str] | None = None) -> dict[str, float]:
        """Flat, JSON-friendly summary: ``mIoU``, ``pixel_accuracy`` and ``IoU/<class name>`` per class."""
        names = [str(i) for i in range(self.num_classes)] if class_names is None else list(class_names)
        if len(names) != self.num_classes:
            raise ValueError(f"{len(names)} class names for {self.num_classes} classes")
        out = {"mIoU": self.miou(), "pixel_accuracy": self.pixel_accuracy()}
        out.update({f"IoU/{name}": float(v) for name, v in zip(names, self.iou(), strict=True)})
        return out
