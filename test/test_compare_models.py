"""``python -m sccosf_train.compare_models`` end to end on a tiny MSRS-layout folder (no ../shared needed)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from sccosf_ros.metrics.boxes import BoxDir
from sccosf_train import compare_models as box_score


def _tiny_msrs(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for sub in ("vi", "ir", "seafusion", "boxes/fusion", "boxes/visible"):
        (root / sub).mkdir(parents=True)
    for name in ("a", "b", "c"):
        cv2.imwrite(str(root / "vi" / f"{name}.png"), rng.integers(0, 255, (64, 80, 3), np.uint8))
        cv2.imwrite(str(root / "ir" / f"{name}.png"), rng.integers(0, 255, (64, 80), np.uint8))
        (root / "boxes" / "fusion" / f"{name}.txt").write_text("2 0.5 0.5 0.5 0.5\n0 0.2 0.5 0.1 0.4\n")
    cv2.imwrite(str(root / "seafusion" / "c.png"), np.zeros((64, 80, 3), np.uint8))
    return root


def test_split_names_and_score_masks(tmp_path: Path) -> None:
    root = _tiny_msrs(tmp_path / "msrs")
    assert box_score.split_names(root, "train") == ["a", "b"]
    assert box_score.split_names(root, "val") == ["c"]
    mask = np.zeros((64, 80), np.uint8)
    mask[16:48, 20:60] = 1  # exactly the car box
    result, frames = box_score.score_masks([("a", mask), ("zzz", mask)], BoxDir(root / "boxes"))
    assert result["unannotated"] == ["zzz"] and [f["name"] for f in frames] == ["a"]
    car = result["per_class"]["car"]
    assert car["precision"] == 1.0 and car["hit_rate"] == 1.0 and car["fill"] == 1.0
    assert result["per_class"]["person"]["F"] == 0.0 and result["mean_F"] == 0.5
    assert "| car |" in box_score.markdown_table({"m": result})


def test_cli_scores_a_checkpoint_and_writes_reports(tmp_path: Path, random_checkpoint: Path) -> None:
    root = _tiny_msrs(tmp_path / "msrs")
    out = tmp_path / "out"
    args = ["--msrs-root", str(root), "--out", str(out), "--split", "train", "--no-teacher"]
    assert box_score.main([*args, "--checkpoint", str(random_checkpoint), "--no-progress"]) == 0
    report = json.loads((out / "box_score.json").read_text())
    assert report["pairs"] == 2 and len(report["results"]) == 1
    (result,) = report["results"].values()
    assert result["frames"] == 2 and result["pixels"] == 2 * 64 * 80
    assert "mean F" in (out / "box_score.md").read_text()


def test_unknown_split_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        box_score.split_names(tmp_path, str(tmp_path / "missing.txt"))
