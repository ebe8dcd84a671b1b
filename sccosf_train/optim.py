"""What the optimizer touches and how: frozen parts, the learning-rate schedule, AdamW, loss scaling."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from sccosf_train.config import TrainConfig


def selected(name: str, prefixes: Sequence[str]) -> bool:
    """Whether the parameter or module ``name`` lies under one of the module paths ``prefixes``."""
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def freeze_except(model: torch.nn.Module, prefixes: Sequence[str]) -> int:
    """Train only parameters under ``prefixes`` (module paths such as ``icrm.refine``); returns their count.

    For fine-tuning one part of a trained network, e.g. a new segmentation refinement that must leave the
    fused image exactly as it was. An empty selection is an error, not a silent no-op.
    """
    n = 0
    for name, p in model.named_parameters():
        p.requires_grad_(selected(name, prefixes))
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
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and not selected(name, prefixes):
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


@dataclass
class Optimisation:
    """The three stateful pieces a resume must restore together."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler

    def state_dict(self) -> dict[str, dict]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])


def build_optimisation(
    model: torch.nn.Module, cfg: TrainConfig, total_steps: int, device: torch.device, amp: torch.dtype | None
) -> Optimisation:
    """AdamW over the trainable parameters, warmup + decay, and a gradient scaler (active for fp16 only)."""
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, total_steps))
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    return Optimisation(opt, sched, scaler)
