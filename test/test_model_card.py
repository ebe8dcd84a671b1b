"""Model-card figures: the trivial baseline's definition and a complete run on a tiny MSRS-layout folder."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from sccosf_ros.imaging.color import rgb_to_ycbcr
from sccosf_train.model_card import main, max_baseline, pairs_won


def test_max_baseline_takes_brighter_luminance_and_keeps_chroma() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    ir = rng.integers(0, 256, (16, 20), dtype=np.uint8)
    out = max_baseline(rgb, ir)
    y_out = rgb_to_ycbcr(out.astype(np.float64) / 255.0)[..., 0]
    y_vis = rgb_to_ycbcr(rgb.astype(np.float64) / 255.0)[..., 0]
    expected = np.maximum(y_vis, ir / 255.0)
    inside = (out > 0).all(-1) & (out < 255).all(-1)  # gamut clipping changes luma at the edges only
    assert np.abs(y_out - expected)[inside].max() < 3 / 255
    same = ir / 255.0 <= y_vis - 2 / 255  # where visible wins, the pixel is (up to rounding) unchanged
    assert np.abs(out.astype(int) - rgb.astype(int))[same].max() <= 1


def test_pairs_won_counts_strict_wins_per_metric() -> None:
    rows = {
        "ours": [{"EN": 2.0, "SD": 1.0}, {"EN": 1.0, "SD": 1.0}],
        "seafusion": [{"EN": 1.0, "SD": 1.0}, {"EN": 3.0, "SD": 0.5}],
        "max": [{"EN": 0.0, "SD": 0.0}, {"EN": 0.0, "SD": 2.0}],
    }
    won = pairs_won(rows)
    assert won["seafusion"]["EN"] == 1 and won["seafusion"]["SD"] == 1  # a tie is not a win
    assert won["max"]["EN"] == 2 and won["max"]["SD"] == 1


def test_model_card_run_on_small_folder(tmp_path: Path, random_checkpoint: Path) -> None:
    root = tmp_path / "msrs"
    rng = np.random.default_rng(1)
    for sub in ("ir", "vi", "seafusion", "boxes/fusion"):
        (root / sub).mkdir(parents=True)
    (root / "boxes" / "fusion" / "00002N.txt").write_text("0 0.5 0.5 0.25 0.5\n")  # one person
    for i, name in enumerate(["00001D", "00002N", "00003N"]):
        vi = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
        ir = rng.integers(0, 256, (64, 80), dtype=np.uint8)
        cv2.imwrite(str(root / "vi" / f"{name}.png"), vi)
        cv2.imwrite(str(root / "ir" / f"{name}.png"), ir)
        if i:  # two of three have a "published" output: they are the validation split
            cv2.imwrite(str(root / "seafusion" / f"{name}.png"), vi)
    out = tmp_path / "card"
    rc = main(
        [
            "--checkpoint",
            str(random_checkpoint),
            "--msrs-root",
            str(root),
            "--out",
            str(out),
            "--synthetic-scenes",
            "2",
            "--synthetic-size",
            "64",
            "80",
            "--threads",
            "1",
            "--no-teacher",
        ]
    )
    assert rc == 0
    card = json.loads((out / "model_card.json").read_text())
    assert card["fusion"]["pairs"] == 2
    for method in ("ours", "seafusion", "max"):
        assert np.isfinite(card["fusion"]["means"][method]["EN"])
    assert "per_pair" not in card["fusion"]  # summaries only; the pair counts stand for them
    assert all(0 <= n <= 2 for ref in ("seafusion", "max") for n in card["fusion"]["pairs_won"][ref].values())
    assert 0.0 <= card["segmentation"]["pixel_accuracy"] <= 1.0
    box = card["box_score"]  # 00002N is annotated, 00003N has no box file: one frame scored
    assert box["pairs"] == 2 and list(box["results"]) == ["SC-CoSF (this model)"]
    assert box["results"]["SC-CoSF (this model)"]["frames"] == 1
    assert box["results"]["SC-CoSF (this model)"]["per_class"]["person"]["objects"] == 1
    assert "box score" in (out / "model_card.md").read_text()
    for sheet in ("fusion_comparison", "night_contact_sheet"):
        assert (out / f"{sheet}.png").exists()
    assert not (out / "day_contact_sheet.png").exists()  # no day pair among the validation names
    assert "Wins against SeAFusion" in (out / "model_card.md").read_text()


def test_export_half_loads_in_engine_and_records_its_effect(tmp_path: Path, random_checkpoint: Path) -> None:
    from sccosf_ros.checkpoint import load_checkpoint
    from sccosf_ros.engine import FusionEngine
    from sccosf_train.half_precision import main as export_main

    dst = tmp_path / "half.safetensors"
    assert export_main([str(random_checkpoint), str(dst), "--check-pairs", "1"]) == 0
    state, meta = load_checkpoint(dst)
    assert all(v.dtype.itemsize <= 2 for v in state.values() if v.is_floating_point())
    assert meta.training["export"]["dtype"] == "float16"
    assert meta.training["export"]["pairs"] == 1
    assert dst.stat().st_size < 0.6 * random_checkpoint.stat().st_size
    res = FusionEngine(dst, device="cpu").infer(np.zeros((32, 40, 3), np.uint8), np.zeros((32, 40), np.uint8))
    assert res.fused.shape == (32, 40, 3)
