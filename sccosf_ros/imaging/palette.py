"""Class names and colours for segmentation masks.

The MSRS list is the one published with the dataset (its visualiser and PSFusion's dataset definition), in RGB
order; MFNet code stores the same colours as BGR, so do not copy from there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np

MSRS_CLASSES: tuple[str, ...] = (
    "unlabelled",
    "car",
    "person",
    "bike",
    "curve",
    "car_stop",
    "guardrail",
    "color_cone",
    "bump",
)

MSRS_PALETTE: np.ndarray = np.array(
    [
        (0, 0, 0),
        (64, 0, 128),
        (64, 64, 0),
        (0, 128, 192),
        (0, 0, 192),
        (128, 128, 0),
        (64, 64, 128),
        (192, 128, 128),
        (192, 64, 0),
    ],
    dtype=np.uint8,
)
MSRS_PALETTE.setflags(write=False)

_HEX = re.compile(r"^(?:#|0x)?([0-9a-fA-F]{6})$")


def _one_colour(index: int, item: object) -> tuple[int, int, int]:
    if isinstance(item, str):
        match = _HEX.match(item.strip())
        if not match:
            raise ValueError(f"palette entry {index}: {item!r} is not a '#rrggbb' colour")
        value = int(match.group(1), 16)
        return (value >> 16) & 255, (value >> 8) & 255, value & 255
    if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
        value = int(item)
        if not 0 <= value <= 0xFFFFFF:
            raise ValueError(f"palette entry {index}: integer {value} is outside 0..0xFFFFFF (24-bit RGB)")
        return (value >> 16) & 255, (value >> 8) & 255, value & 255
    if isinstance(item, (Sequence, np.ndarray)) and len(item) == 3:
        out = []
        for c in item:
            if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 0 <= int(c) <= 255:
                raise ValueError(f"palette entry {index}: {item!r} needs three integers in 0..255")
            out.append(int(c))
        return out[0], out[1], out[2]
    raise ValueError(f"palette entry {index}: {item!r} is not '#rrggbb', a 24-bit integer or [r, g, b]")


def parse_palette(items: Iterable[object]) -> np.ndarray:
    """Parse colours given as ``"#rrggbb"`` strings, 24-bit ``0xRRGGBB`` integers (Isaac ROS style) or
    ``[r, g, b]`` triples into a ``(K, 3)`` uint8 RGB array; fails fast with the offending entry's index.
    """
    if isinstance(items, (str, bytes)):
        raise ValueError("palette must be a list of colours, not a single string")
    colours = [_one_colour(i, item) for i, item in enumerate(items)]
    if not colours:
        raise ValueError("palette is empty")
    if len(colours) > 256:
        raise ValueError(f"palette has {len(colours)} colours; class masks are mono8, at most 256")
    return np.array(colours, dtype=np.uint8)


def class_names_for(num_classes: int) -> list[str]:
    """MSRS names for a 9-class model, ``class_<i>`` otherwise (what a new checkpoint records)."""
    if num_classes == len(MSRS_CLASSES):
        return list(MSRS_CLASSES)
    return [f"class_{i}" for i in range(num_classes)]


def palette_for(num_classes: int) -> list[tuple[int, int, int]]:
    """The MSRS palette for a 9-class model; black plus fixed random colours otherwise."""
    if num_classes == len(MSRS_PALETTE):
        return [(int(r), int(g), int(b)) for r, g, b in MSRS_PALETTE]
    rng = np.random.default_rng(0)
    return [(0, 0, 0)] + [tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(num_classes - 1)]  # type: ignore[misc]
