"""The fusion node's parameters: one table, read by the node, the launch file, the YAML test and the docs.

Kept free of ROS imports so that ``launch/fusion.launch.py`` and the tests can read it without rclpy or
launch installed. Every value is validated here, in one place, so an invalid setting fails ``configure`` with
a message naming the parameter and the reason instead of surfacing later as a stack trace in the worker.

Optional lists (``homography``, ``class_names``, ``palette``) are *strings*: ROS 2 cannot type an empty
list parameter (``[]`` in a params file yields an uninitialised or byte-array parameter), and launch arguments
are strings anyway. They hold comma- or whitespace-separated items; empty means "not set".
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from sccosf_ros.backends import backend_names
from sccosf_ros.camera_info import SYNC_MODES as CAMERA_INFO_SYNC_MODES
from sccosf_ros.errors import ConfigError
from sccosf_ros.imaging.thermal import ThermalNormalizer
from sccosf_ros.node.qos import INPUT_QOS_CHOICES, OUTPUT_QOS_CHOICES
from sccosf_ros.pipeline import SYNC_JUMP_THRESHOLD_S, SYNC_QUEUE_SIZE, SYNC_SLOP_S, ThermalSettings

_THERMAL = ThermalSettings()  # the pipeline's defaults, the table's too

TRANSPORTS = ("raw", "compressed")
USE_COMPRESSED_DEPRECATED = (
    "parameter 'use_compressed' is deprecated: set rgb_transport and thermal_transport instead "
    "(use_compressed: true subscribes both inputs compressed)"
)

DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class ParameterError(ConfigError):
    """An invalid parameter value; ``str()`` names the parameter and why."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"parameter '{name}': {reason}")
        self.name = name
        self.reason = reason


Validator = Callable[[Any], str | None]  # returns a reason when invalid


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: name (dots = YAML nesting), default (its type is the parameter's type), doc, check."""

    name: str
    default: Any
    description: str
    validator: Validator | None = None


def _one_of(*choices: str) -> Validator:
    return lambda v: None if v in choices else f"must be one of {list(choices)}, got {v!r}"


def _registered_backend(v: str) -> str | None:
    """Read at validation time, so a backend registered after this module loaded is accepted too."""
    return _one_of(*backend_names())(v)


def _int_at_least(lo: int) -> Validator:
    return lambda v: None if v >= lo else f"must be >= {lo}, got {v}"


def _device(v: str) -> str | None:
    return None if DEVICE_RE.match(v) else f"must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {v!r}"


def parse_size(v: str) -> tuple[int, int] | None:
    """``"480x640"`` (height × width) → (480, 640); ``""`` → None."""
    v = v.strip().lower()
    if not v:
        return None
    parts = v.split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"must be 'HxW' with positive integers (e.g. '480x640') or '', got {v!r}")
    return int(parts[0]), int(parts[1])


def _finite(v: float) -> str | None:
    return None if math.isfinite(v) else f"must be finite, got {v}"


def _slop(v: float) -> str | None:
    return None if math.isfinite(v) and v > 0 else f"must be > 0 seconds, got {v}"


def _jump_threshold(v: float) -> str | None:
    return None if math.isfinite(v) and v >= 0 else f"must be >= 0 seconds (0: off), got {v}"


def _alpha(v: float) -> str | None:
    return None if 0.0 <= v <= 1.0 else f"must be in [0, 1], got {v}"


def _smoothing(v: float) -> str | None:
    return None if 0.0 <= v < 1.0 else f"must be in [0, 1), got {v}"


def _percentiles(v: list[float]) -> str | None:
    if len(v) != 2 or not (0.0 <= v[0] < v[1] <= 100.0):
        return f"must be two numbers with 0 <= low < high <= 100, got {list(v)}"
    return None


def split_list(text: str) -> list[str]:
    """Items of a comma/whitespace-separated string parameter (brackets and quotes tolerated)."""
    text = text.strip().strip("[]")
    return [t.strip().strip("'\"") for t in re.split(r"[,\s]+", text) if t.strip().strip("'\"")]


def parse_homography(text: str) -> list[float] | None:
    """9 row-major numbers (thermal pixel -> RGB pixel) or None for an empty string."""
    items = split_list(text)
    if not items:
        return None
    try:
        values = [float(t) for t in items]
    except ValueError:
        raise ValueError(f"must be 9 numbers (row-major 3x3), got {text!r}") from None
    if len(values) != 9:
        raise ValueError(f"must be 9 numbers (row-major 3x3), got {len(values)}")
    if not all(math.isfinite(x) for x in values):
        raise ValueError("contains NaN or inf")
    return values


def _parses(parse: Callable[[str], object]) -> Validator:
    """A validator from a parser: its ValueError's message is the complaint."""

    def check(v: str) -> str | None:
        try:
            parse(v)
        except ValueError as exc:
            return str(exc)
        return None

    return check


