"""Datasets for the trainer: MSRS-layout folders (labelled or not) and synthetic labelled scenes.

Samples are dicts of tensors: ``rgb`` (3,H,W) and ``thermal`` (1,H,W) float in [0, 1], ``labels`` (H,W)
int64 with 255 = ignore, ``has_labels`` (bool), ``name`` and ``source`` (str). Unlabelled pairs are
first-class: their labels are 255 everywhere, so the segmentation loss ignores them while the fusion
objective (which needs no labels) still learns from them.

Augmentation randomness comes from ``numpy.random.default_rng((seed, epoch, index))``: results do not
depend on the number of DataLoader workers or their scheduling, and ``set_epoch`` gives new draws each epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from sccosf_ros.errors import SccosfError
from sccosf_synth.scenes import NUM_CLASSES, generate_scene
from sccosf_train.augment import IGNORE_INDEX, AugmentConfig, augment_triple
from sccosf_train.paste import ObjectBank, PasteConfig

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
LABEL_DIRS = ("Label", "Segmentation_labels", "labels")


class DatasetError(SccosfError, RuntimeError):
    """A dataset folder or file cannot be used; the message names it."""


def list_images(folder: Path) -> dict[str, Path]:
    """Map file stem → path; two files with one stem (e.g. a.png and a.jpg) are ambiguous."""
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTS:
            if p.stem in out:
                raise DatasetError(f"{folder}: two images named {p.stem!r} ({out[p.stem].name}, {p.name})")
            out[p.stem] = p
    return out


def find_image(folder: Path, name: str) -> Path:
    """The image file ``folder/name.*`` (any of :data:`IMAGE_EXTS`), or DatasetError naming the folder."""
    for ext in IMAGE_EXTS:
        for candidate in (folder / f"{name}{ext}", folder / f"{name}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    raise DatasetError(f"{folder}: no image named {name!r} ({', '.join(IMAGE_EXTS)})")


def _read(path: Path, flags: int) -> np.ndarray:
    img = cv2.imread(str(path), flags)
    if img is None or img.size == 0:
        raise DatasetError(f"{path}: unreadable image (missing, truncated or not an image)")
    return img


def read_thermal(path: Path) -> np.ndarray:
    """8-bit thermal as-is; 16-bit counts stretched by their 1st–99th percentiles (per frame, documented)."""
    img = _read(path, cv2.IMREAD_UNCHANGED)
    if img.ndim == 3:  # some datasets store IR as 3 identical channels
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2GRAY)
    if img.dtype == np.uint8:
        return img
    if img.dtype in (np.uint16, np.float32):
        lo, hi = np.percentile(img, (1, 99))
        return np.clip((img.astype(np.float32) - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    raise DatasetError(f"{path}: unsupported thermal dtype {img.dtype}")


def read_visible(path: Path) -> np.ndarray:
    img = _read(path, cv2.IMREAD_COLOR)  # always 8-bit BGR
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_labels(path: Path, num_classes: int) -> np.ndarray:
    img = _read(path, cv2.IMREAD_UNCHANGED)
    if img.ndim == 3:
        if not (np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])):
            raise DatasetError(f"{path}: label image is colour; class-id PNGs (one channel) are needed")
        img = img[..., 0]
    if img.dtype != np.uint8:
        raise DatasetError(f"{path}: label image must be 8-bit class ids, got {img.dtype}")
    bad = np.unique(img[(img >= num_classes) & (img != IGNORE_INDEX)])
    if bad.size:
        raise DatasetError(
            f"{path}: class ids {bad[:8].tolist()} outside 0..{num_classes - 1} (255 = ignore)"
        )
    return img


def _to_sample(
    rgb: np.ndarray, th: np.ndarray, labels: np.ndarray, has_labels: bool, name: str, source: str
) -> dict[str, object]:
    return {
        "rgb": torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))),
        "thermal": torch.from_numpy(np.ascontiguousarray(th))[None],
        "labels": torch.from_numpy(labels.astype(np.int64)),
        "has_labels": torch.tensor(has_labels),
        "name": name,
        "source": source,
    }


class _EpochSeeded(Dataset):
    """Per-sample RNG from (seed, epoch, index): worker-count independent, new draws each epoch."""

    def __init__(self, crop: tuple[int, int] | None, augment: AugmentConfig | bool, seed: int) -> None:
        self.crop = None if crop is None else (int(crop[0]), int(crop[1]))
        self.augment = augment if isinstance(augment, AugmentConfig) else AugmentConfig(enabled=bool(augment))
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _rng(self, index: int) -> np.random.Generator | None:
        return np.random.default_rng((self.seed, self.epoch, index)) if self.augment.enabled else None


class MSRSFolderDataset(_EpochSeeded):
    """Pairs in the MSRS layout: ``root/ir/NAME``, ``root/vi/NAME`` and optionally ``root/Label/NAME``.

    Pairs by file stem. Every name must exist in both ``ir/`` and ``vi/`` (unpaired files are an error that
    lists them: silently dropping data hides mistakes). Label files are optional per pair; ``label_root``
    takes them from a folder elsewhere (pseudo labels beside a read-only dataset). ``split_names`` selects
    (and orders) a subset; a name not present is an error.
    """

    def __init__(
        self,
        root: str | Path,
        split_names: Sequence[str] | None = None,
        crop: tuple[int, int] | None = None,
        augment: AugmentConfig | bool = False,
        seed: int = 0,
        num_classes: int = NUM_CLASSES,
        label_dir: str | None = None,
        label_root: str | Path | None = None,
        repeat: int = 1,
    ) -> None:
        super().__init__(crop, augment, seed)
        if repeat < 1:
            raise DatasetError(f"repeat must be >= 1, got {repeat}")
        self.repeat = int(repeat)
        self.root = Path(root)
        self.num_classes = num_classes
        for sub in ("ir", "vi"):
            if not (self.root / sub).is_dir():
                raise DatasetError(f"{self.root}: no '{sub}/' folder (expected the MSRS layout ir/, vi/)")
        ir, vi = list_images(self.root / "ir"), list_images(self.root / "vi")
        only_ir, only_vi = sorted(ir.keys() - vi.keys()), sorted(vi.keys() - ir.keys())
        if only_ir or only_vi:
            parts = [f"{len(only_ir)} in ir/ only: {[ir[n].name for n in only_ir[:5]]}"] if only_ir else []
            parts += [f"{len(only_vi)} in vi/ only: {[vi[n].name for n in only_vi[:5]]}"] if only_vi else []
            raise DatasetError(f"{self.root}: unpaired images, " + "; ".join(parts))
        labels = self._find_labels(label_dir, label_root)
        names = sorted(ir)
        if split_names is not None:
            missing = [n for n in split_names if n not in ir]
            if missing:
                raise DatasetError(f"{self.root}: {len(missing)} split names have no pair: {missing[:5]}")
            names = list(split_names)
        if not names:
            raise DatasetError(f"{self.root}: no image pairs found")
        self.names = names
        self._ir, self._vi = ir, vi
        self._labels = {n: labels[n] for n in names if n in labels}
        self.paste: tuple[ObjectBank, PasteConfig] | None = None  # copy-paste into labelled training pairs

    def _find_labels(self, label_dir: str | None, label_root: str | Path | None) -> dict[str, Path]:
        """Label files by stem, from ``label_root``, ``root/label_dir`` or the first usual sub-folder."""
        if label_root is not None:
            if not Path(label_root).is_dir():
                raise DatasetError(f"label folder {label_root} not found")
            self.label_dir: Path | None = Path(label_root)
            return list_images(self.label_dir)
        for d in [label_dir] if label_dir else list(LABEL_DIRS):
            if (self.root / d).is_dir():
                self.label_dir = self.root / d
                return list_images(self.label_dir)
        self.label_dir = None
        if label_dir:
            raise DatasetError(f"{self.root}: label folder '{label_dir}/' not found")
        return {}

    def __len__(self) -> int:
        return len(self.names) * self.repeat

    @property
    def num_labelled(self) -> int:
        return len(self._labels)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """Raw uint8 arrays (no augmentation) and whether real labels exist. With ``repeat`` > 1, index
        ``i`` is pair ``i % len(names)`` (each repetition draws its own augmentation)."""
        name = self.names[index % len(self.names)]
        rgb, th = read_visible(self._vi[name]), read_thermal(self._ir[name])
        if rgb.shape[:2] != th.shape[:2]:
            raise DatasetError(
                f"{self._vi[name]} is {rgb.shape[1]}x{rgb.shape[0]} but {self._ir[name]} is "
                f"{th.shape[1]}x{th.shape[0]}: pairs must be registered and the same size"
            )
        if name in self._labels:
            lab = read_labels(self._labels[name], self.num_classes)
            if lab.shape != th.shape:
                raise DatasetError(
                    f"{self._labels[name]}: label size {lab.shape} differs from the pair's {th.shape}"
                )
            return rgb, th, lab, True
        return rgb, th, np.full(th.shape, IGNORE_INDEX, np.uint8), False

    def __getitem__(self, index: int) -> dict[str, object]:
        rgb, th, lab, has = self.load(index)
        rng = self._rng(index)
        if self.paste is not None and has and rng is not None:
            rgb, th, lab = self.paste[0].paste(rgb, th, lab, rng, self.paste[1])
        rgb_f, th_f, lab = augment_triple(rgb, th, lab, self.crop, rng, self.augment)
        name = self.names[index % len(self.names)]
        return _to_sample(rgb_f, th_f, lab, has, name, f"msrs:{self.root.name}")


class SyntheticDataset(_EpochSeeded):
    """``n`` synthetic labelled scenes (see :mod:`sccosf_synth.scenes`), generated on the fly.

    Scene ``i`` is ``generate_scene(seed * 1_000_003 + i)`` at ``size``: the same ``n``/``seed`` always give
    the same scenes, so a validation set built this way is fixed.
    """

    def __init__(
        self,
        n: int,
        seed: int = 0,
        size: tuple[int, int] = (480, 640),
        crop: tuple[int, int] | None = None,
        augment: AugmentConfig | bool = False,
        misregistration_px: float = 0.0,
        fresh_each_epoch: bool = False,
    ) -> None:
        super().__init__(crop, augment, seed)
        if n < 1:
            raise ValueError("SyntheticDataset needs n >= 1")
        self.n, self.size, self.misregistration_px = int(n), (int(size[0]), int(size[1])), misregistration_px
        self.fresh_each_epoch = bool(fresh_each_epoch)

    def __len__(self) -> int:
        return self.n

    def scene_seed(self, index: int) -> int:
        """Seed of scene ``index``; with ``fresh_each_epoch`` epoch ``e`` draws scenes ``e*n .. e*n+n-1``."""
        offset = self.epoch * self.n if self.fresh_each_epoch else 0
        return self.seed * 1_000_003 + offset + index

    def __getitem__(self, index: int) -> dict[str, object]:
        if not 0 <= index < self.n:
            raise IndexError(index)
        sc = generate_scene(self.scene_seed(index), *self.size, misregistration_px=self.misregistration_px)
        rgb_f, th_f, lab = augment_triple(
            sc.rgb, sc.thermal, sc.labels, self.crop, self._rng(index), self.augment
        )
        return _to_sample(rgb_f, th_f, lab, True, f"synthetic_{self.scene_seed(index)}", "synthetic")


class MixedDataset(ConcatDataset):
    """Concatenation of real and synthetic parts that forwards ``set_epoch`` to each part.

    All parts must yield the same crop size so they batch together. The mixing ratio is set by the
    part sizes (e.g. 180 real pairs + 180 synthetic scenes = 1:1).
    """

    def __init__(self, parts: Sequence[Dataset]) -> None:
        parts = [p for p in parts if p is not None and len(p) > 0]  # type: ignore[arg-type]
        if not parts:
            raise DatasetError("no training data: give --msrs-root and/or a positive synthetic count")
        super().__init__(parts)

    def set_epoch(self, epoch: int) -> None:
        for p in self.datasets:
            if hasattr(p, "set_epoch"):
                p.set_epoch(epoch)


def seafusion_split(root: str | Path) -> tuple[list[str], list[str]]:
    """(train, val) names: val = the pairs that have a SeAFusion output in ``root/seafusion/``.

    Holding those out lets the validation fusion metrics be compared with a published method on the
    same pairs. Raises if the folder is missing.
    """
    root = Path(root)
    if not (root / "seafusion").is_dir():
        raise DatasetError(f"{root}: no 'seafusion/' folder to take the validation names from")
    val = sorted(list_images(root / "seafusion"))
    all_names = sorted(list_images(root / "ir"))
    unknown = sorted(set(val) - set(all_names))
    if unknown:
        raise DatasetError(f"{root}/seafusion: {len(unknown)} names without an ir/ image: {unknown[:5]}")
    vs = set(val)
    return [n for n in all_names if n not in vs], val


def read_split_file(path: str | Path) -> list[str]:
    """One name (file stem) per line; blank lines and ``#`` comments ignored."""
    lines = Path(path).read_text().splitlines()
    return [Path(s.strip()).stem for s in lines if s.strip() and not s.strip().startswith("#")]
