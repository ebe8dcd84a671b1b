"""A run's progress and the training record written into every checkpoint's metadata and summary.json."""

from __future__ import annotations

import math
import shlex
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from sccosf_train.config import TrainConfig
from sccosf_train.runtime import Dist, machine_info

SYNTHETIC_LABELS_NOTE = (
    "segmentation labels come only from procedurally generated synthetic scenes unless a labelled "
    "MSRS-layout folder was given; unlabelled real pairs train fusion only"
)


@dataclass
class TrainState:
    """Where a run stands; what ``last_state.pt`` keeps for ``--resume`` besides the optimizer."""

    epoch: int = 0  # the next epoch to run (0-based)
    step: int = 0
    best: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0  # optimizer steps skipped for a non-finite loss
    train_images: int = 0  # images and seconds of timed steps (the first step of a process is not timed)
    train_time: float = 0.0
    resumed_from: str | None = None
    stopped_by_time: bool = False  # the run hit --max-minutes

    def update_best(self, row: dict[str, Any], key: str, higher_is_better: bool) -> bool:
        """Record ``row[key]`` as the best score if it beats the best so far; True when it did."""
        score = float(row.get(key, -math.inf if higher_is_better else math.inf))
        if self.best is not None:
            old = self.best["score"]
            if (score <= old) if higher_is_better else (score >= old):
                return False
        self.best = {"metric": key, "score": score, "epoch": row["epoch"]}
        return True


@dataclass
class RunInfo:
    """What the record says about how the run was started (fixed for the run's life)."""

    cfg: TrainConfig
    command: list[str]
    data: dict[str, Any]
    dist: Dist
    device: torch.device
    amp: torch.dtype | None
    t_start: float = field(default_factory=time.perf_counter)


def summary(info: RunInfo, state: TrainState, epochs_done: int) -> dict[str, Any]:
    """The training record stored in the checkpoints' metadata and in summary.json."""
    best = state.best
    best_row = next((r for r in state.history if best and r["epoch"] == best["epoch"]), None)
    seconds = state.train_time
    return finite_json(
        {
            "tool": "sccosf-train",
            "command": shlex.join(info.command),
            "config": asdict(info.cfg),
            "data": info.data,
            "synthetic_labels_note": SYNTHETIC_LABELS_NOTE,
            "epochs_completed": epochs_done,
            "wall_time_s": round(time.perf_counter() - info.t_start, 2),
            "train_images_per_s": round(state.train_images / seconds, 3) if seconds else None,
            "world_size": info.dist.world,
            "device": str(info.device),
            "amp": str(info.amp).replace("torch.", "") if info.amp else "off",
            "machine": machine_info(),
            "best": best,
            "best_validation": best_row,
            "history": state.history,
            "resumed_from": state.resumed_from,
            "skipped_nonfinite_steps": state.skipped,
            "stopped_by_time": state.stopped_by_time,
        }
    )


def finite_json(obj: Any) -> Any:
    """NaN/inf (e.g. IoU of a class absent from validation) become None so the JSON stays standard."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj
