"""The training loop: data, optimisation, validation, logging, checkpoints, resume and DDP.

Outputs in ``out``: ``best.safetensors`` and ``last.safetensors`` (the engine's checkpoint format, with the
training summary in their metadata), ``last_state.pt`` (optimizer/scheduler/scaler state for ``--resume``;
plain tensors and numbers, loaded with ``weights_only=True``), ``train_log.csv``, ``val_log.csv``,
``split.json`` (the real-data train/validation names) and ``summary.json``. Under ``torchrun`` every rank
trains on its DistributedSampler shard; only rank 0 validates and writes anything.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

from sccosf_train.augment import AugmentConfig
from sccosf_train.dataset import (
    MixedDataset,
    MSRSFolderDataset,
    SyntheticDataset,
    read_split_file,
    seafusion_split,
)
from sccosf_train.losses import LossWeights, enet_class_weights, joint_loss


@dataclass
class TrainConfig:
    """Every option of ``sccosf-train`` (YAML keys and ``--flags`` have these names, ``_`` ↔ ``-``)."""

    # model
    preset: str = "tiny"
    num_classes: int = 9
    pretrained_encoder: str = "auto"  # auto (installed ImageNet MobileNetV2 weights) | none | PATH
    # data
    msrs_root: str | None = None
    val_split: str | None = "seafusion"  # seafusion | none (or None) | PATH (one name per line)
    label_dir: str | None = None  # default: first of Label/, Segmentation_labels/, labels/
    synthetic_train: int = 180
    synthetic_val: int = 16
    synthetic_size: tuple[int, int] = (480, 640)
    synthetic_seed: int = 1
    synthetic_fresh: bool = False  # new synthetic scenes every epoch instead of the same n each epoch
    misregistration_px: float = 0.0
    crop: tuple[int, int] = (256, 320)
    augment: bool = True
    # optimisation
    epochs: int = 30
    batch_size: int = 8
    max_steps_per_epoch: int | None = None
    lr: float = 5e-4
    weight_decay: float = 1e-2
    schedule: str = "cosine"  # cosine | poly | constant
    warmup_steps: int = 100
    min_lr_ratio: float = 0.01
    poly_power: float = 0.9
    grad_clip: float = 1.0
    amp: str = "auto"  # auto (bf16 if supported, else fp16, on CUDA; off on CPU) | bf16 | fp16 | off
    # loss weights: defaults are LossWeights' (one source; reasons in docs/training.md)
    w_seg: float = LossWeights.seg
    w_fusion: float = LossWeights.fusion
    w_int: float = LossWeights.intensity
    w_grad: float = LossWeights.gradient
    w_ssim: float = LossWeights.ssim
    fg_weight: float = LossWeights.fg_weight
    fg_classes: tuple[int, ...] = LossWeights.fg_classes
    fg_target: str = LossWeights.fg_target
    grad_mode: str = LossWeights.grad_mode
    ohem_thresh: float | None = None
    seg_class_weights: str = "none"  # none | enet (estimated from the labelled training samples)
    # validation
    val_every: int = 1
    val_batch_size: int = 4
    val_max_pairs: int | None = None
    fusion_metrics: bool = True
    best_metric: str = "val_loss"  # val_loss (lower is better) | miou (higher is better)
    # runtime
    device: str = "auto"
    workers: int = 2
    threads: int | None = None
    seed: int = 0
    deterministic: bool = False
    out: str = "runs/tiny"
    resume: str | None = None
    init_from: str | None = None  # engine checkpoint whose weights start the run (fine-tuning)
    train_only: tuple[str, ...] = ()  # parameter-name prefixes to train (empty: all); the rest is frozen
    log_every: int = 10
    tensorboard: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, list):
                setattr(self, f.name, tuple(v))
        if self.val_split is None:  # the CLI reads "--val-split none" as None
            self.val_split = "none"
        if self.schedule not in ("cosine", "poly", "constant"):
            raise ValueError(f"schedule must be cosine, poly or constant, got {self.schedule!r}")
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            raise ValueError(f"amp must be auto, bf16, fp16 or off, got {self.amp!r}")
        if self.grad_mode not in ("l1", "floor"):
            raise ValueError(f"grad_mode must be l1 or floor, got {self.grad_mode!r}")
        if self.fg_target not in ("max", "thermal"):
            raise ValueError(f"fg_target must be max or thermal, got {self.fg_target!r}")
        if self.seg_class_weights not in ("none", "enet"):
            raise ValueError(f"seg_class_weights must be none or enet, got {self.seg_class_weights!r}")
        if self.resume and self.init_from:
            raise ValueError("give --resume (continue a run) or --init-from (start from weights), not both")
        if self.best_metric not in ("val_loss", "miou"):
            raise ValueError(f"best_metric must be val_loss or miou, got {self.best_metric!r}")
        if self.epochs < 1:
            raise ValueError("epochs must be >= 1")
        if self.batch_size < 2:  # BatchNorm needs two values per channel at the 1/32-scale feature map
            raise ValueError("batch_size must be >= 2 (per process)")

    def loss_weights(self, class_weights: tuple[float, ...] | None = None) -> LossWeights:
        return LossWeights(
            seg=self.w_seg,
            fusion=self.w_fusion,
            intensity=self.w_int,
            gradient=self.w_grad,
            ssim=self.w_ssim,
            fg_weight=self.fg_weight,
            fg_classes=tuple(self.fg_classes),
            fg_target=self.fg_target,
            grad_mode=self.grad_mode,
            ohem_thresh=self.ohem_thresh,
            class_weights=class_weights,
        )


# ----------------------------------------------------------------------------------------------- runtime


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_distributed(device_pref: str) -> _Dist:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; NCCL on CUDA, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    use_cuda = torch.cuda.is_available() and device_pref != "cpu"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _resolve_device(pref: str, d: _Dist) -> torch.device:
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device cuda requested but CUDA is not available")
        return torch.device("cuda", d.local_rank)
    return torch.device(pref)


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


def _seed_everything(seed: int, deterministic: bool) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def _worker_init(_: int) -> None:
    # Each worker does cv2/numpy work on one sample: extra intra-op threads only oversubscribe the cores.
    # (torch itself already runs workers with one thread.)
    import cv2

    cv2.setNumThreads(1)


def _machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


# ----------------------------------------------------------------------------------------------- data


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


# ----------------------------------------------------------------------------------------------- schedule


def _selected(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def freeze_except(model: torch.nn.Module, prefixes: Sequence[str]) -> int:
    """Train only parameters under ``prefixes`` (module paths such as ``icrm.refine``); returns their count.

    For fine-tuning one part of a trained network, e.g. a new segmentation refinement that must leave the
    fused image exactly as it was. An empty selection is an error, not a silent no-op.
    """
    n = 0
    for name, p in model.named_parameters():
        p.requires_grad_(_selected(name, prefixes))
        n += p.numel() if p.requires_grad else 0
    if n == 0:
        raise ValueError(f"--train-only {','.join(prefixes)} selects no parameter of the model")
    return n


def set_train_mode(model: torch.nn.Module, prefixes: Sequence[str] = ()) -> None:
    """``model.train()``, but BatchNorm layers outside ``prefixes`` keep their running statistics: a
    frozen part must compute exactly what it computed before fine-tuning."""
    model.train()
    if prefixes:
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and not _selected(name, prefixes):
                m.eval()


def lr_lambda(cfg: TrainConfig, total_steps: int) -> Callable[[int], float]:
    """Linear warmup, then cosine or poly decay to ``min_lr_ratio`` over ``total_steps``."""
    warm = max(0, min(cfg.warmup_steps, total_steps // 2))

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if cfg.schedule == "constant":
            return 1.0
        t = min(1.0, (step - warm) / max(1, total_steps - warm))
        decay = 0.5 * (1 + math.cos(math.pi * t)) if cfg.schedule == "cosine" else (1 - t) ** cfg.poly_power
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * decay

    return f


# ----------------------------------------------------------------------------------------------- validation


@torch.no_grad()
def validate(
    model: torch.nn.Module,
    vals: list[Dataset],
    cfg: TrainConfig,
    device: torch.device,
    amp: torch.dtype | None,
) -> dict[str, float]:
    """Loss on every validation set; mIoU where labels exist; fusion metrics on real (MSRS) pairs."""
    from sccosf_ros.metrics.fusion import fusion_metrics, to_gray255
    from sccosf_ros.metrics.segmentation import ConfusionMatrix

    model.eval()
    w = cfg.loss_weights()
    res: dict[str, float] = {}
    loss_sum, n_sum = 0.0, 0
    cm = ConfusionMatrix(cfg.num_classes, ignore_index=255)
    fm_acc: dict[str, list[float]] = {}
    for ds in vals:
        tag = "synthetic" if isinstance(ds, SyntheticDataset) else "real"
        loader = DataLoader(ds, batch_size=cfg.val_batch_size, shuffle=False, num_workers=0)
        part_loss, part_n = 0.0, 0
        for b in loader:
            rgb, th = b["rgb"].to(device), b["thermal"].to(device)
            labels, has = b["labels"].to(device), b["has_labels"].to(device)
            ctx = torch.autocast(device.type, dtype=amp) if amp else nullcontext()
            with ctx:
                out = model(rgb, th)
            losses = joint_loss({k: v.float() for k, v in out.items()}, rgb, th, labels, has, w)
            bs = rgb.shape[0]
            part_loss += float(losses["total"]) * bs
            part_n += bs
            if bool(has.any()):
                pred = out["seg_logits"].argmax(1).cpu().numpy()
                lab = labels.cpu().numpy()
                for i in np.flatnonzero(has.cpu().numpy()):
                    cm.update(pred[i], lab[i])
            if tag == "real" and cfg.fusion_metrics:
                fused, ir, vi = _u8(out["fused"].float()), _u8(th), _u8(rgb)
                for i in range(bs):
                    m = fusion_metrics(to_gray255(fused[i]), to_gray255(ir[i]), to_gray255(vi[i]))
                    for k, v in m.items():
                        fm_acc.setdefault(k, []).append(float(v))
        res[f"val_loss_{tag}"] = part_loss / max(1, part_n)
        loss_sum += part_loss
        n_sum += part_n
    res["val_loss"] = loss_sum / max(1, n_sum)
    if cm.total > 0:
        res["miou"] = cm.miou()
        res["pixel_acc"] = cm.pixel_accuracy()
        for name, v in zip(_class_names(cfg.num_classes), cm.iou(), strict=True):
            res[f"iou_{name}"] = float(v)
    for k, v in fm_acc.items():
        res[f"fusion_{k}"] = float(np.mean(v))
    set_train_mode(model, cfg.train_only)  # frozen BatchNorm stays in eval mode, as during training
    return res


def _u8(x: torch.Tensor) -> np.ndarray:
    """(B,C,H,W) float in [0, 1] -> (B,H,W,C) uint8, or (B,H,W) for one channel (what the node publishes)."""
    a = (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return a[..., 0] if a.shape[-1] == 1 else a


def _class_names(k: int) -> list[str]:
    from sccosf_ros.imaging.palette import MSRS_CLASSES

    return list(MSRS_CLASSES) if k == len(MSRS_CLASSES) else [f"class_{i}" for i in range(k)]


# ----------------------------------------------------------------------------------------------- logging


class _CsvLog:
    """Append-only CSV; a row with new columns (e.g. the first validated epoch) rewrites the header."""

    def __init__(self, path: Path, resume: bool) -> None:
        self.path = path
        if not resume and path.exists():
            path.unlink()

    def write(self, row: dict[str, Any]) -> None:
        rows: list[dict[str, Any]] = []
        keys: list[str] = []
        if self.path.exists():
            with self.path.open(newline="") as f:
                reader = csv.DictReader(f)
                keys = list(reader.fieldnames or [])
                new = [k for k in row if k not in keys]
                if new:
                    rows = list(reader)
        else:
            new = list(row)
        if new or not keys:
            keys += [k for k in new if k not in keys]
            with self.path.open("w", newline="") as f:
                w = csv.DictWriter(f, keys, restval="")
                w.writeheader()
                w.writerows(rows)
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow([_fmt(row.get(k, "")) for k in keys])


def _fmt(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v


def _tensorboard(out: Path, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard not installed: CSV logs only
        return None
    return SummaryWriter(str(out / "tensorboard"))


# ----------------------------------------------------------------------------------------------- main loop


def train(cfg: TrainConfig, command: list[str] | None = None) -> dict[str, Any]:
    """Run training; returns the summary (also written to ``out/summary.json`` by rank 0)."""
    from tqdm import tqdm

    from sccosf_ros.checkpoint import CheckpointMeta, check_state_dict, load_checkpoint, save_checkpoint
    from sccosf_ros.model import build_model, default_imagenet_weights_path

    d = _setup_distributed(cfg.device)
    try:
        device = _resolve_device(cfg.device, d)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        _seed_everything(cfg.seed + d.rank, cfg.deterministic)
        amp = _amp_dtype(cfg.amp, device)
        out = Path(cfg.out)
        if d.main:
            out.mkdir(parents=True, exist_ok=True)

        enc: str | Path | None
        if cfg.pretrained_encoder == "auto":
            enc = default_imagenet_weights_path()
        elif cfg.pretrained_encoder in ("none", "", None):
            enc = None
        else:
            enc = cfg.pretrained_encoder
        model = build_model(cfg.preset, cfg.num_classes, pretrained_encoder=enc).to(device)

        train_ds, vals, data_info = build_datasets(cfg)
        data_info["pretrained_encoder"] = str(enc) if enc else None
        sampler = (
            DistributedSampler(train_ds, d.world, d.rank, shuffle=True, seed=cfg.seed, drop_last=True)
            if d.world > 1
            else None
        )
        per_epoch = len(train_ds) // (cfg.batch_size * d.world)  # type: ignore[arg-type]
        if per_epoch < 1:
            raise ValueError(
                f"{len(train_ds)} training samples cannot fill one batch of "  # type: ignore[arg-type]
                f"{cfg.batch_size} x {d.world} processes"
            )
        if cfg.max_steps_per_epoch:
            per_epoch = min(per_epoch, cfg.max_steps_per_epoch)
        total_steps = per_epoch * cfg.epochs

        init_from = None
        if cfg.init_from:
            weights, init_meta = load_checkpoint(cfg.init_from)
            fresh = check_state_dict(model, weights, source=str(cfg.init_from), missing_ok=True)
            untrained = [k for k in fresh if cfg.train_only and not _selected(k, cfg.train_only)]
            if untrained:
                raise ValueError(
                    f"--init-from {cfg.init_from} lacks {len(untrained)} weights outside "
                    f"--train-only (they would stay random), e.g. {untrained[0]}"
                )
            model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=False)
            init_from = str(Path(cfg.init_from).resolve())
            data_info["init_from"] = init_from
            data_info["initialised_fresh"] = fresh
            # The earlier stages' record (their data split above all) travels with the fine-tuned model.
            data_info["init_from_training"] = init_meta.training
        if cfg.train_only:
            data_info["trainable_parameters"] = freeze_except(model, cfg.train_only)
        class_weights = None
        if cfg.seg_class_weights == "enet":
            counts = estimate_class_counts(train_ds, cfg.num_classes, seed=cfg.seed)
            class_weights = enet_class_weights(counts)
            data_info["seg_class_pixel_counts"] = counts.tolist()
            data_info["seg_class_weights"] = [round(v, 4) for v in class_weights]

        opt = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, total_steps))
        scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)

        start_epoch, step, best, history = 0, 0, None, []
        resumed_from = None
        if cfg.resume:
            rdir = Path(cfg.resume)
            state_path = rdir / "last_state.pt" if rdir.is_dir() else rdir
            weights_path = state_path.with_name("last.safetensors")
            for p in (state_path, weights_path):
                if not p.is_file():
                    raise FileNotFoundError(
                        f"--resume {cfg.resume}: {p} not found (a run folder written by "
                        "sccosf-train has last_state.pt and last.safetensors)"
                    )
            try:
                state = torch.load(state_path, map_location="cpu", weights_only=True)
            except Exception as exc:
                raise RuntimeError(f"{state_path}: unreadable trainer state ({exc})") from None
            weights, _ = load_checkpoint(weights_path)
            check_state_dict(model, weights, source=str(weights_path))
            model.load_state_dict(weights)
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            start_epoch, step = int(state["epoch"]) + 1, int(state["step"])
            best = state.get("best")
            history = json.loads(state.get("history_json", "[]"))
            torch.set_rng_state(state["torch_rng"])
            resumed_from = str(state_path)

        ddp_model: torch.nn.Module = model
        if d.world > 1:
            ddp_model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )

        w = cfg.loss_weights(class_weights)
        train_log = _CsvLog(out / "train_log.csv", bool(cfg.resume)) if d.main else None
        val_log = _CsvLog(out / "val_log.csv", bool(cfg.resume)) if d.main else None
        tb = _tensorboard(out, cfg.tensorboard) if d.main else None
        if d.main:
            (out / "split.json").write_text(
                json.dumps(
                    {
                        "msrs_root": data_info.get("msrs_root"),
                        "train": data_info.get("train_names", []),
                        "val": data_info.get("val_names", []),
                    },
                    indent=1,
                )
            )

        command = command if command is not None else sys.argv
        t_start = time.perf_counter()
        train_images, train_time = 0, 0.0
        skipped = 0
        for epoch in range(start_epoch, cfg.epochs):
            set_train_mode(model, cfg.train_only)
            train_ds.set_epoch(epoch)  # type: ignore[attr-defined]
            if sampler is not None:
                sampler.set_epoch(epoch)
                loader_sampler: Any = sampler
            else:
                g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
                loader_sampler = RandomSampler(train_ds, generator=g)  # type: ignore[arg-type]
            loader = DataLoader(
                train_ds,
                batch_size=cfg.batch_size,
                sampler=loader_sampler,
                drop_last=True,
                num_workers=cfg.workers,
                worker_init_fn=_worker_init if cfg.workers else None,
                pin_memory=device.type == "cuda",
                persistent_workers=False,
                # Workers are made anew each epoch (they must see the new epoch's
                # augmentation seed); forking the trainer once its OpenMP pool exists
                # hung a worker here (epoch 3, 2 CPU cores), so fork from a clean server.
                multiprocessing_context="forkserver" if cfg.workers else None,
            )
            bar = tqdm(
                total=per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (cfg.progress and d.main)
            )
            sums: dict[str, float] = {}
            n_steps = 0
            t_prev = time.perf_counter()
            for i, b in enumerate(loader):
                if i >= per_epoch:
                    break
                rgb = b["rgb"].to(device, non_blocking=True)
                th = b["thermal"].to(device, non_blocking=True)
                labels = b["labels"].to(device, non_blocking=True)
                has = b["has_labels"].to(device, non_blocking=True)
                ctx = torch.autocast(device.type, dtype=amp) if amp else nullcontext()
                with ctx:
                    outp = ddp_model(rgb, th)
                losses = joint_loss({k: v.float() for k, v in outp.items()}, rgb, th, labels, has, w)
                loss = losses["total"]
                finite = torch.isfinite(loss)
                if d.world > 1:  # every rank must take the same branch, or DDP deadlocks
                    flag = finite.float().to(device)
                    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
                    finite = flag > 0
                opt.zero_grad(set_to_none=True)
                if not bool(finite):
                    skipped += 1
                    if skipped > 20:
                        raise FloatingPointError("loss was not finite for more than 20 steps; lower --lr")
                    continue
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or float("inf"))
                scaler.step(opt)
                scaler.update()
                sched.step()
                step += 1
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                now = time.perf_counter()
                dt, t_prev = now - t_prev, now
                imgs = rgb.shape[0] * d.world
                if not (epoch == start_epoch and i == 0):  # the first step includes start-up costs
                    train_images += imgs
                    train_time += dt
                n_steps += 1
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
                ips = imgs / max(dt, 1e-9)
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}", img_s=f"{ips:.1f}")
                bar.update(1)
                if d.main and (step % cfg.log_every == 0 or i == 0):
                    row = {
                        "step": step,
                        "epoch": epoch + 1,
                        "lr": sched.get_last_lr()[0],
                        "grad_norm": float(gnorm),
                        "images_per_s": ips,
                        **{k: float(v.detach()) for k, v in losses.items()},
                    }
                    train_log.write(row)  # type: ignore[union-attr]
                    if tb is not None:
                        for k, v in row.items():
                            if k not in ("step", "epoch"):
                                tb.add_scalar(f"train/{k}", v, step)
            bar.close()
            epoch_row: dict[str, Any] = {
                "epoch": epoch + 1,
                "step": step,
                **{f"train_{k}": v / max(1, n_steps) for k, v in sums.items()},
            }
            epoch_row["images_per_s"] = train_images / train_time if train_time else float("nan")
            improved = False
            if d.main and vals and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
                t_val = time.perf_counter()
                epoch_row.update(validate(model, vals, cfg, device, amp))
                epoch_row["val_time_s"] = time.perf_counter() - t_val
                key = cfg.best_metric if cfg.best_metric in epoch_row else "val_loss"
                score = epoch_row[key]
                better = best is None or (score > best["score"] if key == "miou" else score < best["score"])
                if better:
                    best = {"metric": key, "score": float(score), "epoch": epoch + 1}
                    improved = True
            elif d.main and not vals and (best is None or epoch_row.get("train_total", 1e9) < best["score"]):
                best = {"metric": "train_total", "score": float(epoch_row["train_total"]), "epoch": epoch + 1}
                improved = True
            history.append(epoch_row)
            if d.main:
                val_log.write(epoch_row)  # type: ignore[union-attr]
                if tb is not None:
                    for k, v in epoch_row.items():
                        if isinstance(v, float) and math.isfinite(v):
                            tb.add_scalar(f"epoch/{k}", v, epoch + 1)
                summary = _summary(
                    cfg,
                    command,
                    data_info,
                    history,
                    best,
                    epoch + 1,
                    t_start,
                    train_images,
                    train_time,
                    d,
                    device,
                    amp,
                    resumed_from,
                    skipped,
                )
                meta = CheckpointMeta.for_model(
                    model,
                    preset=cfg.preset,
                    training=summary,
                    class_names=_class_names(cfg.num_classes),
                    palette=_palette(cfg.num_classes),
                )
                save_checkpoint(out / "last.safetensors", model, meta)
                if improved:
                    save_checkpoint(out / "best.safetensors", model, meta)
                _atomic_torch_save(
                    {
                        "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(),
                        "scaler": scaler.state_dict(),
                        "epoch": epoch,
                        "step": step,
                        "best": best,
                        "history_json": json.dumps(history),
                        "torch_rng": torch.get_rng_state(),
                    },
                    out / "last_state.pt",
                )
                (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
                if cfg.progress:
                    tqdm.write(_epoch_line(epoch_row))
            if d.world > 1:
                dist.barrier()
        if tb is not None:
            tb.close()
        return _summary(
            cfg,
            command,
            data_info,
            history,
            best,
            cfg.epochs,
            t_start,
            train_images,
            train_time,
            d,
            device,
            amp,
            resumed_from,
            skipped,
        )
    finally:
        if d.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _palette(k: int) -> list[tuple[int, int, int]]:
    from sccosf_ros.imaging.palette import MSRS_PALETTE

    if k == len(MSRS_PALETTE):
        return [tuple(int(c) for c in p) for p in MSRS_PALETTE]  # type: ignore[misc]
    rng = np.random.default_rng(0)
    return [(0, 0, 0)] + [tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(k - 1)]  # type: ignore[misc]


def _atomic_torch_save(obj: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _epoch_line(row: dict[str, Any]) -> str:
    keys = ("epoch", "train_total", "val_loss", "miou", "images_per_s", "fusion_EN", "fusion_Qabf")
    return "  ".join(f"{k}={_fmt(row[k])}" for k in keys if k in row)


def _summary(
    cfg: TrainConfig,
    command: list[str],
    data: dict[str, Any],
    history: list[dict[str, Any]],
    best: dict[str, Any] | None,
    epochs_done: int,
    t_start: float,
    images: int,
    seconds: float,
    d: _Dist,
    device: torch.device,
    amp: torch.dtype | None,
    resumed_from: str | None,
    skipped: int,
) -> dict[str, Any]:
    """The training record stored in the checkpoints' metadata and in summary.json."""
    best_row = next((r for r in history if best and r["epoch"] == best["epoch"]), None)
    return _finite_json(
        {
            "tool": "sccosf-train",
            "command": shlex.join(command),
            "config": asdict(cfg),
            "data": data,
            "synthetic_labels_note": "segmentation labels come only from procedurally generated synthetic "
            "scenes unless a labelled MSRS-layout folder was given; unlabelled real pairs train fusion only",
            "epochs_completed": epochs_done,
            "wall_time_s": round(time.perf_counter() - t_start, 2),
            "train_images_per_s": round(images / seconds, 3) if seconds else None,
            "world_size": d.world,
            "device": str(device),
            "amp": str(amp).replace("torch.", "") if amp else "off",
            "machine": _machine(),
            "best": best,
            "best_validation": best_row,
            "history": history,
            "resumed_from": resumed_from,
            "skipped_nonfinite_steps": skipped,
        }
    )


def _finite_json(obj: Any) -> Any:
    """NaN/inf (e.g. IoU of a class absent from validation) become None so the JSON stays standard."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_json(v) for v in obj]
    return obj
