"""The trainer's data: which datasets a configuration describes, and each epoch's loader."""

from __future__ import annotations

from dataclasses import replace
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
from sccosf_train.paste import ObjectBank, PasteConfig, cut_objects
from sccosf_train.rig_augment import RigRandomization
from sccosf_train.runtime import Dist, worker_init


def real_split(cfg: TrainConfig, root: Path) -> tuple[list[str], list[str], list[str]]:
    """(train, validation, held-out) pair names of an MSRS-layout folder.

    ``val_split`` picks the validation names (``seafusion``: the pairs with a SeAFusion output; a file; or
    none); ``holdout`` names pairs that neither train nor validate (kept for a final test, e.g. ``seafusion``
    while a file of training pairs validates); ``val_max_pairs`` shortens validation.
    """
    all_names = MSRSFolderDataset(root).names
    held = set(_names(cfg.holdout, root))
    if cfg.val_split == "none":
        val: list[str] = []
    else:
        val = _names(cfg.val_split, root)
    train = [n for n in all_names if n not in set(val) | held]
    val = [n for n in val if n not in held]
    if cfg.val_max_pairs is not None:
        val = val[: cfg.val_max_pairs]
    return train, val, sorted(held)


def _names(spec: str, root: Path) -> list[str]:
    """Pair names of a split spec: ``seafusion`` (the pairs with a SeAFusion output), ``none`` or a file."""
    if spec == "seafusion":
        return seafusion_split(root)[1]
    if spec == "none":
        return []
    return read_split_file(spec)


def _real_datasets(cfg: TrainConfig, aug: AugmentConfig) -> tuple[Dataset, Dataset | None, dict[str, Any]]:
    root = Path(cfg.msrs_root)  # type: ignore[arg-type]
    train_names, val_names, held = real_split(cfg, root)
    labels = {"num_classes": cfg.num_classes, "label_dir": cfg.label_dir, "label_root": cfg.label_root}
    tr = MSRSFolderDataset(root, train_names, crop=cfg.crop, augment=aug, seed=cfg.seed, **labels)
    val = MSRSFolderDataset(root, val_names, crop=None, augment=False, **labels) if val_names else None
    info = {
        "msrs_root": str(root.resolve()),
        "train_names": list(tr.names),
        "val_names": list(val_names),
        "holdout_names": held,
        "label_root": str(Path(cfg.label_root).resolve()) if cfg.label_root else None,
        "real_train_labelled": tr.num_labelled,
        "real_val_labelled": val.num_labelled if val is not None else 0,
        "val_split": cfg.val_split,
        "holdout": cfg.holdout,
    }
    return tr, val, info


def parse_extra_real(spec: str) -> dict[str, Any]:
    """``root=DIR[,labels=DIR][,split=FILE][,repeat=N][,scale=LO:HI]`` → keyword arguments (a bare path is
    the root; ``scale`` overrides ``aug_scale`` for this folder, e.g. a rig whose objects are smaller)."""
    out: dict[str, Any] = {"root": None, "labels": None, "split": None, "repeat": 1, "scale": None}
    usage = "expected root=DIR[,labels=DIR][,split=FILE][,repeat=N][,scale=LO:HI]"
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        if not sep and out["root"] is None:
            key, value = "root", part
        if key not in out or not value:
            raise ValueError(f"extra_real {spec!r}: {usage}")
        try:
            if key == "repeat":
                out[key] = int(value)
            elif key == "scale":
                lo, hi = (float(v) for v in value.split(":"))
                out[key] = (lo, hi)
            else:
                out[key] = value
        except ValueError:
            raise ValueError(f"extra_real {spec!r}: {usage}") from None
    if out["root"] is None:
        raise ValueError(f"extra_real {spec!r}: no root=DIR")
    return out


