"""Export a trained checkpoint for shipping: weights stored in float16, everything else unchanged.

``python -m sccosf_train.half_precision runs/tiny/best.safetensors models/sccosf_tiny.safetensors``

Half-precision storage halves the file (the repository ships the model in git); the engine loads it into the
float32 network (``load_state_dict`` casts), so inference precision is still chosen by the engine. The cost
is rounding of every weight to 11 significant bits: the command measures it on ``--check-pairs`` real or
synthetic pairs (largest difference of the fused image in grey levels and the share of mask pixels that
change) and records it in the metadata.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from sccosf_ros.checkpoint import load_checkpoint, save_checkpoint
from sccosf_ros.engine import FusionEngine
from sccosf_synth.scenes import generate_scene


def to_half(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating tensors to float16; integer buffers (e.g. BatchNorm's step counter) as they are."""
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def compare(a: FusionEngine, b: FusionEngine, n: int) -> dict[str, float]:
    """Worst fused-image difference (grey levels) and mean changed-mask share over ``n`` synthetic scenes."""
    worst, changed = 0, []
    for i in range(n):
        scene = generate_scene(90_000 + i, 240, 320)
        ra, rb = a.infer(scene.rgb, scene.thermal), b.infer(scene.rgb, scene.thermal)
        worst = max(worst, int(np.abs(ra.fused.astype(int) - rb.fused.astype(int)).max()))
        changed.append(float((ra.mask != rb.mask).mean()))
    return {"pairs": n, "fused_max_abs_diff": worst, "mask_changed_fraction": float(np.mean(changed))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", help="trained checkpoint (e.g. runs/tiny/best.safetensors)")
    p.add_argument("dst", help="exported checkpoint (e.g. models/sccosf_tiny.safetensors)")
    p.add_argument("--check-pairs", type=int, default=8, help="synthetic pairs to measure the rounding on")
    args = p.parse_args(argv)

    state, meta = load_checkpoint(args.src)
    half = to_half(state)
    with tempfile.TemporaryDirectory() as tmp:
        probe = save_checkpoint(Path(tmp) / "half.safetensors", half, meta)
        effect = compare(
            FusionEngine(args.src, device="cpu"), FusionEngine(probe, device="cpu"), args.check_pairs
        )
    meta.training = {**meta.training, "export": {"source": str(args.src), "dtype": "float16", **effect}}
    out = save_checkpoint(args.dst, half, meta)
    size = out.stat().st_size / 1e6
    print(
        f"wrote {out} ({size:.1f} MB); float16 rounding on {effect['pairs']} pairs: fused image within "
        f"{effect['fused_max_abs_diff']} grey levels, {100 * effect['mask_changed_fraction']:.3f}% of mask "
        "pixels changed"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
