"""The trainer's data: which datasets a configuration describes, and each epoch's loader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

from sccosf_train.augment import AugmentConfig
from sccosf_train.config import TrainConfig
from sccosf_train.dataset import (
    MixedDataset,
    MSRSFolderDataset,
    SyntheticDataset,
    read_split_file,
    seafusion_split,
)
from sccosf_train.runtime import Dist, worker_init


def build_datasets(cfg: TrainConfig) -> tuple[Dataset, list[Dataset], dict[str, Any]]:
    """(train, [validation sets], data description for the summary)."""
    aug = AugmentConfig(enabled=cfg.augment)
    parts: list[Dataset] = []
    vals: list[Dataset] = []
    info: dict[str, Any] = {
        "msrs_root": None,
        "synthetic_train": cfg.synthetic_train,
        "synthetic_val": cfg.synthetic_val,
        "synthetic_size": list(cfg.synthetic_size),
        "synthetic_seed": cfg.synthetic_seed,
        "crop": list(cfg.crop),
    }
    if cfg.msrs_root:
        root = Path(cfg.msrs_root)
        if cfg.val_split == "seafusion":
            train_names, val_names = seafusion_split(root)
        elif cfg.val_split == "none":
            train_names, val_names = None, []
        else:
            val_names = read_split_file(cfg.val_split)
            all_names = MSRSFolderDataset(root, label_dir=cfg.label_dir).names
            held = set(val_names)
            train_names = [n for n in all_names if n not in held]
        if cfg.val_max_pairs is not None:
            val_names = val_names[: cfg.val_max_pairs]
        tr = MSRSFolderDataset(
            root,
            train_names,
            crop=cfg.crop,
            augment=aug,
            seed=cfg.seed,
            num_classes=cfg.num_classes,
            label_dir=cfg.label_dir,
        )
        parts.append(tr)
        if val_names:
            vals.append(
                MSRSFolderDataset(
                    root,
                    val_names,
                    crop=None,
                    augment=False,
                    num_classes=cfg.num_classes,
                    label_dir=cfg.label_dir,
                )
            )
        info.update(
            msrs_root=str(root.resolve()),
            train_names=list(tr.names),
            val_names=list(val_names),
            real_train_labelled=tr.num_labelled,
            real_val_labelled=vals[0].num_labelled if val_names else 0,  # type: ignore[attr-defined]
            val_split=cfg.val_split,
        )
    if cfg.synthetic_train > 0:
        parts.append(
            SyntheticDataset(
                cfg.synthetic_train,
                cfg.synthetic_seed,
                cfg.synthetic_size,
                crop=cfg.crop,
                augment=aug,
                misregistration_px=cfg.misregistration_px,
                fresh_each_epoch=cfg.synthetic_fresh,
            )
        )
    if cfg.synthetic_val > 0:
        # A different seed stream from training: validation scenes are never trained on.
        vals.append(
            SyntheticDataset(
                cfg.synthetic_val,
                cfg.synthetic_seed + 10_000,
                cfg.synthetic_size,
                crop=None,
                augment=False,
                misregistration_px=cfg.misregistration_px,
            )
        )
    train = MixedDataset(parts)
    info["synthetic_fresh"] = cfg.synthetic_fresh
    info["train_samples"] = len(train)
    info["val_samples"] = sum(len(v) for v in vals)  # type: ignore[arg-type]
    return train, vals, info


def estimate_class_counts(ds: Dataset, num_classes: int, max_samples: int = 64, seed: int = 0) -> np.ndarray:
    """Pixel count per class over up to ``max_samples`` labelled training samples (drawn at random).

    Reads samples as training will see them (crops included); unlabelled samples are skipped. Raises when
    no labelled sample exists, since class weights would then mean nothing.
    """
    counts = np.zeros(num_classes, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(ds))  # type: ignore[arg-type]
    seen = 0
    for i in order:
        sample = ds[int(i)]
        if not bool(sample["has_labels"]):
            continue
        lab = sample["labels"].numpy().ravel()
        counts += np.bincount(lab[lab < num_classes], minlength=num_classes)[:num_classes]
        seen += 1
        if seen >= max_samples:
            break
    if seen == 0:
        raise ValueError("seg_class_weights=enet needs labelled training samples (synthetic or real labels)")
    return counts


def make_sampler(train_ds: Dataset, cfg: TrainConfig, d: Dist) -> DistributedSampler | None:
    """Each rank's shard under torchrun; None for one process (each epoch then draws its own order)."""
    if d.world <= 1:
        return None
    return DistributedSampler(train_ds, d.world, d.rank, shuffle=True, seed=cfg.seed, drop_last=True)


def epoch_loader(
    train_ds: Dataset, cfg: TrainConfig, epoch: int, sampler: DistributedSampler | None, device: torch.device
) -> DataLoader:
    """The loader for one epoch; the dataset and sampler see the epoch first (new augmentation draws)."""
    train_ds.set_epoch(epoch)  # type: ignore[attr-defined]
    order: Any
    if sampler is not None:
        sampler.set_epoch(epoch)
        order = sampler
    else:
        g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        order = RandomSampler(train_ds, generator=g)  # type: ignore[arg-type]
    return DataLoader(
        train_ds,
        batch_size=cfg.batch_size,
        sampler=order,
        drop_last=True,
        num_workers=cfg.workers,
        worker_init_fn=worker_init if cfg.workers else None,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        # Workers are made anew each epoch (they must see the new epoch's augmentation seed); forking the
        # trainer once its OpenMP pool exists hung a worker here (epoch 3, 2 CPU cores), so fork from a
        # clean server.
        multiprocessing_context="forkserver" if cfg.workers else None,
    )


def steps_per_epoch(train_ds: Dataset, cfg: TrainConfig, d: Dist) -> int:
    """Optimizer steps per epoch: full batches over all ranks, capped by ``max_steps_per_epoch``."""
    per_epoch = len(train_ds) // (cfg.batch_size * d.world)  # type: ignore[arg-type]
    if per_epoch < 1:
        raise ValueError(
            f"{len(train_ds)} training samples cannot fill one batch of "  # type: ignore[arg-type]
            f"{cfg.batch_size} x {d.world} processes"
        )
    if cfg.max_steps_per_epoch:
        per_epoch = min(per_epoch, cfg.max_steps_per_epoch)
    return per_epoch
