"""``sccosf_train.average_weights``: the mean of two checkpoints, its record, and refusals (no ROS)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sccosf_ros.checkpoint import load_checkpoint, save_checkpoint
from sccosf_ros.engine import FusionEngine
from sccosf_synth.scenes import generate_scene
from sccosf_train.average_weights import AverageError, average, main


def _shifted(src: Path, dst: Path, delta: float) -> Path:
    state, meta = load_checkpoint(src)
    moved = {k: v + delta if v.is_floating_point() else v + 1 for k, v in state.items()}
    return save_checkpoint(dst, moved, meta)


def test_mean_of_two_checkpoints_runs_and_records_its_inputs(random_checkpoint: Path, tmp_path: Path) -> None:
    b = _shifted(random_checkpoint, tmp_path / "b.safetensors", 0.02)
    out = tmp_path / "soup.safetensors"
    assert main([str(random_checkpoint), str(b), "--out", str(out)]) == 0
    (sa, _), (sb, _), (soup, meta) = (load_checkpoint(p) for p in (random_checkpoint, b, out))
    for name, v in soup.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, (sa[name] + sb[name]) / 2, rtol=1e-6, atol=1e-6)
        else:  # integer buffers (BatchNorm's step counter) come from the last file
            assert torch.equal(v, sb[name])
    assert meta.training["weight_average"]["of"] == [str(random_checkpoint), str(b)]
    scene = generate_scene(3, 96, 128)
    res = FusionEngine(out, device="cpu").infer(scene.rgb, scene.thermal)
    assert res.fused.shape == scene.rgb.shape and np.isfinite(res.fused).all()


def test_refuses_mismatched_or_single_checkpoints(random_checkpoint: Path, tmp_path: Path) -> None:
    state, _ = load_checkpoint(random_checkpoint)
    with pytest.raises(AverageError, match="at least two"):
        average([state])
    fewer = dict(state)
    fewer.pop(next(iter(fewer)))
    with pytest.raises(AverageError, match="other tensors"):
        average([state, fewer])
    name = next(k for k, v in state.items() if v.ndim == 4)
    reshaped = {**state, name: torch.zeros(1, *state[name].shape[1:])}
    with pytest.raises(AverageError, match="shape"):
        average([state, reshaped])
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit, match=r"average_weights: .*corrupt"):
        main([str(random_checkpoint), str(corrupt), "--out", str(tmp_path / "x.safetensors")])
    assert not (tmp_path / "x.safetensors").exists()
