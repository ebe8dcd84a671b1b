"""An SC-CoSF checkpoint as a teacher: the model labels pairs for the next model (self-training).

Why: on a camera rig the MFNet teacher has never seen it can collapse (RoadScene: box mean F 0.06), while the
shipped model still finds most objects there. Pseudo labels from the model itself, corrected by boxes
(``pseudo_labels --teacher sccosf``) or filtered by confidence and agreement between views (``sccosf-adapt``),
carry it to the new rig. Logits are the log of the engine's softmax probabilities (the engine returns
probabilities; ``softmax(log p) = p``, so every consumer of :class:`Teacher` logits sees the same classes
and confidences).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from sccosf_ros.checkpoint import CheckpointError
from sccosf_ros.engine import FusionEngine
from sccosf_ros.paths import default_checkpoint_path

_EPS = 1e-6


class SCCoSFTeacher:
    """:class:`sccosf_train.teachers.Teacher` over :class:`FusionEngine` (PyTorch backend, CPU or CUDA)."""

    name = "sccosf"
    title = "SC-CoSF"
    citation = "this project"

    def __init__(self, engine: FusionEngine) -> None:
        self.engine = engine
        self.class_names = tuple(engine.class_names)
        self.weights = str(engine.checkpoint)

    @classmethod
    def load(cls, weights: str | Path | None = None, device: str = "cpu") -> SCCoSFTeacher:
        path = Path(weights) if weights else default_checkpoint_path()
        if path.suffix.lower() == ".onnx":
            raise CheckpointError(f"{path}: the sccosf teacher needs a .safetensors checkpoint")
        return cls(FusionEngine(path, device=device, backend="torch"))

    def logits(self, rgb: np.ndarray, thermal: np.ndarray, scale: float = 1.0) -> torch.Tensor:
        h, w = thermal.shape[:2]
        if scale != 1.0:
            size = (max(8, round(w * scale)), max(8, round(h * scale)))
            rgb = cv2.resize(np.ascontiguousarray(rgb), size, interpolation=cv2.INTER_LINEAR)
            thermal = cv2.resize(np.ascontiguousarray(thermal), size, interpolation=cv2.INTER_LINEAR)
        probs = self.engine.infer(
            np.ascontiguousarray(rgb), np.ascontiguousarray(thermal), return_probs=True
        ).probs
        if probs is None:  # never from FusionEngine with return_probs; a clear error beats a None below
            raise RuntimeError("the engine returned no probabilities")
        if scale != 1.0:
            probs = np.stack([cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR) for c in probs])
        return torch.from_numpy(np.log(np.maximum(probs, _EPS)))[None].float()
