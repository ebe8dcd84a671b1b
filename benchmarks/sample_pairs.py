"""Frames the speed benchmarks run on: real MSRS pairs where a folder has them, else synthetic ones.

Shared by ``bench_onnx.py`` and ``gpu_check.py`` (which looks in ``gpu_carry/msrs`` too).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def sample_pairs(
    roots: Sequence[Path], n: int, height: int, width: int, seed: int
) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """``n`` (RGB, thermal uint8) pairs at height×width, spread over the first root's ``vi/`` + ``ir/`` names
    (resized with INTER_AREA if needed), or ``n`` synthetic frames (``seed``) when no root has any; and a
    line saying which."""
    import cv2

    for root in roots:
        names = sorted(p.stem for p in (root / "vi").glob("*.png")) if (root / "vi").is_dir() else []
        names = [s for s in names if (root / "ir" / f"{s}.png").is_file()]
        if not names:
            continue
        out = []
        for s in names[:: max(1, len(names) // n)][:n]:
            rgb = cv2.cvtColor(cv2.imread(str(root / "vi" / f"{s}.png")), cv2.COLOR_BGR2RGB)
            th = cv2.imread(str(root / "ir" / f"{s}.png"), cv2.IMREAD_GRAYSCALE)
            if rgb.shape[:2] != (height, width):
                rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
                th = cv2.resize(th, (width, height), interpolation=cv2.INTER_AREA)
            out.append((rgb, th))
        return out, f"{len(out)} real MSRS pairs from {root}"
    from sccosf_synth.scenes import generate_scene

    scenes = [generate_scene(seed + i, height, width) for i in range(n)]
    return [(sc.rgb, sc.thermal) for sc in scenes], f"{n} synthetic scenes (sccosf_synth, seed {seed})"
