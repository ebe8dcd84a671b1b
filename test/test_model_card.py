"""Model-card figures: the trivial baseline's definition and a complete run on a tiny MSRS-layout folder."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch

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
    assert meta.config["min_internal_pixels"] == 0  # kept from the source unless asked


def test_export_half_sets_the_inference_resolution_floor(tmp_path: Path, random_checkpoint: Path) -> None:
    from sccosf_ros.checkpoint import build_from_checkpoint
    from sccosf_train.half_precision import main as export_main

    dst = tmp_path / "half.safetensors"
    args = [str(random_checkpoint), str(dst), "--check-pairs", "1", "--min-internal-pixels", "76800"]
    assert export_main(args) == 0
    model, meta = build_from_checkpoint(dst)
    assert meta.config["min_internal_pixels"] == 76800
    assert meta.training["export"]["min_internal_pixels"] == 76800
    assert model.internal_size(330, 500) == (224, 352)


def test_model_card_cross_rig_section(tmp_path: Path, random_checkpoint: Path) -> None:
    """A second rig laid out as RoadScene (JPEG pairs, NAME.txt boxes, ignore/): model and teacher scored
    in the same run, fusion against the maximum, night and day sheets."""
    from sccosf_train import teachers

    msrs, rig = tmp_path / "msrs", tmp_path / "rig"
    for sub in ("ir", "vi", "seafusion", "boxes/fusion"):
        (msrs / sub).mkdir(parents=True)
    for sub in ("ir", "vi", "boxes", "ignore"):
        (rig / sub).mkdir(parents=True)
    rng = np.random.default_rng(2)
    vi = rng.integers(150, 256, (48, 64, 3), dtype=np.uint8)  # a day frame: bright sky
    for folder, ext in ((msrs, "png"), (rig, "jpg")):
        cv2.imwrite(str(folder / "vi" / f"a.{ext}"), vi)
        cv2.imwrite(str(folder / "ir" / f"a.{ext}"), vi[..., 0])
    cv2.imwrite(str(msrs / "seafusion" / "a.png"), vi)
    cv2.imwrite(str(rig / "vi" / "b.jpg"), vi // 8)  # a night frame
    cv2.imwrite(str(rig / "ir" / "b.jpg"), vi[..., 1])
    (rig / "boxes" / "a.txt").write_text("2 0.5 0.5 0.5 0.5\n")
    (rig / "boxes" / "b.txt").write_text("0 0.5 0.5 0.2 0.5\n")
    (rig / "ignore" / "b.txt").write_text("2 0.05 0.5 0.1 0.3 0.4\n")

    class Blank:
        """A teacher from the tests: background everywhere."""

        name, title, citation, weights, class_names = "blank", "Blank", "test", "-", tuple("abcdefghi")

        @classmethod
        def load(cls, weights: object = None, device: str = "cpu") -> Blank:
            return cls()

        def logits(self, rgb: np.ndarray, thermal: np.ndarray, scale: float = 1.0) -> torch.Tensor:
            out = torch.zeros(1, 9, *thermal.shape)
            out[0, 0] = 1.0
            return out

    teachers.register("blank", Blank)
    try:
        out = tmp_path / "card"
        argv = ["--checkpoint", str(random_checkpoint), "--msrs-root", str(msrs), "--out", str(out),
                "--synthetic-scenes", "1", "--synthetic-size", "48", "64", "--threads", "1",
                "--teacher", "blank", "--cross-rig", str(rig)]  # fmt: skip
        assert main(argv) == 0
    finally:
        teachers.unregister("blank")
    section = json.loads((out / "model_card.json").read_text())["cross_rig"]
    assert section["frames"] == 2 and section["night_day"] == {"night": 1, "day": 1}
    assert list(section["box_score"]) == ["SC-CoSF (this model)", "Blank (teacher, test)"]
    blank = section["box_score"]["Blank (teacher, test)"]
    assert blank["per_class"]["car"]["objects"] == 1 and blank["per_class"]["person"]["objects"] == 1
    assert blank["per_class"]["car"]["hits"] == 0 and blank["mean_F"] == 0.0
    assert set(section["fusion"]["means"]) == {"ours", "max"}
    assert (out / "cross_rig_night_contact_sheet.png").exists() and (
        out / "cross_rig_day_contact_sheet.png"
    ).exists()
    assert "Cross-rig: 2 frames" in (out / "model_card.md").read_text()


def test_a_street_lit_night_frame_is_night() -> None:
    """Night by the sky (top third), not by the whole frame, which street lights make as bright as day."""
    from sccosf_train.cross_rig import is_night_frame

    lit_night = np.full((90, 120), 220, np.uint8)
    lit_night[:30] = 60
    day = np.full((90, 120), 90, np.uint8)
    day[:30] = 200
    assert is_night_frame(lit_night) and not is_night_frame(day)
    assert lit_night.mean() > day.mean()
