"""The training loop: set a run up, then per epoch train, validate and save. Each part has one job.

Outputs in ``out``: ``best.safetensors`` and ``last.safetensors`` (the engine's checkpoint format, with the
training summary in their metadata), ``last_state.pt`` (for ``--resume``), ``train_log.csv``, ``val_log.csv``,
``split.json`` (the real-data train/validation names) and ``summary.json``. Under ``torchrun`` every rank
trains on its DistributedSampler shard; only rank 0 validates and writes anything.

What a step optimises is an :data:`Objective`: a callable from the network's outputs and the batch (every
tensor the dataset yields, on the device) to named losses with a ``"total"``. The default is the joint loss
of :mod:`sccosf_train.losses`; a new loss, or a teacher run inside one, plugs in through ``train(objective=)``
without touching the loop.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, DistributedSampler
from tqdm import tqdm

from sccosf_train.checkpoints import load_init_weights, resume, save_epoch
from sccosf_train.config import TrainConfig
from sccosf_train.data import (
    build_datasets,
    epoch_loader,
    estimate_class_counts,
    make_sampler,
    steps_per_epoch,
)
from sccosf_train.logs import RunLog
from sccosf_train.losses import enet_class_weights
from sccosf_train.objectives import JointObjective, Objective, make_objective
from sccosf_train.optim import Optimisation, build_optimisation, freeze_except, lr_lambda, set_train_mode
from sccosf_train.record import RunInfo, TrainState, summary
from sccosf_train.runtime import (
    Dist,
    all_ranks_agree,
    amp_dtype,
    autocast,
    barrier,
    resolve_device,
    seed_everything,
    setup_distributed,
    teardown_distributed,
)
from sccosf_train.validate import validate

__all__ = [
    "JointObjective",
    "Objective",
    "TrainConfig",
    "estimate_class_counts",
    "lr_lambda",
    "train",
]


MAX_SKIPPED_STEPS = 20


@dataclass
class Run:
    """Everything the parts of the loop share for one run."""

    cfg: TrainConfig
    info: RunInfo
    out: Path
    model: torch.nn.Module
    net: torch.nn.Module  # the model, wrapped in DistributedDataParallel under torchrun
    objective: Objective
    optimisation: Optimisation
    train_ds: Dataset
    vals: list[Dataset]
    sampler: DistributedSampler | None
    per_epoch: int
    log: RunLog
    state: TrainState
    start_epoch: int  # the first epoch this process runs (its first step pays for start-up: not timed)
    deadline: float | None = None  # time.perf_counter() after which the run stops (--max-minutes)

    @property
    def out_of_time(self) -> bool:
        return self.deadline is not None and time.perf_counter() > self.deadline

    @property
    def dist(self) -> Dist:
        return self.info.dist

    @property
    def device(self) -> torch.device:
        return self.info.device


# ----------------------------------------------------------------------------------------------- setup


def _encoder_weights(cfg: TrainConfig) -> str | Path | None:
    from sccosf_ros.model import default_imagenet_weights_path

    if cfg.pretrained_encoder == "auto":
        return default_imagenet_weights_path()
    if cfg.pretrained_encoder in ("none", "", None):
        return None
    return cfg.pretrained_encoder


def _class_weights(cfg: TrainConfig, train_ds: Dataset, data: dict[str, Any]) -> tuple[float, ...] | None:
    if cfg.seg_class_weights != "enet":
        return None
    counts = estimate_class_counts(train_ds, cfg.num_classes, seed=cfg.seed)
    weights = tuple(w**cfg.class_weight_power for w in enet_class_weights(counts))
    data["seg_class_pixel_counts"] = counts.tolist()
    data["seg_class_weights"] = [round(v, 4) for v in weights]
    return weights


def setup(cfg: TrainConfig, d: Dist, command: list[str], objective: Objective | None) -> Run:
    """Device, model (fresh, ``--init-from`` or ``--resume``), data, optimizer, logs: a run ready to go."""
    from sccosf_ros.model import build_model

    if cfg.max_minutes is not None and d.world > 1:  # ranks would stop at different steps and wait forever
        raise ValueError("--max-minutes is for single-process runs, not under torchrun")
    device = resolve_device(cfg.device, d)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed + d.rank, cfg.deterministic)
    amp = amp_dtype(cfg.amp, device)
    out = Path(cfg.out)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
    enc = _encoder_weights(cfg)
    model = build_model(cfg.preset, cfg.num_classes, pretrained_encoder=enc).to(device)

    train_ds, vals, data = build_datasets(cfg)
    data["pretrained_encoder"] = str(enc) if enc else None
    per_epoch = steps_per_epoch(train_ds, cfg, d)
    if cfg.init_from:
        data.update(load_init_weights(model, cfg))
    if cfg.train_only:
        data["trainable_parameters"] = freeze_except(model, cfg.train_only)
    weights = _class_weights(cfg, train_ds, data)
    optimisation = build_optimisation(model, cfg, per_epoch * cfg.epochs, device, amp)
    state = resume(cfg.resume, model, optimisation) if cfg.resume else TrainState()
    net: torch.nn.Module = model
    if d.world > 1:
        ids = [device.index] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    log = RunLog(
        out, resume=bool(cfg.resume), tensorboard=cfg.tensorboard, progress=cfg.progress, enabled=d.main
    )
    if d.main:
        split = {"msrs_root": data.get("msrs_root"), "train": data.get("train_names", [])}
        (out / "split.json").write_text(json.dumps({**split, "val": data.get("val_names", [])}, indent=1))
    return Run(
        cfg=cfg,
        info=RunInfo(cfg, command, data, d, device, amp),
        out=out,
        model=model,
        net=net,
        objective=objective or make_objective(cfg, weights, device),
        optimisation=optimisation,
        train_ds=train_ds,
        vals=vals,
        sampler=make_sampler(train_ds, cfg, d),
        per_epoch=per_epoch,
        log=log,
        state=state,
        start_epoch=state.epoch,
        deadline=None if cfg.max_minutes is None else time.perf_counter() + 60.0 * cfg.max_minutes,
    )


# ----------------------------------------------------------------------------------------------- one epoch


def train_step(run: Run, batch: dict[str, Tensor]) -> tuple[dict[str, Tensor], float] | None:
    """One optimizer step on ``batch``; (losses, gradient norm), or None when the loss was not finite."""
    with autocast(run.device, run.info.amp):
        outputs = run.net(batch["rgb"], batch["thermal"])
    losses = run.objective(outputs, batch)
    opt = run.optimisation
    opt.optimizer.zero_grad(set_to_none=True)
    if not all_ranks_agree(torch.isfinite(losses["total"]), run.dist, run.device):
        run.state.skipped += 1
        if run.state.skipped > MAX_SKIPPED_STEPS:
            raise FloatingPointError(
                f"loss was not finite for more than {MAX_SKIPPED_STEPS} steps; lower --lr"
            )
        return None
    opt.scaler.scale(losses["total"]).backward()
    opt.scaler.unscale_(opt.optimizer)
    gnorm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.grad_clip or float("inf"))
    opt.scaler.step(opt.optimizer)
    opt.scaler.update()
    opt.scheduler.step()
    run.state.step += 1
    return losses, float(gnorm)


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Tensor]:
    """Every tensor the dataset yields (names and sources are strings and stay behind)."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items() if isinstance(v, Tensor)}


