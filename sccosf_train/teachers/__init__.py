"""Teacher segmenters, by name: for training only (never imported by the runtime, never shipped).

A teacher gives pseudo labels and the baseline a real-data segmentation score must beat. Registered:

* ``mfnet``: MFNet (Ha et al., IROS 2017), rebuilt from its published description so that the authors'
  trained weights load strictly; a real RGB-thermal segmenter for the 9 MSRS classes.

**Adding a teacher** is one module with a class that satisfies :class:`Teacher` and one entry in
:data:`_REGISTRY` (or a :func:`register` call from the code that brings it). The pseudo-label tool, the
box-score comparison and the model card take ``--teacher NAME`` (:func:`add_arguments`), and the test-time
views (flips, scales) are taken here, once, for every teacher (:func:`view_probs`).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sccosf_ros.errors import ConfigError

DEFAULT = "mfnet"


class Teacher(Protocol):
    """A loaded segmenter: logits for one RGB-thermal pair, and what its classes are."""

    name: str
    title: str
    """How reports name it (``MFNet``)."""
    citation: str
    """Where it was published (``IROS 2017``)."""
    class_names: tuple[str, ...]
    """Its class map: logit channel k is class ``class_names[k]`` (the MSRS ids for ``mfnet``)."""
    weights: str
    """The weights file it was loaded from."""

    @classmethod
    def load(cls, weights: str | Path | None = None, device: str = "cpu") -> Teacher:
        """The teacher with its weights (``None``: its default file); TeacherError when unusable."""
        ...

    def logits(self, rgb: np.ndarray, thermal: np.ndarray, scale: float = 1.0) -> Any:
        """Logits (1, K, H, W) torch float32 on the CPU for uint8 RGB (H, W, 3) and thermal (H, W), the input
        resized by ``scale`` and the logits back to (H, W)."""
        ...


_REGISTRY: dict[str, str | type] = {"mfnet": "sccosf_train.teachers.mfnet:MFNetTeacher"}


def register(name: str, target: str | type) -> None:
    """Make teacher ``name`` available: its class, or ``"package.module:Class"`` (imported when chosen)."""
    _REGISTRY[name] = target


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def teacher_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def load_teacher(name: str = DEFAULT, weights: str | Path | None = None, device: str = "cpu") -> Teacher:
    """The teacher registered as ``name``, loaded (``weights`` None: the teacher's default file)."""
    if name not in _REGISTRY:
        raise ConfigError(f"teacher must be one of {teacher_names()}, got {name!r}")
    target = _REGISTRY[name]
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        target = getattr(importlib.import_module(module), attr)
    return target.load(weights, device)  # type: ignore[union-attr]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--teacher`` and ``--teacher-weights``, worded once for every tool that runs a teacher."""
    parser.add_argument("--teacher", default=DEFAULT, choices=teacher_names(), help=f"default {DEFAULT}")
    parser.add_argument(
        "--teacher-weights",
        help="the teacher's weights file; default: its own (mfnet: ../shared/teachers/mfnet/mfnet_final.pth "
        "beside the checkout)",
    )


def views(flip: bool, scales: Sequence[float]) -> list[tuple[float, bool]]:
    """The test-time views ``(scale, mirrored)`` in the order they are taken and averaged."""
    return [(float(s), m) for s in scales for m in ((False, True) if flip else (False,))]


def view_probs(
    teacher: Teacher, rgb: np.ndarray, thermal: np.ndarray, flip: bool, scales: Sequence[float]
) -> dict[tuple[float, bool], np.ndarray]:
    """Softmax probabilities (K, H, W) float32 of each test-time view: the input mirrored (horizontally)
    and resized, the probabilities mirrored back to the pair's geometry."""
    out = {}
    for s, mirrored in views(flip, scales):
        pair = (rgb[:, ::-1], thermal[:, ::-1]) if mirrored else (rgb, thermal)
        p = teacher.logits(*pair, scale=s).softmax(1)
        out[(s, mirrored)] = (p.flip(-1) if mirrored else p)[0].numpy()
    return out


def average_views(
    probs: Mapping[tuple[float, bool], np.ndarray], flip: bool, scales: Sequence[float]
) -> np.ndarray:
    """Mean probabilities (K, H, W) of the selected views (several selections can share one teacher run)."""
    return np.mean([probs[key] for key in views(flip, scales)], axis=0)


def predict_probs(
    teacher: Teacher,
    rgb: np.ndarray,
    thermal: np.ndarray,
    flip: bool = False,
    scales: Sequence[float] = (1.0,),
) -> np.ndarray:
    """Class probabilities (K, H, W), averaged over the test-time views."""
    return average_views(view_probs(teacher, rgb, thermal, flip, scales), flip, scales)


def predict_mask(teacher: Teacher, rgb: np.ndarray, thermal: np.ndarray, flip: bool = False) -> np.ndarray:
    """Class ids (H, W) uint8: the argmax of one plain pass, or of the flip-averaged probabilities."""
    if flip:
        return predict_probs(teacher, rgb, thermal, flip=True).argmax(0).astype(np.uint8)
    return teacher.logits(rgb, thermal).argmax(1)[0].numpy().astype(np.uint8)
