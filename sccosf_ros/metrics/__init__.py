"""Fusion (no-reference) and segmentation metrics, and the box score; conventions in ``docs/metrics.md``."""

from .boxes import BOX_CLASSES, BOXLESS_CLASSES, Box, BoxDir, BoxFileError, BoxScore
from .fusion import (
    FUSION_METRICS,
    average_gradient,
    entropy,
    fusion_metrics,
    mutual_information,
    qabf,
    scd,
    spatial_frequency,
    ssim,
    standard_deviation,
    to_gray255,
    vif,
)
from .segmentation import ConfusionMatrix

__all__ = [
    "BOXLESS_CLASSES",
    "BOX_CLASSES",
    "FUSION_METRICS",
    "Box",
    "BoxDir",
    "BoxFileError",
    "BoxScore",
    "ConfusionMatrix",
    "average_gradient",
    "entropy",
    "fusion_metrics",
    "mutual_information",
    "qabf",
    "scd",
    "spatial_frequency",
    "ssim",
    "standard_deviation",
    "to_gray255",
    "vif",
]
