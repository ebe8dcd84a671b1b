"""Per-class logit offsets (``python -m sccosf_train.class_offsets``): the search picks the offsets that the
box score rewards on every set, and the tool folds them into the head exactly, leaving the fused image."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sccosf_ros.checkpoint import CheckpointMeta, build_from_checkpoint, read_checkpoint_meta, save_checkpoint
from sccosf_ros.metrics.boxes import Box
from sccosf_ros.model import build_model
from sccosf_synth.scenes import generate_scene
from sccosf_train.class_offsets import MIN_OBJECTS, DevSet, main, search_offsets

K = 9


def _frame(person_margin: float, n_people: int = MIN_OBJECTS) -> tuple[torch.Tensor, list[Box]]:
    """Logits of a 40 x (12 n) frame: background wins by ``person_margin`` inside each person box, and
    wins clearly everywhere else."""
    logits = torch.full((K, 40, 12 * n_people), -5.0)
    logits[0] = 0.0
    boxes = []
    for i in range(n_people):
        x0 = 12 * i + 2
        logits[2, 10:30, x0 : x0 + 8] = -person_margin
        boxes.append(Box(2, x0, 10, x0 + 8, 30))
    return logits, boxes


def test_search_finds_the_offset_each_rig_needs_and_prefers_small_ones() -> None:
    """Rig A needs person +0.5, rig B +1.5: only an offset past both margins scores on both; the larger
    grid value scores the same and loses the tie."""
    a = DevSet("a", [_frame(0.4)], {})
    b = DevSet("b", [_frame(1.2)], {})
    rows = search_offsets([a, b], [2], [0.0, 0.5, 1.5, 2.0], K)
    assert rows[0]["offsets"] == {"person": 1.5}
    assert rows[0]["sets"]["a"]["F"]["person"] == rows[0]["sets"]["b"]["F"]["person"] == 1.0
    assert rows[1]["offsets"] == {"person": 2.0} and rows[1]["objective"] == rows[0]["objective"]
    zero = next(r for r in rows if r["offsets"]["person"] == 0.0)
    assert zero["objective"] < rows[0]["objective"]


def test_classes_with_few_objects_are_not_scored_in_a_set() -> None:
    """A set with fewer than MIN_OBJECTS people scores no class: its mean is NaN and the others decide."""
    few = DevSet("few", [_frame(1.2, n_people=MIN_OBJECTS - 1)], {})
    (row,) = search_offsets([few], [2], [0.0], K)
    assert np.isnan(row["sets"]["few"]["mean"]) and row["sets"]["few"]["F"]["person"] == 0.0


def _write_rig(root: Path, names: list[str], ext: str, box_dir: Path, seed: int) -> None:
    for sub in ("vi", "ir"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    box_dir.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        scene = generate_scene(seed + i, 64, 80)
        cv2.imwrite(str(root / "vi" / f"{name}{ext}"), scene.rgb[..., ::-1])
        cv2.imwrite(str(root / "ir" / f"{name}{ext}"), scene.thermal)
        (box_dir / f"{name}.txt").write_text("1 0.5 0.5 0.3 0.4\n2 0.2 0.5 0.1 0.5\n")


def test_tool_folds_the_chosen_offsets_into_the_head(tmp_path: Path) -> None:
    msrs, rig = tmp_path / "msrs", tmp_path / "rig"
    _write_rig(msrs, ["m0", "m1"], ".png", msrs / "boxes" / "fusion", 20)
    _write_rig(rig, ["FLIR_1"], ".jpg", rig / "boxes", 40)  # single-variant boxes, JPEG frames
    (tmp_path / "msrs_dev.txt").write_text("m0\nm1\n")
    (tmp_path / "rig_dev.txt").write_text("FLIR_1\n")
    torch.manual_seed(3)
    model = build_model("tiny")
    torch.nn.init.normal_(model.icrm.refine.out.weight, std=0.1)
    src = save_checkpoint(tmp_path / "src.safetensors", model, CheckpointMeta.for_model(model, preset="tiny"))
    dst = tmp_path / "dst.safetensors"
    args = [str(src), str(dst), "--msrs-root", str(msrs), "--split", str(tmp_path / "msrs_dev.txt")]
    args += ["--cross-rig", str(rig), "--cross-rig-split", str(tmp_path / "rig_dev.txt")]
    args += ["--classes", "car", "person", "--grid", "0", "3", "--threads", "1"]
    assert main(args) == 0

    cal = read_checkpoint_meta(dst).training["calibration"]
    assert set(cal["offsets"]) == {"car", "person"} and set(cal["offsets"].values()) <= {0.0, 3.0}
    assert [s["frames"] for s in cal["sets"]] == [2, 1] and len(cal["best_rows"]) == 4
    assert cal["without_offsets"]["offsets"] == {"car": 0.0, "person": 0.0}
    before, _ = build_from_checkpoint(src)
    after, _ = build_from_checkpoint(dst)
    scene = generate_scene(7, 64, 80)
    rgb = torch.from_numpy(scene.rgb).permute(2, 0, 1)[None].float() / 255
    th = torch.from_numpy(scene.thermal)[None, None].float() / 255
    with torch.no_grad():
        a, b = before(rgb, th), after(rgb, th)
    expected = torch.zeros(K)
    expected[1], expected[2] = cal["offsets"]["car"], cal["offsets"]["person"]
    torch.testing.assert_close(
        b["seg_logits"] - a["seg_logits"],
        expected.view(1, -1, 1, 1).expand_as(a["seg_logits"]),
        atol=1e-4,
        rtol=0,
    )
    assert torch.equal(a["fused"], b["fused"])
    with pytest.raises(SystemExit, match="already calibrated"):
        main([str(dst), str(tmp_path / "twice.safetensors"), *args[2:]])


def test_tool_refuses_what_it_cannot_use(tmp_path: Path) -> None:
    base = [str(tmp_path / "a"), str(tmp_path / "b"), "--msrs-root", str(tmp_path), "--split", "x.txt"]
    with pytest.raises(SystemExit):
        main([*base, "--cross-rig", str(tmp_path)])  # without --cross-rig-split
    with pytest.raises(SystemExit):
        main([*base, "--classes", "tree"])