def train_one_epoch(run: Run, epoch: int) -> dict[str, float]:
    """Train ``run.per_epoch`` steps; returns the epoch's mean of every loss term."""
    set_train_mode(run.model, run.cfg.train_only)
    loader = epoch_loader(run.train_ds, run.cfg, epoch, run.sampler, run.device)
    bar = tqdm(total=run.per_epoch, desc=f"epoch {epoch + 1}/{run.cfg.epochs}", disable=not run.log.progress)
    sums: dict[str, float] = {}
    n_steps = 0
    first_of_process = epoch == run.start_epoch
    t_prev = time.perf_counter()
    for i, raw in enumerate(loader):
        if i >= run.per_epoch or (n_steps and run.out_of_time):
            break
        batch = _to_device(raw, run.device)
        done = train_step(run, batch)
        if done is None:
            continue
        losses, gnorm = done
        if run.device.type == "cuda":
            torch.cuda.synchronize(run.device)
        now = time.perf_counter()
        dt, t_prev = now - t_prev, now
        images = batch["rgb"].shape[0] * run.dist.world
        if not (first_of_process and i == 0):  # the first step includes start-up costs
            run.state.train_images += images
            run.state.train_time += dt
        n_steps += 1
        values = {k: float(v.detach()) for k, v in losses.items()}
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + v
        ips = images / max(dt, 1e-9)
        bar.set_postfix(loss=f"{values['total']:.3f}", img_s=f"{ips:.1f}")
        bar.update(1)
        if run.state.step % run.cfg.log_every == 0 or i == 0:
            lr = run.optimisation.scheduler.get_last_lr()[0]
            row = {
                "step": run.state.step,
                "epoch": epoch + 1,
                "lr": lr,
                "grad_norm": gnorm,
                "images_per_s": ips,
            }
            run.log.step({**row, **values})
    bar.close()
    return {k: v / max(1, n_steps) for k, v in sums.items()}


