"""Pictures and baselines the model card draws: the per-pixel maximum fusion, and a mask over a fused image
with the detection boxes outlined."""

from __future__ import annotations

import cv2
import numpy as np

from sccosf_ros.imaging.color import colorize_mask, overlay, rgb_to_ycbcr, ycbcr_to_rgb
from sccosf_ros.metrics.boxes import Box


def max_baseline(rgb: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """Per-pixel maximum of visible luminance and infrared, with the visible chroma: uint8 RGB."""
    ycc = rgb_to_ycbcr(rgb.astype(np.float32) / 255.0)
    ycc[..., 0] = np.maximum(ycc[..., 0], ir.astype(np.float32) / 255.0)
    return np.clip(np.rint(ycbcr_to_rgb(ycc) * 255.0), 0, 255).astype(np.uint8)


BOX_COLOURS = {1: (255, 0, 255), 2: (255, 255, 0), 3: (0, 255, 255)}  # car, person, bike outlines


def mask_picture(
    fused: np.ndarray, mask: np.ndarray, palette: np.ndarray, boxes: list[Box] | None
) -> np.ndarray:
    """The mask as a person reads it: palette colours over the fused image (background untouched), with
    the annotated detection boxes outlined (car magenta, person yellow, bike cyan)."""
    pic = overlay(fused, colorize_mask(mask, palette), alpha=0.6, mask=mask != 0)
    for b in boxes or []:
        cv2.rectangle(pic, (b.x0, b.y0), (b.x1 - 1, b.y1 - 1), BOX_COLOURS.get(b.cls, (255, 255, 255)), 2)
    return pic
