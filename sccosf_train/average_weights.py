"""Average the weights of checkpoints of one lineage (a uniform "model soup").

``python -m sccosf_train.average_weights A.safetensors B.safetensors --out soup.safetensors``

Checkpoints along one training path (each fine-tuned from the one before, same preset) lie in one basin of
the loss, so their mean is a network too, often better than either (weight averaging as in SWA and model
soups). BatchNorm running statistics are averaged with the weights; integer buffers (step counters) come from
the last file. The metadata is the last file's plus a ``weight_average`` record naming the inputs, so the
lineage stays readable from the file. No ROS.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from sccosf_ros.checkpoint import load_checkpoint, save_checkpoint
from sccosf_ros.errors import CheckpointError


class AverageError(ValueError):
    """Checkpoints that cannot be averaged: the message says why, in one line."""


def average(states: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The uniform mean of ``states`` (float64 sums, stored in each tensor's own dtype); integer tensors
    from the last state. All states must hold the same names and shapes."""
    if len(states) < 2:
        raise AverageError(f"need at least two checkpoints, got {len(states)}")
    names = set(states[0])
    for k, s in enumerate(states[1:], 1):
        if set(s) != names:
            diff = sorted(names ^ set(s))
            raise AverageError(f"checkpoint {k + 1} holds other tensors than the first (e.g. {diff[:3]})")
        bad = [n for n in names if s[n].shape != states[0][n].shape]
        if bad:
            raise AverageError(
                f"checkpoint {k + 1}: {bad[0]} has shape {tuple(s[bad[0]].shape)}, "
                f"the first {tuple(states[0][bad[0]].shape)}"
            )
    out = {}
    for n in states[0]:
        last = states[-1][n]
        if not last.is_floating_point():
            out[n] = last.clone()
            continue
        total = sum(s[n].to(torch.float64) for s in states)
        out[n] = (total / len(states)).to(last.dtype)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+", type=Path, help="two or more checkpoints of one network")
    p.add_argument("--out", type=Path, required=True, help="averaged checkpoint to write")
    args = p.parse_args(argv)
    try:
        loaded = [load_checkpoint(c) for c in args.checkpoints]
        metas = [m for _, m in loaded]
        if len({(m.preset, m.num_classes) for m in metas}) > 1:
            raise AverageError("the checkpoints are of different presets or class counts")
        state = average([s for s, _ in loaded])
    except (AverageError, CheckpointError) as exc:
        raise SystemExit(f"average_weights: {exc}") from None
    meta = metas[-1]
    meta.training = {
        **meta.training,
        "weight_average": {"of": [str(c) for c in args.checkpoints], "weights": "uniform"},
    }
    out = save_checkpoint(args.out, state, meta)
    print(f"wrote {out}: the mean of {len(args.checkpoints)} checkpoints")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
