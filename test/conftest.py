"""Shared fixtures.

``random_checkpoint`` is a real ``tiny`` SC-CoSF checkpoint with seeded random weights, written once per
test session (building and saving takes well under a second). It is shared: treat the file as read-only;
copy it to ``tmp_path`` before corrupting or modifying it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path to a seeded random-weight ``tiny`` checkpoint with MSRS class names and palette."""
    from sccosf_ros.checkpoint import CheckpointMeta, save_checkpoint
    from sccosf_ros.model import build_model

    with torch.random.fork_rng():  # seeded, without disturbing other tests' RNG state
        torch.manual_seed(0)
        model = build_model("tiny", num_classes=9)
    meta = CheckpointMeta.for_model(model, preset="tiny", training={"note": "random weights, test fixture"})
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_random.safetensors", model, meta)
