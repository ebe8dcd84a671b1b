"""The model in models/: loads by default, carries its training record, and behaves sanely."""

from __future__ import annotations

import numpy as np
import pytest

from sccosf_ros.checkpoint import read_checkpoint_meta
from sccosf_ros.engine import FusionEngine
from sccosf_ros.paths import default_checkpoint_path
from sccosf_synth.scenes import generate_scene

SHIPPED = default_checkpoint_path()
pytestmark = pytest.mark.skipif(SHIPPED is None, reason="no shipped model in this installation")


def _stages_with_real_data(training: dict) -> list[dict]:
    """Data records of every training stage that saw the MSRS pairs, newest first (each fine-tuning stage
    keeps the earlier stage's record under ``init_from_training``)."""
    out, record = [], training
    while record:
        data = record["data"]
        if data.get("msrs_root") is not None:
            out.append(data)
        record = data.get("init_from_training")
    return out


def test_metadata_records_data_split_and_export() -> None:
    meta = read_checkpoint_meta(SHIPPED)
    assert meta.preset == "tiny" and meta.num_classes == 9 and len(meta.class_names) == 9
    stages = _stages_with_real_data(meta.training)
    assert stages
    # The 61 pairs with a SeAFusion output: validation of the fusion stages (some on a subset, via
    # --val-max-pairs), held out (--holdout seafusion) of the real-pair segmentation stages.
    held_out = set().union(*(d.get("holdout_names") or d["val_names"] for d in stages))
    assert len(held_out) == 61
    for data in stages:  # the same 180 pairs trained everywhere, never a held-out one
        trained = set(data["train_names"])
        assert not trained & held_out
        if data.get("holdout_names"):  # segmentation stages: chose on 20 of the 180 (msrs_dev_split.txt)
            dev = set(data["val_names"])
            assert len(trained) == 160 and len(dev) == 20 and not trained & dev
        else:
            assert len(trained) == 180
    assert stages[0].get("label_root")  # the shipped model learned its segmentation from real pseudo labels
    assert meta.training["export"]["dtype"] == "float16"


def test_default_engine_fuses_a_night_scene() -> None:
    scene = generate_scene(123, 240, 320, night=True)
    with FusionEngine(device="cpu", num_threads=1) as engine:
        res = engine.infer(scene.rgb, scene.thermal)
    assert res.fused.shape == scene.rgb.shape and res.fused.dtype == np.uint8
    assert res.mask.max() < 9
    # Fusion brings thermal content into a dark visible image: the fused luminance correlates with the
    # thermal image more than the visible image does.
    gray = res.fused.astype(np.float64) @ [0.299, 0.587, 0.114]
    vis = scene.rgb.astype(np.float64) @ [0.299, 0.587, 0.114]
    th = scene.thermal.astype(np.float64)
    assert np.corrcoef(gray.ravel(), th.ravel())[0, 1] > np.corrcoef(vis.ravel(), th.ravel())[0, 1]


def test_switching_the_segmentation_refinement_off_keeps_the_fused_image() -> None:
    scene = generate_scene(321, 240, 320)
    with (
        FusionEngine(device="cpu", num_threads=1) as full,
        FusionEngine(device="cpu", num_threads=1, seg_refine=False) as coarse,
    ):
        assert full.seg_refine and not coarse.seg_refine
        a, b = full.infer(scene.rgb, scene.thermal), coarse.infer(scene.rgb, scene.thermal)
    assert np.array_equal(a.fused, b.fused)
    assert (a.mask != b.mask).mean() > 0.001  # the refinement changes the mask, not the image
