"""Fusion (no-reference) and segmentation metrics; conventions in ``docs/metrics.md``."""

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
    "FUSION_METRICS",
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
