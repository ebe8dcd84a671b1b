"""Folders of registered image pairs (MSRS-style ``vi/`` + ``ir/``), matched by file stem. No ROS.

Shared by the offline tools that read pairs from disk (``sccosf-fuse``, ``sccosf-register``), so that both
accept the same files and read them into the same arrays: RGB as (H, W, 3) uint8, thermal as one channel of
its original dtype (16-bit counts stay 16-bit).
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from sccosf_ros.errors import InputError
from sccosf_ros.imaging import to_rgb, to_thermal_gray

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm"})


class FolderError(InputError):
    """A folder that is missing or not a folder; one line."""


def _warn(prog: str, msg: str) -> None:
    print(f"{prog}: warning: {msg}", file=sys.stderr)


def images_by_stem(folder: Path, role: str, prog: str = "sccosf") -> dict[str, Path]:
    """Image files of ``folder`` by stem; a second file with the same stem is reported and ignored."""
    if not folder.is_dir():
        raise FolderError(f"--{role} {folder} is not a directory")
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            if p.stem in found:
                kept = found[p.stem].name
                _warn(prog, f"{role}: {p.name} and {kept} share a stem; using {kept}")
                continue
            found[p.stem] = p
    return found


def pair_by_stem(
    rgb_dir: Path, thermal_dir: Path, prog: str = "sccosf"
) -> tuple[list[tuple[str, Path, Path]], list[Path], list[Path]]:
    """(stem, rgb, thermal) pairs sorted by stem, plus the unpaired RGB and thermal files."""
    rgb, thermal = images_by_stem(rgb_dir, "rgb", prog), images_by_stem(thermal_dir, "thermal", prog)
    stems = sorted(rgb.keys() & thermal.keys())
    pairs = [(s, rgb[s], thermal[s]) for s in stems]
    return (
        pairs,
        [rgb[s] for s in sorted(rgb.keys() - thermal.keys())],
        [thermal[s] for s in sorted(thermal.keys() - rgb.keys())],
    )


def spread(n: int, k: int) -> list[int]:
    """Indices of at most ``k`` of ``n`` items spread evenly over them, first and last included (fewer when
    ``k`` > ``n``): a sample of a recording's pairs that covers all of it, not its start."""
    if n <= 0 or k <= 0:
        return []
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(int)).tolist()


def read_rgb(path: Path) -> np.ndarray:
    """Any 8/16-bit grey, BGR or BGRA file as (H, W, 3) uint8 RGB."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise InputError("cannot decode image")
    if image.dtype == np.uint16 and image.ndim == 3:
        image = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    channels = 1 if image.ndim == 2 else image.shape[2]
    encoding = {
        (np.uint8, 1): "mono8",
        (np.uint16, 1): "mono16",
        (np.uint8, 3): "bgr8",
        (np.uint8, 4): "bgra8",
    }
    key = (image.dtype.type, channels)
    if key not in encoding:
        raise InputError(f"unsupported RGB image ({image.dtype}, {channels} channels)")
    return to_rgb(image, encoding[key])


def read_thermal(path: Path) -> np.ndarray:
    """Thermal file as one channel with its original dtype (16-bit counts stay 16-bit)."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise InputError("cannot decode image")
    if image.ndim == 3:
        image = to_thermal_gray(image, "bgra8" if image.shape[2] == 4 else "bgr8")
    return image