# ----------------------------------------------------------------------------------------------- end of epoch


def _validation_due(run: Run, epoch: int) -> bool:
    cfg = run.cfg
    return bool(run.vals) and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs)


def evaluate_epoch(run: Run, epoch: int, row: dict[str, Any]) -> bool:
    """Validate when due (rank 0) and update the best score; True when this epoch is the new best.

    Without validation sets, the training loss decides.
    """
    if not run.dist.main:
        return False
    if _validation_due(run, epoch):
        t_val = time.perf_counter()
        row.update(validate(run.model, run.vals, run.cfg, run.device, run.info.amp))
        row["val_time_s"] = time.perf_counter() - t_val
        key = run.cfg.best_metric if run.cfg.best_metric in row else "val_loss"
        return run.state.update_best(row, key, higher_is_better=key in ("miou", "box_f"))
    if not run.vals:
        return run.state.update_best(row, "train_total", higher_is_better=False)
    return False


def end_epoch(run: Run, epoch: int, losses: dict[str, float]) -> dict[str, Any]:
    """Validate, remember, log and save the epoch; returns its row of the validation log."""
    st = run.state
    row: dict[str, Any] = {
        "epoch": epoch + 1,
        "step": st.step,
        **{f"train_{k}": v for k, v in losses.items()},
    }
    row["images_per_s"] = st.train_images / st.train_time if st.train_time else float("nan")
    improved = evaluate_epoch(run, epoch, row)
    st.history.append(row)
    st.epoch = epoch + 1
    if run.dist.main:
        record = summary(run.info, st, epoch + 1)
        save_epoch(run.out, run.model, run.cfg, run.optimisation, st, record, improved)
        run.log.epoch(row)
    return row


# ----------------------------------------------------------------------------------------------- the loop


def train(
    cfg: TrainConfig, command: list[str] | None = None, objective: Objective | None = None
) -> dict[str, Any]:
    """Run training; returns the summary (also written to ``out/summary.json`` by rank 0)."""
    d = setup_distributed(cfg.device)
    try:
        run = setup(cfg, d, command if command is not None else sys.argv, objective)
        for epoch in range(run.state.epoch, cfg.epochs):
            losses = train_one_epoch(run, epoch)
            run.state.stopped_by_time = run.out_of_time and epoch + 1 < cfg.epochs
            end_epoch(run, epoch, losses)
            barrier(d)
            if run.state.stopped_by_time:
                break
        run.log.close()
        return summary(run.info, run.state, run.state.epoch)
    finally:
        teardown_distributed(d)
