"""ROS-free image I/O: message fields <-> NumPy, thermal normalisation, colour, palettes, registration.

A small stand-in for cv_bridge (not installable here, and wrong for 16-bit thermal). Nothing in this package
imports rclpy or sensor_msgs; the node hands it plain field values.
"""

from .color import colorize_mask, overlay, rgb_to_ycbcr, to_rgb, ycbcr_to_rgb
from .encodings import (
    SUPPORTED_ENCODINGS,
    ImageConversionError,
    ImageFields,
    decode_compressed,
    image_to_numpy,
    numpy_to_image_fields,
)
from .palette import MSRS_CLASSES, MSRS_PALETTE, parse_palette
from .resize import resize_homography, warp_thermal_to_rgb
from .thermal import ThermalNormalizer, to_thermal_gray

__all__ = [
    "MSRS_CLASSES",
    "MSRS_PALETTE",
    "SUPPORTED_ENCODINGS",
    "ImageConversionError",
    "ImageFields",
    "ThermalNormalizer",
    "colorize_mask",
    "decode_compressed",
    "image_to_numpy",
    "numpy_to_image_fields",
    "overlay",
    "parse_palette",
    "resize_homography",
    "rgb_to_ycbcr",
    "to_rgb",
    "to_thermal_gray",
    "warp_thermal_to_rgb",
    "ycbcr_to_rgb",
]
