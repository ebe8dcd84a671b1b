"""Logit adjustment: shifts the segmentation logits by -alpha*log(w) exactly, leaves the fused image alone."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from sccosf_ros.checkpoint import CheckpointMeta, build_from_checkpoint, read_checkpoint_meta, save_checkpoint
from sccosf_ros.model import build_model
from sccosf_synth.scenes import generate_scene
from sccosf_train.calibrate import main, training_class_weights

WEIGHTS = [1.5, 12.0, 30.0, 44.0, 31.0, 47.0, 30.0, 46.0, 29.0]


def _stage(train_only: list[str], weights: list[float] | None, earlier: dict | None = None) -> dict:
    data: dict = {"seg_class_weights": weights}
    if earlier is not None:
        data["init_from_training"] = earlier
    return {"config": {"train_only": train_only}, "data": data}


def test_class_weights_come_from_the_stage_that_trained_the_segmentation_head() -> None:
    seg_stage = _stage(["icrm.head", "icrm.refine"], WEIGHTS, _stage([], [1.0] * 9))
    assert training_class_weights(_stage(["reaw.head"], [9.0] * 9, seg_stage)) == WEIGHTS
    assert training_class_weights(_stage([], WEIGHTS)) == WEIGHTS
    with pytest.raises(ValueError, match="no class weights"):
        training_class_weights(_stage([], None))


def test_calibration_shifts_logits_by_alpha_log_w_and_keeps_the_fused_image(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("tiny")
    torch.nn.init.normal_(model.icrm.refine.out.weight, std=0.1)  # a trained-looking refinement
    meta = CheckpointMeta.for_model(model, preset="tiny", training=_stage(["icrm.refine"], WEIGHTS))
    src = save_checkpoint(tmp_path / "src.safetensors", model, meta)
    dst = tmp_path / "dst.safetensors"
    assert (
        main(
            [
                str(src),
                str(dst),
                "--alphas",
                "0",
                "0.5",
                "1",
                "--scenes",
                "2",
                "--size",
                "64",
                "80",
                "--threads",
                "1",
            ]
        )
        == 0
    )

    cal = read_checkpoint_meta(dst).training["calibration"]
    alpha = cal["alpha"]
    assert alpha in (0.0, 0.5, 1.0) and set(cal["validation"]["score_by_alpha"]) == {"0.0", "0.5", "1.0"}
    assert cal["bias"] == "icrm.refine.out.bias"
    before, _ = build_from_checkpoint(src)
    after, _ = build_from_checkpoint(dst)
    scene = generate_scene(5, 64, 80)
    rgb = torch.from_numpy(scene.rgb).permute(2, 0, 1)[None].float() / 255
    th = torch.from_numpy(scene.thermal)[None, None].float() / 255
    with torch.no_grad():
        a, b = before(rgb, th), after(rgb, th)
    shift = -alpha * torch.log(torch.tensor(WEIGHTS))
    expected = shift.view(1, -1, 1, 1).expand_as(a["seg_logits"])
    torch.testing.assert_close(b["seg_logits"] - a["seg_logits"], expected, atol=1e-4, rtol=0)
    assert torch.equal(a["fused"], b["fused"])
    with pytest.raises(SystemExit, match="already calibrated"):
        main([str(dst), str(tmp_path / "twice.safetensors"), "--scenes", "1", "--size", "64", "80"])
    assert math.isclose(cal["class_weights"][5], 47.0, rel_tol=1e-4)


def test_calibration_on_real_pairs_scores_the_box_f(tmp_path: Path) -> None:
    import cv2

    root = tmp_path / "msrs"
    for sub in ("vi", "ir", "boxes/fusion"):
        (root / sub).mkdir(parents=True)
    for i, name in enumerate(("a", "b")):
        scene = generate_scene(10 + i, 64, 80)
        cv2.imwrite(str(root / "vi" / f"{name}.png"), scene.rgb[..., ::-1])
        cv2.imwrite(str(root / "ir" / f"{name}.png"), scene.thermal)
    (root / "boxes" / "fusion" / "a.txt").write_text("0 0.5 0.5 0.2 0.6\n")  # b has no box file: skipped
    split = tmp_path / "dev.txt"
    split.write_text("a\nb\n")
    torch.manual_seed(1)
    model = build_model("tiny")
    torch.nn.init.normal_(model.icrm.refine.out.weight, std=0.1)
    meta = CheckpointMeta.for_model(model, preset="tiny", training=_stage([], WEIGHTS))
    src = save_checkpoint(tmp_path / "src.safetensors", model, meta)
    dst = tmp_path / "dst.safetensors"
    args = [str(src), str(dst), "--alphas", "0", "1", "--msrs-root", str(root), "--split", str(split)]
    assert main([*args, "--threads", "1"]) == 0
    cal = read_checkpoint_meta(dst).training["calibration"]
    assert cal["validation"]["metric"] == "box-score mean F" and cal["validation"]["pairs"] == 1
    assert set(cal["validation"]["score_by_alpha"]) == {"0.0", "1.0"} and cal["alpha"] in (0.0, 1.0)
    with pytest.raises(SystemExit):
        main([str(src), str(tmp_path / "x.safetensors"), "--msrs-root", str(root)])  # no --split
