"""Training logs: ``train_log.csv`` (every N steps), ``val_log.csv`` (every epoch), optional TensorBoard."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from tqdm import tqdm


class CsvLog:
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
            csv.writer(f).writerow([fmt(row.get(k, "")) for k in keys])


def fmt(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v


def epoch_line(row: dict[str, Any]) -> str:
    """The one line printed per epoch."""
    keys = ("epoch", "train_total", "val_loss", "miou", "box_f", "images_per_s", "fusion_EN", "fusion_Qabf")
    return "  ".join(f"{k}={fmt(row[k])}" for k in keys if k in row)


def _tensorboard(out: Path, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard not installed: CSV logs only
        return None
    return SummaryWriter(str(out / "tensorboard"))


class RunLog:
    """Everything a run logs, written by rank 0 only (other ranks get a log that does nothing)."""

    def __init__(self, out: Path, *, resume: bool, tensorboard: bool, progress: bool, enabled: bool) -> None:
        self.enabled = enabled
        self.progress = progress and enabled
        self.train = CsvLog(out / "train_log.csv", resume) if enabled else None
        self.val = CsvLog(out / "val_log.csv", resume) if enabled else None
        self.tb = _tensorboard(out, tensorboard) if enabled else None

    def step(self, row: dict[str, Any]) -> None:
        if self.train is None:
            return
        self.train.write(row)
        if self.tb is not None:
            for k, v in row.items():
                if k not in ("step", "epoch"):
                    self.tb.add_scalar(f"train/{k}", v, row["step"])

    def epoch(self, row: dict[str, Any]) -> None:
        if self.val is None:
            return
        self.val.write(row)
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, float) and math.isfinite(v):
                    self.tb.add_scalar(f"epoch/{k}", v, row["epoch"])
        if self.progress:
            tqdm.write(epoch_line(row))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