def _palette(v: str) -> str | None:
    if not split_list(v):
        return None
    from sccosf_ros.imaging.palette import parse_palette  # numpy/cv2 only when a palette is set

    try:
        parse_palette(split_list(v))
    except ValueError as exc:
        return str(exc)
    return None


PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec(
        "checkpoint",
        "",
        "Model file: a .safetensors checkpoint, or a .onnx file from sccosf-export (backend onnxruntime); "
        "empty = the shipped models/sccosf_tiny.safetensors",
    ),
    ParamSpec("device", "auto", "Inference device: auto (CUDA when available), cpu, cuda or cuda:N", _device),
    ParamSpec(
        "precision",
        "fp32",
        "Inference precision: fp32, fp16 (CUDA only), bf16, or int8 (an INT8 .onnx checkpoint, onnxruntime)",
        _one_of("fp32", "fp16", "bf16", "int8"),
    ),
    ParamSpec("num_threads", 0, "CPU threads for the backend; 0 = its default (the cores)", _int_at_least(0)),
    ParamSpec(
        "backend",
        "auto",
        "Inference backend: auto (onnxruntime for fp32 on a CPU where it is installed, else torch), torch, "
        "or onnxruntime (the exported ONNX graph; checkpoint a .onnx file or a .safetensors exported once "
        "per frame size into a cache); any other registered backend by name",
        _registered_backend,
    ),
    ParamSpec(
        "warmup_size",
        "480x640",
        "Frame size HxW the model is prepared for at activation (onnxruntime: its one-time export, ~20 s "
        "on 2 cores, cached), so no first frames are dropped; '' = none; other sizes prepared on arrival",
        _parses(parse_size),
    ),
    ParamSpec(
        "seg_refine",
        True,
        "Run the model's segmentation refinement; false = the coarse mask, faster on a slow CPU",
    ),
    ParamSpec(
        "thermal_normalization.mode",
        _THERMAL.mode,
        "Thermal to [0,1]: auto (8-bit as is, deeper data as percentile), percentile (smoothed robust "
        "range), minmax (per frame) or fixed (low/high)",
        _one_of("auto", "percentile", "minmax", "fixed"),
    ),
    ParamSpec(
        "thermal_normalization.low",
        _THERMAL.low,
        "Fixed mode: raw value mapped to 0 (low = high = 0: the dtype's full range)",
        _finite,
    ),
    ParamSpec(
        "thermal_normalization.high",
        _THERMAL.high,
        "Fixed mode: raw value mapped to 1 (low = high = 0: the dtype's full range)",
        _finite,
    ),
    ParamSpec(
        "thermal_normalization.percentiles",
        list(_THERMAL.percentiles),
        "Percentile mode: [low, high] percentiles",
        _percentiles,
    ),
    ParamSpec(
        "thermal_normalization.smoothing",
        _THERMAL.smoothing,
        "Percentile mode: weight of the previous range, in [0, 1)",
        _smoothing,
    ),
    ParamSpec(
        "homography",
        "",
        "Thermal->RGB pixel homography, 9 row-major numbers; empty = resize only",
        _parses(parse_homography),
    ),
    ParamSpec(
        "sync_queue_size", SYNC_QUEUE_SIZE, "Approximate-time sync queue length per input", _int_at_least(1)
    ),
    ParamSpec(
        "sync_slop",
        SYNC_SLOP_S,
        "Max stamp difference (s) of a pair; >= half the slower camera's period",
        _slop,
    ),
    ParamSpec(
        "sync_jump_threshold",
        SYNC_JUMP_THRESHOLD_S,
        "A stamp (or ROS time) going back by more than this (s) restarts the pairing (a looped or "
        "restarted bag, a reset simulation); > sync_slop; 0 = off",
        _jump_threshold,
    ),
    ParamSpec(
        "camera_info_sync",
        "stamp",
        "Which rgb/camera_info goes with an output: stamp (the one with the RGB image's stamp, as drivers "
        "publish them) or latest (the newest received); without any, sccosf/camera_info stays silent",
        _one_of(*CAMERA_INFO_SYNC_MODES),
    ),
    ParamSpec(
        "rgb_transport",
        "raw",
        "RGB input: raw (rgb/image, sensor_msgs/Image) or compressed (rgb/image/compressed, "
        "sensor_msgs/CompressedImage: JPEG/PNG)",
        _one_of(*TRANSPORTS),
    ),
    ParamSpec(
        "thermal_transport",
        "raw",
        "Thermal input: raw (thermal/image) or compressed (thermal/image/compressed, e.g. 16-bit PNG)",
        _one_of(*TRANSPORTS),
    ),
    ParamSpec(
        "use_compressed",
        False,
        "Deprecated: true = rgb_transport and thermal_transport both compressed (a warning says so)",
    ),
    ParamSpec(
        "input_qos",
        "auto",
        "Subscriber QoS: auto (the reliability the input's publishers offer, as rosbag2 records), "
        "sensor_data, reliable, best_effort, system_default",
        _one_of(*INPUT_QOS_CHOICES),
    ),
    ParamSpec("input_depth", 5, "Subscriber queue depth (keep last N)", _int_at_least(1)),
    ParamSpec(
        "output_qos",
        "reliable",
        "Publisher QoS: reliable, best_effort, sensor_data, system_default",
        _one_of(*OUTPUT_QOS_CHOICES),
    ),
    ParamSpec("output_depth", 5, "Publisher queue depth (keep last N)", _int_at_least(1)),
    ParamSpec("publish_fused", True, "Publish sccosf/fused (rgb8)"),
    ParamSpec("publish_segmentation", True, "Publish sccosf/segmentation (mono8 class ids)"),
    ParamSpec("publish_color", True, "Publish sccosf/segmentation_color (rgb8 palette colours)"),
    ParamSpec("publish_overlay", False, "Publish sccosf/overlay (palette blended over the fused image)"),
    ParamSpec("overlay_alpha", 0.5, "Overlay opacity in [0, 1]", _alpha),
    ParamSpec(
        "class_names", "", "Comma-separated class names overriding the checkpoint's; empty = checkpoint's"
    ),
    ParamSpec(
        "palette",
        "",
        "Comma-separated #rrggbb colours overriding the checkpoint's; empty = checkpoint's",
        _palette,
    ),
    ParamSpec("autostart", True, "main(): configure and activate the lifecycle node by itself"),
)

