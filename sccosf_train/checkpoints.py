"""Where a run's weights come from and go: ``--init-from``, ``--resume``, and each epoch's files.

Each epoch rank 0 writes ``last.safetensors`` (and ``best.safetensors`` when validation improved) in the
engine's checkpoint format with the training record in their metadata, ``last_state.pt`` (optimizer,
scheduler, scaler and progress for ``--resume``: plain tensors and numbers, loaded with
``weights_only=True``) and ``summary.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from sccosf_ros.checkpoint import CheckpointMeta, check_state_dict, load_checkpoint, save_checkpoint
from sccosf_ros.imaging.palette import class_names_for, palette_for
from sccosf_train.config import TrainConfig
from sccosf_train.optim import Optimisation, selected
from sccosf_train.record import TrainState


def load_init_weights(model: torch.nn.Module, cfg: TrainConfig) -> dict[str, Any]:
    """Start from ``cfg.init_from``'s weights (fine-tuning); returns what the training record keeps.

    Weights the checkpoint lacks (a module added since) start fresh, unless they lie outside ``--train-only``
    (they would then stay random): that is an error.
    """
    weights, init_meta = load_checkpoint(cfg.init_from)
    fresh = check_state_dict(model, weights, source=str(cfg.init_from), missing_ok=True)
    untrained = [k for k in fresh if cfg.train_only and not selected(k, cfg.train_only)]
    if untrained:
        raise ValueError(
            f"--init-from {cfg.init_from} lacks {len(untrained)} weights outside "
            f"--train-only (they would stay random), e.g. {untrained[0]}"
        )
    model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=False)
    return {
        "init_from": str(Path(cfg.init_from).resolve()),  # type: ignore[arg-type]
        "initialised_fresh": fresh,
        # The earlier stages' record (their data split above all) travels with the fine-tuned model.
        "init_from_training": init_meta.training,
    }


def resume(where: str, model: torch.nn.Module, optimisation: Optimisation) -> TrainState:
    """Restore weights, optimizer, schedule, scaler, RNG and progress from a run folder or its state file."""
    rdir = Path(where)
    state_path = rdir / "last_state.pt" if rdir.is_dir() else rdir
    weights_path = state_path.with_name("last.safetensors")
    for p in (state_path, weights_path):
        if not p.is_file():
            raise FileNotFoundError(
                f"--resume {where}: {p} not found (a run folder written by "
                "sccosf-train has last_state.pt and last.safetensors)"
            )
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RuntimeError(f"{state_path}: unreadable trainer state ({exc})") from None
    weights, _ = load_checkpoint(weights_path)
    check_state_dict(model, weights, source=str(weights_path))
    model.load_state_dict(weights)
    optimisation.load_state_dict(state)
    torch.set_rng_state(state["torch_rng"])
    return TrainState(
        epoch=int(state["epoch"]) + 1,
        step=int(state["step"]),
        best=state.get("best"),
        history=json.loads(state.get("history_json", "[]")),
        resumed_from=str(state_path),
    )


def save_epoch(
    out: Path,
    model: torch.nn.Module,
    cfg: TrainConfig,
    optimisation: Optimisation,
    state: TrainState,
    record: dict[str, Any],
    improved: bool,
) -> None:
    """Write the epoch's checkpoint(s), the resume state and summary.json (rank 0 only)."""
    meta = CheckpointMeta.for_model(
        model,
        preset=cfg.preset,
        training=record,
        class_names=class_names_for(cfg.num_classes),
        palette=palette_for(cfg.num_classes),
    )
    save_checkpoint(out / "last.safetensors", model, meta)
    if improved:
        save_checkpoint(out / "best.safetensors", model, meta)
    _atomic_torch_save(
        {
            **optimisation.state_dict(),
            "epoch": state.epoch - 1,  # the epoch just finished (the file's format since the first run)
            "step": state.step,
            "best": state.best,
            "history_json": json.dumps(state.history),
            "torch_rng": torch.get_rng_state(),
        },
        out / "last_state.pt",
    )
    (out / "summary.json").write_text(json.dumps(record, indent=1, default=str))


def _atomic_torch_save(obj: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
