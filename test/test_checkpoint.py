"""Checkpoint format: exact round trip, and one clear CheckpointError for every way a file can be bad."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from sccosf_ros.checkpoint import (
    FORMAT_VERSION,
    METADATA_KEY,
    CheckpointError,
    CheckpointMeta,
    build_from_checkpoint,
    check_state_dict,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
)
from sccosf_ros.imaging.palette import MSRS_CLASSES, MSRS_PALETTE
from sccosf_ros.model import PRESETS, build_model, build_model_from_config


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy.safetensors"
    shutil.copyfile(src, dst)
    return dst


def test_round_trip_tensors_and_metadata(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = build_model("tiny")
    meta = CheckpointMeta.for_model(model, preset="tiny", training={"epochs": 3, "miou": [0.1, 0.2]})
    path = save_checkpoint(tmp_path / "sub" / "m.safetensors", model, meta)
    state, loaded = load_checkpoint(path)

    assert loaded == meta
    assert loaded.format_version == FORMAT_VERSION
    assert loaded.class_names == list(MSRS_CLASSES)
    assert [list(c) for c in loaded.palette] == MSRS_PALETTE.tolist()
    assert loaded.config["dims"] == list(PRESETS["tiny"].dims)
    assert loaded.training == {"epochs": 3, "miou": [0.1, 0.2]}
    expected = model.state_dict()
    assert state.keys() == expected.keys()
    for key, value in expected.items():
        assert state[key].dtype == value.dtype
        assert torch.equal(state[key], value), key
    assert read_checkpoint_meta(path) == meta
    assert not list(path.parent.glob("*.tmp"))  # atomic write leaves no temp file


def test_rebuilt_model_matches_original(tmp_path: Path) -> None:
    torch.manual_seed(2)
    model = build_model("tiny").eval()
    path = save_checkpoint(tmp_path / "m.safetensors", model, CheckpointMeta.for_model(model))
    rebuilt, meta = build_from_checkpoint(path)
    assert meta.preset == "tiny"
    rgb, th = torch.rand(1, 3, 64, 64), torch.rand(1, 1, 64, 64)
    with torch.inference_mode():
        a, b = model(rgb, th), rebuilt(rgb, th)
    assert torch.equal(a["seg_logits"], b["seg_logits"])
    assert torch.equal(a["fused"], b["fused"])


def test_shared_and_sliced_tensors_are_saved(tmp_path: Path) -> None:
    """Tied weights and views alias storage, which safetensors refuses; save_checkpoint un-shares them."""
    base = torch.arange(12.0)
    state = {"a": base, "tied": base, "view": base[2:5], "t": base.view(3, 4).t()}
    meta = CheckpointMeta(preset="x", config={}, num_classes=1, class_names=["a"], palette=[(0, 0, 0)])
    loaded, _ = load_checkpoint(save_checkpoint(tmp_path / "s.safetensors", state, meta))
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key


def test_meta_validation() -> None:
    with pytest.raises(ValueError, match="class names"):
        CheckpointMeta(preset="x", config={}, num_classes=3, class_names=["a"], palette=[(0, 0, 0)] * 3)
    with pytest.raises(ValueError, match=r"0\.\.255"):
        CheckpointMeta(preset="x", config={}, num_classes=1, class_names=["a"], palette=[(0, 0, 256)])
    meta = CheckpointMeta(
        preset="x",
        config={},
        num_classes=1,
        class_names=["a"],
        palette=[(0, 0, 0)],
        training={"out": Path("/tmp/run"), "lr": np.float32(0.5)},
    )
    assert meta.training == {"out": "/tmp/run", "lr": "0.5"}
    with pytest.raises(ValueError, match="config is not JSON-serialisable"):
        CheckpointMeta(
            preset="x", config={"p": Path("/")}, num_classes=1, class_names=["a"], palette=[(0, 0, 0)]
        )


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")


@pytest.mark.parametrize("keep", [0.5, 0.02])
def test_truncated(random_checkpoint: Path, tmp_path: Path, keep: float) -> None:
    path = _copy(random_checkpoint, tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match="not a readable safetensors checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("blob", [b"", b"\x00" * 8, bytes(range(256)) * 8, b"PK\x03\x04 torch zip"])
def test_not_safetensors(tmp_path: Path, blob: bytes) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(blob)
    with pytest.raises(CheckpointError, match="not a readable safetensors checkpoint") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_pickle_is_refused_not_executed(tmp_path: Path) -> None:
    path = tmp_path / "legacy.pt"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="safetensors"):
        load_checkpoint(path)


def test_metadata_missing(tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="no 'sccosf' metadata"):
        load_checkpoint(path)


def test_metadata_not_json_or_incomplete(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={METADATA_KEY: "{not json"})
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_checkpoint_meta(path)
    save_file({"w": torch.zeros(2)}, str(path), metadata={METADATA_KEY: json.dumps({"format_version": 1})})
    with pytest.raises(CheckpointError, match="lacks class_names, config, num_classes, palette, preset"):
        read_checkpoint_meta(path)


def test_unsupported_format_version(random_checkpoint: Path, tmp_path: Path) -> None:
    state, meta = load_checkpoint(random_checkpoint)
    meta.format_version = FORMAT_VERSION + 1
    path = save_checkpoint(tmp_path / "future.safetensors", state, meta)
    with pytest.raises(CheckpointError, match=f"format version {FORMAT_VERSION + 1} is not supported"):
        load_checkpoint(path)


def test_weights_for_another_architecture(tmp_path: Path) -> None:
    """Weights of the 'base' preset under 'tiny' metadata: missing/unexpected keys and shapes are listed."""
    base = build_model("base")
    tiny_meta = CheckpointMeta.for_model(build_model("tiny"), preset="tiny")
    path = save_checkpoint(tmp_path / "mixed.safetensors", base, tiny_meta)
    with pytest.raises(CheckpointError, match="do not match the architecture") as info:
        build_from_checkpoint(path)
    msg = str(info.value)
    assert "shape mismatches" in msg and "checkpoint (" in msg
    assert "unexpected keys" in msg or "missing keys" in msg
    assert len(msg) < 2000  # a few examples, not thousands of keys


def test_wrong_num_classes(random_checkpoint: Path, tmp_path: Path) -> None:
    state, meta = load_checkpoint(random_checkpoint)
    meta.num_classes, meta.class_names, meta.palette = 2, ["a", "b"], [(0, 0, 0), (1, 1, 1)]
    path = save_checkpoint(tmp_path / "k2.safetensors", state, meta)
    with pytest.raises(CheckpointError, match=r"shape mismatches: .*\(9, .*vs model \(2, "):
        build_from_checkpoint(path)


def test_unknown_config_key(random_checkpoint: Path, tmp_path: Path) -> None:
    state, meta = load_checkpoint(random_checkpoint)
    meta.config["warp_drive"] = True
    path = save_checkpoint(tmp_path / "cfg.safetensors", state, meta)
    with pytest.raises(CheckpointError, match="config cannot build a model"):
        build_from_checkpoint(path)


def test_missing_ok_returns_the_keys_a_fine_tuned_model_gained() -> None:
    from dataclasses import replace

    refined = build_model("tiny")
    older = build_model_from_config(replace(refined.config, seg_refine=0)).state_dict()
    with pytest.raises(CheckpointError, match="missing keys"):
        check_state_dict(refined, older)
    fresh = check_state_dict(refined, older, missing_ok=True)
    assert fresh and all(k.startswith("icrm.refine.") for k in fresh)
    assert check_state_dict(refined, refined.state_dict(), missing_ok=True) == []
    with pytest.raises(CheckpointError, match="unexpected keys"):  # still strict the other way round
        check_state_dict(
            build_model_from_config(replace(refined.config, seg_refine=0)),
            refined.state_dict(),
            missing_ok=True,
        )