SPECS: dict[str, ParamSpec] = {p.name: p for p in PARAMETERS}


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _coerce(spec: ParamSpec, value: Any) -> Any:
    """Bring ``value`` to the default's type (ints are accepted for doubles); raise ParameterError."""
    d = spec.default
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: _is_number(value),
        str: isinstance(value, str),
        list: isinstance(value, (list, tuple)) and all(_is_number(x) for x in value),
    }[type(d)]
    if not ok:
        raise ParameterError(
            spec.name, f"expected {type(d).__name__}, got {value!r} ({type(value).__name__})"
        )
    if isinstance(d, float):
        return float(value)
    if isinstance(d, list):
        return [float(x) for x in value]
    return value


def validate(values: Mapping[str, Any]) -> dict[str, Any]:
    """Check a complete or partial mapping name -> value; return it coerced, defaults filled in.

    Cross-parameter rules live here too (fixed-mode range, palette length vs class names).
    """
    unknown = sorted(set(values) - set(SPECS))
    if unknown:
        raise ParameterError(unknown[0], f"unknown parameter (known: {', '.join(SPECS)})")
    out: dict[str, Any] = {}
    for spec in PARAMETERS:
        value = _coerce(spec, values[spec.name]) if spec.name in values else spec.default
        if spec.validator is not None:
            reason = spec.validator(value)
            if reason:
                raise ParameterError(spec.name, reason)
        out[spec.name] = value
    low, high = out["thermal_normalization.low"], out["thermal_normalization.high"]
    if out["thermal_normalization.mode"] == "fixed" and (low, high) != (0.0, 0.0) and not low < high:
        raise ParameterError("thermal_normalization.high", f"must be > low ({low}) in fixed mode, got {high}")
    jump = out["sync_jump_threshold"]
    if 0 < jump <= out["sync_slop"]:
        raise ParameterError(
            "sync_jump_threshold", f"must be > sync_slop ({out['sync_slop']} s) or 0, got {jump}"
        )
    names, colours = split_list(out["class_names"]), split_list(out["palette"])
    if names and colours and len(names) != len(colours):
        raise ParameterError("palette", f"has {len(colours)} colours for {len(names)} class_names")
    return out


def input_transports(values: Mapping[str, Any]) -> dict[str, str]:
    """Stream -> ``raw`` or ``compressed`` from validated parameters; the deprecated ``use_compressed: true``
    makes both compressed."""
    if values["use_compressed"]:
        return {"rgb": "compressed", "thermal": "compressed"}
    return {"rgb": values["rgb_transport"], "thermal": values["thermal_transport"]}


def thermal_normalizer(values: Mapping[str, Any] | None = None) -> ThermalNormalizer:
    """The thermal normaliser the parameters describe (the pipeline's defaults when ``values`` is None)."""
    if values is None:
        return _THERMAL.normalizer()
    prefix = "thermal_normalization."
    settings = ThermalSettings(
        mode=values[prefix + "mode"],
        low=values[prefix + "low"],
        high=values[prefix + "high"],
        percentiles=tuple(values[prefix + "percentiles"]),
        smoothing=values[prefix + "smoothing"],
    )
    return settings.normalizer()


def launch_value(name: str, text: str) -> Any:
    """Parse a launch-argument string into the parameter's type (YAML rules, as launch_ros does)."""
    spec = SPECS[name]
    if isinstance(spec.default, str):
        return text
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ParameterError(name, f"cannot parse {text!r}: {exc}") from None
    return _coerce(spec, value)