def _extra_real_datasets(cfg: TrainConfig, aug: AugmentConfig) -> tuple[list[Dataset], list[dict[str, Any]]]:
    parts, info = [], []
    for spec in cfg.extra_real:
        kw = parse_extra_real(spec)
        names = read_split_file(kw["split"]) if kw["split"] else None
        ds = MSRSFolderDataset(
            kw["root"],
            names,
            crop=cfg.crop,
            augment=aug if kw["scale"] is None else replace(aug, scale=kw["scale"]),
            seed=cfg.seed + 7919 * (len(parts) + 1),  # its own augmentation stream
            num_classes=cfg.num_classes,
            label_root=kw["labels"],
            repeat=kw["repeat"],
        )
        parts.append(ds)
        info.append({**kw, "names": list(ds.names), "labelled": ds.num_labelled})
    return parts, info


def attach_paste(parts: list[MSRSFolderDataset], cfg: TrainConfig) -> dict[str, Any]:
    """Cut the objects of ``cfg.paste_classes`` from every labelled pair of ``parts`` into one bank and let
    every part paste from it; returns what the bank holds, for the summary."""
    objects = []
    for ds in parts:
        for i in range(len(ds.names)):
            rgb, th, lab, has = ds.load(i)
            if has:
                objects += cut_objects(rgb, th, lab, cfg.paste_classes)
    bank = ObjectBank(objects)
    if not len(bank):
        raise ValueError(f"paste_objects: no object of classes {list(cfg.paste_classes)} in labelled pairs")
    paste_cfg = PasteConfig(max_objects=cfg.paste_objects, height=tuple(cfg.paste_height))  # type: ignore[arg-type]
    for ds in parts:
        ds.paste = (bank, paste_cfg)
    return {"objects_per_class": {str(k): v for k, v in bank.counts().items()}, **vars(paste_cfg)}


def augment_config(cfg: TrainConfig) -> AugmentConfig:
    """The training augmentation a configuration asks for."""
    return AugmentConfig(
        enabled=cfg.augment,
        scale=(float(cfg.aug_scale[0]), float(cfg.aug_scale[1])),
        aspect=cfg.aug_aspect,
        rig=RigRandomization() if cfg.aug_rig else None,
    )


def _synthetic_datasets(cfg: TrainConfig, aug: AugmentConfig) -> tuple[Dataset | None, Dataset | None]:
    train = val = None
    if cfg.synthetic_train > 0:
        train = SyntheticDataset(
            cfg.synthetic_train,
            cfg.synthetic_seed,
            cfg.synthetic_size,
            crop=cfg.crop,
            augment=aug,
            misregistration_px=cfg.misregistration_px,
            fresh_each_epoch=cfg.synthetic_fresh,
        )
    if cfg.synthetic_val > 0:
        # A different seed stream from training: validation scenes are never trained on.
        val = SyntheticDataset(
            cfg.synthetic_val,
            cfg.synthetic_seed + 10_000,
            cfg.synthetic_size,
            crop=None,
            augment=False,
            misregistration_px=cfg.misregistration_px,
        )
    return train, val


def build_datasets(cfg: TrainConfig) -> tuple[Dataset, list[Dataset], dict[str, Any]]:
    """(train, [validation sets], data description for the summary)."""
    aug = augment_config(cfg)
    info: dict[str, Any] = {
        "msrs_root": None,
        "synthetic_train": cfg.synthetic_train,
        "synthetic_val": cfg.synthetic_val,
        "synthetic_size": list(cfg.synthetic_size),
        "synthetic_seed": cfg.synthetic_seed,
        "crop": list(cfg.crop),
    }
    real_train = real_val = None
    if cfg.msrs_root:
        real_train, real_val, real_info = _real_datasets(cfg, aug)
        info.update(real_info)
    synth_train, synth_val = _synthetic_datasets(cfg, aug)
    extra, info["extra_real"] = _extra_real_datasets(cfg, aug)
    if cfg.paste_objects > 0:
        info["paste"] = attach_paste([d for d in (real_train, *extra) if d is not None], cfg)
    train = MixedDataset([d for d in (real_train, *extra, synth_train) if d is not None])
    vals = [d for d in (real_val, synth_val) if d is not None]
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
