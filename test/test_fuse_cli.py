"""sccosf-fuse on a tiny folder: pairing by stem, the four output folders, skips, and fatal errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from sccosf_ros.cli.fuse import OUTPUT_DIRS, main

H, W = 48, 64


@pytest.fixture()
def folders(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    rgb_dir, th_dir = tmp_path / "vi", tmp_path / "ir"
    rgb_dir.mkdir()
    th_dir.mkdir()
    for stem in ("a", "b", "only_rgb"):
        cv2.imwrite(str(rgb_dir / f"{stem}.png"), rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    cv2.imwrite(str(th_dir / "a.png"), rng.integers(0, 256, (H, W), dtype=np.uint8))
    # 16-bit raw counts at another resolution: normalised and resampled onto the RGB grid.
    cv2.imwrite(str(th_dir / "b.png"), rng.integers(7000, 9000, (24, 32), dtype=np.uint16))
    return rgb_dir, th_dir


def _args(rgb: Path, th: Path, out: Path, ckpt: Path, *extra: str) -> list[str]:
    return [
        "--rgb",
        str(rgb),
        "--thermal",
        str(th),
        "--out",
        str(out),
        "--checkpoint",
        str(ckpt),
        "--device",
        "cpu",
        "--quiet",
        *extra,
    ]


def test_writes_four_folders(
    folders: tuple[Path, Path], tmp_path: Path, random_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(_args(*folders, out, random_checkpoint, "--overlay-alpha", "0.3")) == 0
    for name in OUTPUT_DIRS:
        assert sorted(p.name for p in (out / name).iterdir()) == ["a.png", "b.png"], name
    mask = cv2.imread(str(out / "segmentation" / "b.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (H, W) and mask.dtype == np.uint8 and mask.max() < 9
    for name in ("fused", "segmentation_color", "overlay"):
        img = cv2.imread(str(out / name / "a.png"), cv2.IMREAD_UNCHANGED)
        assert img.shape == (H, W, 3) and img.dtype == np.uint8
    captured = capsys.readouterr()
    assert "no thermal image for" in captured.err and "only_rgb" in captured.err
    assert "2 pairs fused" in captured.out and "1 unpaired" in captured.out


def test_unreadable_file_is_skipped(
    folders: tuple[Path, Path], tmp_path: Path, random_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rgb_dir, th_dir = folders
    (th_dir / "a.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    assert main(_args(rgb_dir, th_dir, out, random_checkpoint, "--thermal-norm", "minmax")) == 0
    assert [p.name for p in (out / "fused").iterdir()] == ["b.png"]
    assert "skipping a" in capsys.readouterr().err


def test_no_pairs_is_a_clear_error(
    tmp_path: Path, random_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "vi").mkdir()
    (tmp_path / "ir").mkdir()
    cv2.imwrite(str(tmp_path / "vi" / "x.png"), np.zeros((8, 8, 3), np.uint8))
    assert main(_args(tmp_path / "vi", tmp_path / "ir", tmp_path / "out", random_checkpoint)) == 2
    err = capsys.readouterr().err
    assert "error: no image pairs" in err and "Traceback" not in err
    assert main(_args(tmp_path / "missing", tmp_path / "ir", tmp_path / "out", random_checkpoint)) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_bad_options_are_clear_errors(
    folders: tuple[Path, Path], tmp_path: Path, random_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(_args(*folders, out, tmp_path / "none.safetensors")) == 2
    assert "checkpoint file not found" in capsys.readouterr().err
    assert main(_args(*folders, out, random_checkpoint, "--precision", "fp16")) == 2
    assert "needs a CUDA device" in capsys.readouterr().err
    assert main(_args(*folders, out, random_checkpoint, "--overlay-alpha", "2")) == 2
    (tmp_path / "h.txt").write_text("1 0 0\n0 1 0\n")
    assert main(_args(*folders, out, random_checkpoint, "--homography", str(tmp_path / "h.txt"))) == 2
    assert "homography must be 3x3" in capsys.readouterr().err


def test_console_entry_exit_code_without_traceback(folders: tuple[Path, Path], tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sccosf_ros.cli.fuse", *_args(*folders, tmp_path / "o", tmp_path / "no.st")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert "sccosf-fuse: error:" in proc.stderr and "Traceback" not in proc.stderr
