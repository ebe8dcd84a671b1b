"""Validation: the loss on every validation set, mIoU where labels exist, fusion metrics on real pairs, and
the box score (``sccosf_ros.metrics.boxes``) on real pairs that have detection boxes (``--boxes``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from sccosf_ros.imaging.palette import class_names_for
from sccosf_ros.metrics.boxes import BoxDir, BoxScore
from sccosf_ros.metrics.fusion import fusion_metrics, to_gray255
from sccosf_ros.metrics.segmentation import ConfusionMatrix
from sccosf_train.config import TrainConfig
from sccosf_train.dataset import SyntheticDataset
from sccosf_train.losses import joint_loss
from sccosf_train.optim import set_train_mode
from sccosf_train.runtime import autocast


def to_uint8_images(x: torch.Tensor) -> np.ndarray:
    """(B,C,H,W) float in [0, 1] -> (B,H,W,C) uint8, or (B,H,W) for one channel (what the node publishes)."""
    a = (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return a[..., 0] if a.shape[-1] == 1 else a


@dataclass
class _Tally:
    """Running sums over the validation batches."""

    confusion: ConfusionMatrix
    boxes: BoxDir | None = None
    box_score: BoxScore = field(default_factory=BoxScore)
    loss: dict[str, float] = field(default_factory=dict)
    count: dict[str, int] = field(default_factory=dict)
    fusion: dict[str, list[float]] = field(default_factory=dict)

    def add_loss(self, tag: str, loss: float, n: int) -> None:
        self.loss[tag] = self.loss.get(tag, 0.0) + loss * n
        self.count[tag] = self.count.get(tag, 0) + n

    def add_masks(self, logits: torch.Tensor, labels: torch.Tensor, has: torch.Tensor) -> None:
        if not bool(has.any()):
            return
        pred, lab = logits.argmax(1).cpu().numpy(), labels.cpu().numpy()
        for i in np.flatnonzero(has.cpu().numpy()):
            self.confusion.update(pred[i], lab[i])

    def add_boxes(self, logits: torch.Tensor, names: list[str]) -> None:
        """Box score of the predicted masks of the pairs that have box files (real validation pairs)."""
        if self.boxes is None:
            return
        masks = logits.argmax(1).to(torch.uint8).cpu().numpy()
        for mask, name in zip(masks, names, strict=True):
            frame_boxes = self.boxes.boxes(name, mask.shape[1], mask.shape[0])
            if frame_boxes is not None:
                self.box_score.update(mask, frame_boxes)

    def add_fusion(self, fused: torch.Tensor, thermal: torch.Tensor, rgb: torch.Tensor) -> None:
        f, ir, vi = to_uint8_images(fused.float()), to_uint8_images(thermal), to_uint8_images(rgb)
        for i in range(f.shape[0]):
            for k, v in fusion_metrics(to_gray255(f[i]), to_gray255(ir[i]), to_gray255(vi[i])).items():
                self.fusion.setdefault(k, []).append(float(v))

    def result(self, class_names: list[str]) -> dict[str, float]:
        res = {f"val_loss_{tag}": self.loss[tag] / max(1, self.count[tag]) for tag in self.loss}
        res["val_loss"] = sum(self.loss.values()) / max(1, sum(self.count.values()))
        if self.confusion.total > 0:
            res["miou"] = self.confusion.miou()
            res["pixel_acc"] = self.confusion.pixel_accuracy()
            for name, v in zip(class_names, self.confusion.iou(), strict=True):
                res[f"iou_{name}"] = float(v)
        for k, v in self.fusion.items():
            res[f"fusion_{k}"] = float(np.mean(v))
        if self.box_score.frames:
            box = self.box_score.result()
            res["box_f"] = box["mean_F"]
            res["box_boxless_share"] = box["boxless_share"]
            res.update({f"box_f_{c}": v["F"] for c, v in box["per_class"].items()})
        return res


@torch.no_grad()
def validate(
    model: torch.nn.Module,
    vals: list[Dataset],
    cfg: TrainConfig,
    device: torch.device,
    amp: torch.dtype | None,
) -> dict[str, float]:
    """Loss on every validation set; mIoU where labels exist; fusion metrics on real (MSRS) pairs.

    The loss is the joint loss without class weights, so runs with different weightings compare.
    """
    model.eval()
    w = cfg.loss_weights()
    boxes = BoxDir(cfg.boxes) if cfg.boxes else None
    tally = _Tally(ConfusionMatrix(cfg.num_classes, ignore_index=255), boxes, BoxScore(cfg.num_classes))
    for ds in vals:
        tag = "synthetic" if isinstance(ds, SyntheticDataset) else "real"
        for b in DataLoader(ds, batch_size=cfg.val_batch_size, shuffle=False, num_workers=0):
            rgb, th = b["rgb"].to(device), b["thermal"].to(device)
            labels, has = b["labels"].to(device), b["has_labels"].to(device)
            with autocast(device, amp):
                out = model(rgb, th)
            losses = joint_loss({k: v.float() for k, v in out.items()}, rgb, th, labels, has, w)
            tally.add_loss(tag, float(losses["total"]), rgb.shape[0])
            tally.add_masks(out["seg_logits"], labels, has)
            if tag == "real":
                tally.add_boxes(out["seg_logits"], list(b["name"]))
                if cfg.fusion_metrics:
                    tally.add_fusion(out["fused"], th, rgb)
    set_train_mode(model, cfg.train_only)  # frozen BatchNorm stays in eval mode, as during training
    return tally.result(class_names_for(cfg.num_classes))
