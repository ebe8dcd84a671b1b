"""The camera model (``sensor_msgs/CameraInfo``) that goes with the node's outputs, without ROS.

Downstream users (projection into 3-D, RViz camera displays, image_geometry) need the camera model that
matches the published images. The outputs have the RGB image's pixel grid, so the model is the RGB camera's,
brought to that grid: a driver may publish the calibration at full resolution with binning or a region of
interest (REP 104), or the image may have been resized on the way while the camera_info was not. Conventions
are ROS's own: binning and ROI as image_geometry's ``PinholeCameraModel`` reduces them (``cx' = (cx -
x_offset) / binning_x``), resizing as image_proc's resize node scales them (``fx' = fx * sx``, ``cx' = cx *
sx``); the distortion coefficients act on normalised coordinates and are passed on as given. The published
model is self-contained: full frame, no binning, no ROI.

Messages are duck-typed (the fields of ``sensor_msgs/CameraInfo``), so the node and the tests share one
implementation.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from sccosf_ros.errors import ConfigError, InputError

SYNC_MODES = ("stamp", "latest")
"""How an output finds its camera_info: the one with the RGB image's stamp, or the latest received."""


class CameraInfoError(InputError):
    """A camera_info that cannot describe any image (non-finite numbers, wrong array lengths)."""


@dataclass(frozen=True)
class CameraGeometry:
    """The geometric fields of a ``sensor_msgs/CameraInfo`` (K, R: 3x3 and P: 3x4, row-major)."""

    height: int
    width: int
    distortion_model: str
    d: tuple[float, ...]
    k: tuple[float, ...]
    r: tuple[float, ...]
    p: tuple[float, ...]
    binning_x: int = 0
    binning_y: int = 0
    roi: tuple[int, int, int, int] = (0, 0, 0, 0)  # x_offset, y_offset, height, width; 0 x 0 = full frame
    do_rectify: bool = False

    @classmethod
    def from_msg(cls, msg: Any) -> CameraGeometry:
        """Read a CameraInfo message (or anything with its fields); raise CameraInfoError if unusable."""
        try:
            g = cls(
                int(msg.height),
                int(msg.width),
                str(msg.distortion_model),
                tuple(float(v) for v in msg.d),
                tuple(float(v) for v in msg.k),
                tuple(float(v) for v in msg.r),
                tuple(float(v) for v in msg.p),
                int(msg.binning_x),
                int(msg.binning_y),
                (int(msg.roi.x_offset), int(msg.roi.y_offset), int(msg.roi.height), int(msg.roi.width)),
                bool(msg.roi.do_rectify),
            )
        except (AttributeError, TypeError, ValueError) as exc:
            raise CameraInfoError(f"not a camera_info: {exc}") from None
        if (len(g.k), len(g.r), len(g.p)) != (9, 9, 12):
            raise CameraInfoError(f"K, R, P need 9, 9, 12 numbers, got {len(g.k)}, {len(g.r)}, {len(g.p)}")
        if not all(math.isfinite(v) for v in (*g.d, *g.k, *g.r, *g.p)):
            raise CameraInfoError("D, K, R or P holds NaN or inf")
        if min(g.height, g.width, g.binning_x, g.binning_y, *g.roi) < 0:
            raise CameraInfoError("negative size, binning or ROI")
        return g

    def apply_to(self, msg: Any) -> Any:
        """Write these fields into a CameraInfo message (its header is left alone); returns ``msg``."""
        msg.height, msg.width = self.height, self.width
        msg.distortion_model = self.distortion_model
        msg.d, msg.k, msg.r, msg.p = list(self.d), list(self.k), list(self.r), list(self.p)
        msg.binning_x, msg.binning_y = self.binning_x, self.binning_y
        x, y, h, w = self.roi
        msg.roi.x_offset, msg.roi.y_offset, msg.roi.height, msg.roi.width = x, y, h, w
        msg.roi.do_rectify = self.do_rectify
        return msg

    def image_size(self) -> tuple[int, int] | None:
        """(height, width) of the images this model describes (ROI, then binning); None when unknown
        (an uncalibrated camera may leave width and height 0)."""
        bx, by = max(self.binning_x, 1), max(self.binning_y, 1)
        _, _, rh, rw = self.roi
        h, w = (rh, rw) if rh and rw else (self.height, self.width)
        return (h // by, w // bx) if h and w else None

    def reduced(self) -> CameraGeometry:
        """The same camera for the image it describes, with binning and ROI folded into K and P."""
        size = self.image_size()
        bx, by = max(self.binning_x, 1), max(self.binning_y, 1)
        plain = replace(self, binning_x=0, binning_y=0, roi=(0, 0, 0, 0))
        if size is None:
            return plain
        x0, y0 = self.roi[0], self.roi[1]
        # image pixel = (full-frame pixel - ROI offset) / binning, as a 3x3 map applied to K and P
        to_image = np.array([[1 / bx, 0, -x0 / bx], [0, 1 / by, -y0 / by], [0, 0, 1]])
        return plain.mapped(to_image, *size)

    def fitted(self, height: int, width: int) -> CameraGeometry:
        """The model of a ``height`` x ``width`` image showing what this camera_info describes."""
        if height <= 0 or width <= 0:
            raise ConfigError(f"image size must be positive, got {height}x{width}")
        g = self.reduced()
        if g.height <= 0 or g.width <= 0:  # size unknown: the model is taken to be for this image already
            return replace(g, height=height, width=width)
        if (g.height, g.width) == (height, width):
            return g
        return g.mapped(np.diag([width / g.width, height / g.height, 1.0]), height, width)

    def mapped(self, pixel_map: np.ndarray, height: int, width: int) -> CameraGeometry:
        """K and P followed by a 3x3 map of pixel coordinates, for an image of the given size."""
        k = pixel_map @ np.reshape(self.k, (3, 3))
        p = pixel_map @ np.reshape(self.p, (3, 4))
        return replace(self, height=height, width=width, k=_floats(k), p=_floats(p))


def _floats(a: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in a.ravel())


class CameraInfoCache:
    """The camera_info messages the node received, found for an output by ``mode`` (see :data:`SYNC_MODES`).

    ``stamp``: the one whose header stamp equals the RGB image's, as image_transport's camera subscribers pair
    them (a driver stamps both alike); the last ``keep`` are held, about a second of a 30 Hz camera.
    ``latest``: the newest received, for drivers that publish it at another rate or with other stamps.
    Thread-safe: the subscription callback adds, the worker finds.
    """

    def __init__(self, mode: str = "stamp", keep: int = 60) -> None:
        if mode not in SYNC_MODES:
            raise ConfigError(f"camera_info sync mode must be one of {SYNC_MODES}, got {mode!r}")
        self.mode = mode
        self.keep = keep
        self._lock = threading.Lock()
        self._by_stamp: OrderedDict[int, Any] = OrderedDict()
        self.received = 0

    def add(self, stamp_ns: int, msg: Any) -> None:
        with self._lock:
            self.received += 1
            self._by_stamp.pop(stamp_ns, None)
            self._by_stamp[stamp_ns] = msg
            while len(self._by_stamp) > self.keep:
                self._by_stamp.popitem(last=False)

    def find(self, stamp_ns: int) -> Any | None:
        """The camera_info for an RGB image stamped ``stamp_ns``, or None."""
        with self._lock:
            if self.mode == "latest":
                return next(reversed(self._by_stamp.values()), None)
            return self._by_stamp.get(stamp_ns)
