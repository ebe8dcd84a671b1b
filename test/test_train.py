"""Trainer: config/CLI, a few-step smoke run (loss falls, checkpoint loads in FusionEngine, resume), DDP."""

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sccosf_train.cli import HELP, build_parser, load_config
from sccosf_train.config import TrainConfig
from sccosf_train.data import estimate_class_counts
from sccosf_train.dataset import MixedDataset, SyntheticDataset
from sccosf_train.optim import lr_lambda
from sccosf_train.train import train

REPO = Path(__file__).resolve().parents[1]

TINY = {  # 8 synthetic 64x80 scenes, batch 2 -> 4 steps/epoch; no augmentation so the loss can fall
    "synthetic_train": 8,
    "synthetic_val": 2,
    "synthetic_size": (64, 80),
    "crop": (64, 80),
    "augment": False,
    "batch_size": 2,
    "val_batch_size": 2,
    "workers": 0,
    "schedule": "constant",
    "warmup_steps": 0,
    "lr": 5e-3,
    "log_every": 1,
    "progress": False,
    "tensorboard": False,
    "pretrained_encoder": "none",
}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_help_documents_every_option_and_flags_override_yaml(tmp_path, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    for name in HELP:
        assert "--" + name.replace("_", "-") in text
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("epochs: 3\nlr: 0.01\ncrop: [64, 96]\n")
    cfg = load_config(cfg_file, {"lr": 0.5})
    assert cfg.epochs == 3 and cfg.lr == 0.5 and cfg.crop == (64, 96)
    cfg_file.write_text("epochz: 3\n")
    with pytest.raises(SystemExit, match="epochz"):
        load_config(cfg_file, {})
    for shipped in ("train_tiny.yaml", "train_base.yaml"):
        assert load_config(REPO / "config" / shipped, {}).preset in ("tiny", "base")


def test_schedules_warm_up_then_decay():
    cfg = TrainConfig(warmup_steps=10, schedule="cosine", min_lr_ratio=0.0)
    f = lr_lambda(cfg, 110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5, abs=0.02) and f(110) == pytest.approx(0.0, abs=1e-6)
    g = lr_lambda(TrainConfig(warmup_steps=0, schedule="poly", poly_power=1.0, min_lr_ratio=0.0), 100)
    assert g(50) == pytest.approx(0.5)


@pytest.fixture
def one_thread():
    """On a shared, oversubscribed 2-core machine one intra-op thread is ~10x faster than two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_smoke_training_loss_falls_exports_engine_checkpoint_and_resumes(tmp_path, one_thread):
    from sccosf_ros.engine import FusionEngine

    out = tmp_path / "run"
    cfg = TrainConfig(**TINY, epochs=5, val_every=5, out=str(out))
    summary = train(cfg, command=["pytest-smoke"])
    rows = _rows(out / "train_log.csv")
    assert len(rows) == 20
    # Each epoch visits the same 8 scenes once, so epoch means are comparable (measured: 3.62 -> 2.17).
    first = np.mean([float(r["total"]) for r in rows[:4]])
    last = np.mean([float(r["total"]) for r in rows[-4:]])
    assert np.isfinite(first) and last < first * 0.8, (first, last)
    for name in (
        "best.safetensors",
        "last.safetensors",
        "last_state.pt",
        "summary.json",
        "split.json",
        "val_log.csv",
    ):
        assert (out / name).is_file(), name
    val_rows = _rows(out / "val_log.csv")
    assert len(val_rows) == 5 and val_rows[0]["miou"] == "" and float(val_rows[-1]["miou"]) >= 0
    text = (out / "summary.json").read_text()
    assert "NaN" not in text  # strict JSON: absent-class IoUs are null
    on_disk = json.loads(text)
    assert on_disk["epochs_completed"] == 5 and on_disk["train_images_per_s"] > 0
    assert on_disk["best"]["epoch"] == 5 and "miou" in on_disk["best_validation"]
    assert summary["command"] == "pytest-smoke"

    engine = FusionEngine(checkpoint=out / "best.safetensors", device="cpu")
    assert engine.meta.training["data"]["synthetic_train"] == 8
    assert engine.class_names[2] == "person"
    res = engine.infer(np.zeros((64, 80, 3), np.uint8), np.zeros((64, 80), np.uint8))
    assert res.fused.shape == (64, 80, 3) and res.mask.shape == (64, 80)
    engine.close()

    resumed = train(
        TrainConfig(**TINY, epochs=6, val_every=5, max_steps_per_epoch=1, out=str(out), resume=str(out))
    )
    assert resumed["resumed_from"].endswith("last_state.pt")
    assert [r["epoch"] for r in resumed["history"]] == list(range(1, 7))
    rows = _rows(out / "train_log.csv")
    assert int(rows[-1]["step"]) == 21 and int(rows[-1]["epoch"]) == 6


def test_resume_from_a_folder_without_state_names_the_file(tmp_path, one_thread):
    with pytest.raises(FileNotFoundError, match=r"last_state\.pt"):
        train(TrainConfig(**TINY, epochs=1, out=str(tmp_path / "o"), resume=str(tmp_path)))


def test_seg_class_weights_none_from_the_command_line():
    ns = vars(build_parser().parse_args(["--seg-class-weights", "none"]))
    ns.pop("config", None), ns.pop("print_config", None)
    assert load_config(None, ns).seg_class_weights == "none"


def test_val_split_none_from_the_command_line_means_no_split():
    ns = vars(build_parser().parse_args(["--val-split", "none"]))
    ns.pop("config"), ns.pop("print_config")
    assert load_config(None, ns).val_split == "none"


def test_config_rejects_resume_with_init_from_and_unknown_class_weights():
    with pytest.raises(ValueError, match="not both"):
        TrainConfig(resume="a", init_from="b")
    with pytest.raises(ValueError, match="seg_class_weights"):
        TrainConfig(seg_class_weights="median")
    with pytest.raises(ValueError, match="grad_mode"):
        TrainConfig(grad_mode="l2")


def test_class_counts_come_from_labelled_samples_only():
    ds = SyntheticDataset(4, seed=5, size=(32, 40))
    counts = estimate_class_counts(ds, 9, max_samples=2)
    assert counts.sum() == 2 * 32 * 40 and counts[0] > 0
    everything = estimate_class_counts(ds, 9)
    expected = sum(np.bincount(ds[i]["labels"].numpy().ravel(), minlength=9) for i in range(4))
    assert (everything == expected).all()


def test_class_counts_without_labels_is_a_clear_error(tmp_path):
    import cv2

    for sub in ("ir", "vi"):
        (tmp_path / sub).mkdir()
    cv2.imwrite(str(tmp_path / "ir" / "a.png"), np.zeros((8, 8), np.uint8))
    cv2.imwrite(str(tmp_path / "vi" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    from sccosf_train.dataset import MSRSFolderDataset

    with pytest.raises(ValueError, match="labelled"):
        estimate_class_counts(MixedDataset([MSRSFolderDataset(tmp_path)]), 9)


def test_init_from_starts_at_the_checkpoint_weights(tmp_path, one_thread, random_checkpoint):
    from sccosf_ros.checkpoint import load_checkpoint

    out = tmp_path / "ft"
    # lr 0: the optimizer moves nothing, so the exported weights are the initial ones (BatchNorm running
    # statistics still update in train mode and are left out of the comparison).
    cfg = TrainConfig(
        **{**TINY, "lr": 0.0},
        epochs=1,
        max_steps_per_epoch=1,
        out=str(out),
        init_from=str(random_checkpoint),
        seg_class_weights="enet",
        synthetic_fresh=True,
    )
    summary = train(cfg, command=["pytest-init"])
    start, _ = load_checkpoint(random_checkpoint)
    after, _ = load_checkpoint(out / "last.safetensors")
    learnable = [k for k in start if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert learnable and all(torch.equal(start[k], after[k]) for k in learnable)
    assert summary["data"]["init_from"] == str(random_checkpoint.resolve())
    assert len(summary["data"]["seg_class_weights"]) == 9 and summary["data"]["synthetic_fresh"] is True


@pytest.mark.slow
def test_ddp_two_gloo_processes_only_rank0_writes(tmp_path):
    out = tmp_path / "ddp"
    args = [
        "--synthetic-train",
        "8",
        "--synthetic-val",
        "2",
        "--synthetic-size",
        "64",
        "80",
        "--crop",
        "64",
        "80",
        "--batch-size",
        "2",
        "--val-batch-size",
        "2",
        "--epochs",
        "1",
        "--max-steps-per-epoch",
        "2",
        "--workers",
        "0",
        "--log-every",
        "1",
        "--progress",
        "false",
        "--tensorboard",
        "false",
        "--pretrained-encoder",
        "none",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "sccosf_train.cli",
        *args,
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2
    rows = _rows(out / "train_log.csv")
    steps = [int(r["step"]) for r in rows]
    assert steps == [1, 2]  # one writer: no duplicated rows from rank 1
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "best.safetensors",
            "last.safetensors",
            "last_state.pt",
            "split.json",
            "summary.json",
            "train_log.csv",
            "val_log.csv",
        ]
    )
    assert proc.stdout.count("outputs in") == 1


@pytest.fixture
def coarse_checkpoint(tmp_path):
    """A seeded ``tiny`` checkpoint from before the segmentation refinement existed (seg_refine 0)."""
    from dataclasses import replace

    from sccosf_ros.checkpoint import CheckpointMeta, save_checkpoint
    from sccosf_ros.model import PRESETS, build_model_from_config

    torch.manual_seed(1)
    model = build_model_from_config(replace(PRESETS["tiny"], seg_refine=0))
    meta = CheckpointMeta.for_model(model, preset="tiny", training={"data": {"train_names": ["a", "b"]}})
    return save_checkpoint(tmp_path / "coarse.safetensors", model, meta)


def test_train_only_adds_a_refinement_and_leaves_the_fused_image_alone(
    tmp_path, one_thread, coarse_checkpoint
):
    from sccosf_ros.checkpoint import build_from_checkpoint, load_checkpoint
    from sccosf_synth.scenes import generate_scene

    out = tmp_path / "refine"
    cfg = TrainConfig(
        **TINY,
        epochs=1,
        max_steps_per_epoch=2,
        out=str(out),
        init_from=str(coarse_checkpoint),
        train_only=("icrm.head", "icrm.refine"),
    )
    summary = train(cfg, command=["pytest-refine"])
    data = summary["data"]
    assert data["initialised_fresh"] and all(k.startswith("icrm.refine.") for k in data["initialised_fresh"])
    assert data["init_from_training"] == {"data": {"train_names": ["a", "b"]}}
    assert 0 < data["trainable_parameters"] < 100_000

    before, _ = load_checkpoint(coarse_checkpoint)
    after, _ = load_checkpoint(out / "last.safetensors")
    frozen = [k for k in before if not k.startswith(("icrm.head.", "icrm.refine."))]
    # Everything outside the selection, BatchNorm running statistics included, is exactly as it was.
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("icrm.head."))

    scene = generate_scene(7, 64, 80)
    rgb = torch.from_numpy(scene.rgb).permute(2, 0, 1)[None].float() / 255
    th = torch.from_numpy(scene.thermal)[None, None].float() / 255
    old_model, _ = build_from_checkpoint(coarse_checkpoint)
    new_model, _ = build_from_checkpoint(out / "last.safetensors")
    with torch.no_grad():
        a, b = old_model(rgb, th), new_model(rgb, th)
    assert torch.equal(a["fused"], b["fused"])
    assert not torch.equal(a["seg_logits"], b["seg_logits"])


def test_train_only_refuses_selections_that_train_nothing_or_leave_new_weights_random(
    tmp_path, one_thread, coarse_checkpoint
):
    with pytest.raises(ValueError, match="stay random"):
        train(
            TrainConfig(
                **TINY,
                epochs=1,
                out=str(tmp_path / "a"),
                init_from=str(coarse_checkpoint),
                train_only=("icrm.head",),
            )
        )
    with pytest.raises(ValueError, match="selects no parameter"):
        train(TrainConfig(**TINY, epochs=1, out=str(tmp_path / "b"), train_only=("no.such.module",)))


def test_validation_scores_real_pairs_with_boxes(tmp_path):
    from sccosf_ros.metrics.boxes import BoxDir, BoxScore
    from sccosf_ros.metrics.segmentation import ConfusionMatrix
    from sccosf_train.validate import _Tally

    (tmp_path / "fusion").mkdir()
    (tmp_path / "fusion" / "a.txt").write_text("2 0.25 0.5 0.5 1.0\n")  # a car over the left half
    tally = _Tally(ConfusionMatrix(9), BoxDir(tmp_path), BoxScore(9))
    logits = torch.zeros(2, 9, 4, 8)
    logits[0, 1, :, :4] = 1.0  # frame a: car exactly in its box
    logits[1, 1] = 1.0  # frame b has no box file: not scored
    tally.add_boxes(logits, ["a", "b"])
    res = tally.result(["c"] * 9)
    assert tally.box_score.frames == 1 and res["box_f_car"] == 1.0 and res["box_boxless_share"] == 0.0
    assert math.isnan(res["box_f_person"]) and res["box_f"] == 1.0  # no person object: left out of the mean


def test_cli_reports_bad_options_without_a_traceback(tmp_path, capsys):
    import cv2

    from sccosf_train.cli import main

    # class weights need labelled samples; a real folder without labels and no synthetic scenes has none
    root = tmp_path / "msrs"
    for sub in ("ir", "vi"):
        (root / sub).mkdir(parents=True)
    for n in ("a", "b"):
        cv2.imwrite(str(root / "ir" / f"{n}.png"), np.zeros((64, 80), np.uint8))
        cv2.imwrite(str(root / "vi" / f"{n}.png"), np.zeros((64, 80, 3), np.uint8))
    argv = ["--msrs-root", str(root), "--val-split", "none", "--synthetic-train", "0", "--synthetic-val", "0"]
    argv += ["--seg-class-weights", "enet", "--crop", "64", "80", "--batch-size", "2", "--workers", "0"]
    argv += ["--pretrained-encoder", "none", "--out", str(tmp_path / "out"), "--progress", "false"]
    assert main(argv) == 2
    assert "labelled" in capsys.readouterr().err


def test_class_weight_power_softens_the_enet_weights():
    from sccosf_train.losses import enet_class_weights
    from sccosf_train.train import _class_weights

    ds = SyntheticDataset(4, seed=3, size=(48, 64))
    full, half = {}, {}
    w1 = _class_weights(TrainConfig(seg_class_weights="enet"), ds, full)
    w2 = _class_weights(TrainConfig(seg_class_weights="enet", class_weight_power=0.5), ds, half)
    assert w1 == enet_class_weights(full["seg_class_pixel_counts"])
    assert (
        w2 == pytest.approx([v**0.5 for v in w1])
        and half["seg_class_weights"][0] < full["seg_class_weights"][1]
    )
    with pytest.raises(ValueError, match="class_weight_power"):
        TrainConfig(class_weight_power=0)


def test_fusion_anchor_adds_the_l1_to_the_reference_fused_image(random_checkpoint):
    from sccosf_ros.checkpoint import build_from_checkpoint
    from sccosf_train.objectives import FusionAnchor, JointObjective, make_objective

    reference, _ = build_from_checkpoint(random_checkpoint)
    sample = SyntheticDataset(2, seed=4, size=(64, 80))
    batch = {
        k: torch.stack([sample[i][k] for i in range(2)]) for k in ("rgb", "thermal", "labels", "has_labels")
    }
    base = JointObjective(TrainConfig().loss_weights())
    anchored = FusionAnchor(base, reference, weight=10.0)
    with torch.no_grad():
        same = reference(batch["rgb"], batch["thermal"])
        other = dict(same, fused_y=same["fused_y"] * 0.5)
    a = anchored(same, batch)
    assert a["anchor"] == 0 and torch.isclose(a["total"], base(same, batch)["total"])  # no drift, no cost
    b = anchored(other, batch)
    drift = (same["fused_y"] * 0.5).abs().mean()
    assert torch.isclose(b["anchor"], drift) and torch.isclose(
        b["total"], base(other, batch)["total"] + 10 * drift
    )
    anchored_cfg = TrainConfig(fusion_anchor=str(random_checkpoint))
    assert isinstance(make_objective(anchored_cfg, None, torch.device("cpu")), FusionAnchor)
    assert isinstance(make_objective(TrainConfig(), None, torch.device("cpu")), JointObjective)
