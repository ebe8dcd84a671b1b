"""Inference engine: NumPy frames in, fused image + class mask out, with no ROS anywhere.

The ROS node, the ``sccosf-fuse`` CLI, evaluation and benchmarks all run the network through this one
class, so input checks, thermal registration, batching, the result type and the timings behave identically
everywhere. What runs the network is a backend, chosen by name from :mod:`sccosf_ros.backends` (which says
which exist and how ``auto`` chooses); the engine calls it for the forward only, and knows none by name.
It imports no backend's runtime itself: a backend's packages load when that backend is chosen.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sccosf_ros import backends
from sccosf_ros.backends import Backend, BackendOptions, BackendOutput, Device
from sccosf_ros.checkpoint import CheckpointMeta
from sccosf_ros.errors import BackendUnavailableError, CheckpointError, ConfigError, InputError
from sccosf_ros.imaging.resize import validate_homography, warp_thermal_to_rgb
from sccosf_ros.imaging.thermal import to_thermal_gray
from sccosf_ros.paths import DEFAULT_MODEL_NAME, default_checkpoint_path

__all__ = ["PRECISIONS", "BackendUnavailableError", "FusionEngine", "FusionResult"]

PRECISIONS = backends.PRECISIONS


@dataclass
class FusionResult:
    """One frame's output, all on the RGB camera's pixel grid."""

    fused: np.ndarray
    """(H, W, 3) uint8 RGB fused image."""
    mask: np.ndarray
    """(H, W) uint8 class ids (index into ``FusionEngine.class_names`` / ``palette``)."""
    probs: np.ndarray | None = None
    """(K, H, W) float32 softmax probabilities when asked for, else None (they cost K× the mask's memory)."""
    timings: dict[str, float] = field(default_factory=dict)
    """Milliseconds for ``preprocess``, ``inference``, ``postprocess`` (a batch's time split evenly)."""


def _check_rgb(rgb: object) -> np.ndarray:
    if not isinstance(rgb, np.ndarray):
        raise InputError(f"rgb must be a numpy array, got {type(rgb).__name__}")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(f"rgb must be (H, W, 3) RGB, got shape {rgb.shape}")
    if rgb.size == 0:
        raise InputError(f"rgb image is empty (shape {rgb.shape})")
    if rgb.dtype != np.uint8:
        raise InputError(f"rgb must be uint8, got {rgb.dtype}")
    return rgb


def _check_thermal(thermal: object) -> np.ndarray:
    """A single-channel uint8 or float32 [0, 1] frame; colour thermal is reduced to grey."""
    if not isinstance(thermal, np.ndarray):
        raise InputError(f"thermal must be a numpy array, got {type(thermal).__name__}")
    if thermal.size == 0:
        raise InputError(f"thermal image is empty (shape {thermal.shape})")
    if thermal.ndim == 3 and thermal.shape[2] in (1, 3):
        thermal = to_thermal_gray(thermal, "rgb8")
    elif thermal.ndim != 2:
        raise InputError(f"thermal must be (H, W), (H, W, 1) or (H, W, 3), got shape {thermal.shape}")
    if thermal.dtype == np.uint8:
        return thermal
    if not np.issubdtype(thermal.dtype, np.floating):
        raise InputError(
            f"thermal must be uint8 or float in [0, 1], got {thermal.dtype}: normalise raw 16-bit counts or "
            "temperatures with sccosf_ros.imaging.ThermalNormalizer first"
        )
    thermal = thermal.astype(np.float32, copy=False)
    lo, hi = float(thermal.min()), float(thermal.max())  # NaN propagates into both
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise InputError("thermal contains NaN or inf: normalise it with ThermalNormalizer (maps them to 0)")
    if lo < -1e-3 or hi > 1.0 + 1e-3:
        raise InputError(
            f"float thermal must be in [0, 1], got range [{lo:.4g}, {hi:.4g}]: "
            "normalise it with ThermalNormalizer"
        )
    return thermal


class FusionEngine:
    """Loads an SC-CoSF checkpoint once and runs it on (RGB, thermal) frame pairs.

    ``checkpoint=None`` uses the shipped ``models/sccosf_tiny.safetensors``. ``backend`` names what runs the
    network (:func:`sccosf_ros.backends.backend_names`; ``auto`` picks per device and precision), and
    ``device`` ('auto', 'cpu', 'cuda[:N]') and ``precision`` (fp32, fp16, bf16) are checked by that backend.
    ``homography`` (3×3, thermal pixel → RGB pixel) registers a thermal camera that is not pixel-aligned
    with the RGB one; without it the thermal frame is simply resized onto the RGB grid. ``num_threads`` sets
    the backend's CPU threads. ``seg_refine=False`` skips the model's segmentation refinement (when it has
    one): the coarse head's mask, cheaper on a CPU that cannot keep up (model card: speed); the fused image
    is the same either way. ``channels_last`` is a memory-layout hint (default: on for CUDA).

    Further keyword options belong to a backend (:data:`sccosf_ros.backends.backend_options`), e.g. the
    ONNX Runtime backend's ``onnx_cache``, ``ort_providers``, ``ort_session`` and ``ort_provider_options``
    (docs/onnx.md); a backend ignores the options of others, so callers of ``auto`` may pass them.
    """

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        device: Any = "auto",
        precision: str = "fp32",
        homography: np.ndarray | None = None,
        channels_last: bool | None = None,
        num_threads: int | None = None,
        seg_refine: bool = True,
        backend: str = backends.DEFAULT,
        **backend_options: Any,
    ) -> None:
        unknown = sorted(set(backend_options) - backends.backend_options())
        if unknown:
            raise TypeError(f"FusionEngine got unexpected keyword argument(s) {unknown}")
        name = str(backend).strip().lower()
        if name not in backends.backend_names():
            raise ConfigError(f"backend must be one of {backends.backend_names()}, got {backend!r}")
        options = BackendOptions(
            device=Device.parse(device),
            precision=str(precision).strip().lower(),
            seg_refine=bool(seg_refine),
            num_threads=None if num_threads is None else int(num_threads),
            channels_last=channels_last,
            extra=backend_options,
        )
        if name == backends.AUTO:
            dev = options.device.type
            on_cpu = dev == "cpu" or (dev == "auto" and not backends.cuda_available())
            name = backends.resolve_backend(name, on_cpu, options.precision, str(checkpoint or ""))
        kind = backends.backend_class(name)
        options = kind.check(options)
        self._homography: np.ndarray | None = None
        self.homography = homography
        if num_threads is not None and int(num_threads) < 1:
            raise ConfigError(f"num_threads must be >= 1, got {num_threads}")
        if checkpoint is None:
            checkpoint = default_checkpoint_path()
            if checkpoint is None:
                raise CheckpointError(
                    f"no checkpoint given and no shipped model ({DEFAULT_MODEL_NAME}) found in the ROS share "
                    "dir, <prefix>/share/sccosf_ros/models or the source checkout's models/: pass a "
                    "checkpoint path (train one with sccosf-train)"
                )
        self._checkpoint = Path(checkpoint)
        self._backend: Backend | None = kind.open(self._checkpoint, options)
        self._backend_name = name
        self._device = self._backend.device
        self._precision = self._backend.precision
        self._meta: CheckpointMeta = self._backend.meta
        self._seg_refine = self._backend.seg_refine
        self._palette = np.array(self._meta.palette, dtype=np.uint8).reshape(-1, 3)
        self._palette.setflags(write=False)

    # ----------------------------------------------------------------------------------------- properties
    @property
    def meta(self) -> CheckpointMeta:
        return self._meta

    @property
    def backend(self) -> str:
        """The backend's name (what ``auto`` resolved to)."""
        return self._backend_name

    def describe(self) -> dict[str, Any]:
        """Backend, device, precision and what else the backend reports (e.g. execution providers, files)."""
        return {**self._active().describe(), "precision": self._precision}

    @property
    def seg_refine(self) -> bool:
        """Whether the segmentation refinement runs (the model has one and it was not switched off)."""
        return self._seg_refine

    @property
    def checkpoint(self) -> Path:
        return self._checkpoint

    @property
    def class_names(self) -> list[str]:
        return list(self._meta.class_names)

    @property
    def num_classes(self) -> int:
        return self._meta.num_classes

    @property
    def palette(self) -> np.ndarray:
        """(K, 3) uint8 RGB, read-only; ready for ``imaging.colorize_mask``."""
        return self._palette

    @property
    def device(self) -> Any:
        """Where the network runs, as the backend says (``.type`` 'cpu' or 'cuda', ``.index``, ``str()``)."""
        return self._device

    @property
    def precision(self) -> str:
        return self._precision

    @property
    def homography(self) -> np.ndarray | None:
        return None if self._homography is None else self._homography.copy()

    @homography.setter
    def homography(self, value: np.ndarray | None) -> None:
        self._homography = None if value is None else validate_homography(value)

    @property
    def model(self) -> Any:
        """The PyTorch network, for backends that run one."""
        backend = self._active()
        model = getattr(backend, "model", None)
        if model is None:
            raise RuntimeError(
                f"FusionEngine with backend {backend.name!r} has no in-process network (.model)"
            )
        return model

    # ------------------------------------------------------------------------------------------ inference
    def _active(self) -> Backend:
        if self._backend is None:
            raise RuntimeError("FusionEngine is closed")
        return self._backend

    def _prepare(self, rgb: object, thermal: object) -> tuple[np.ndarray, np.ndarray]:
        rgb_a = _check_rgb(rgb)
        th = _check_thermal(thermal)
        if self._homography is not None or th.shape != rgb_a.shape[:2]:
            th = warp_thermal_to_rgb(th, rgb_a.shape, self._homography)
        return rgb_a, th

    def _run(
        self, rgbs: Sequence[np.ndarray], thermals: Sequence[np.ndarray], return_probs: bool, t0: float
    ) -> list[FusionResult]:
        backend = self._active()
        rgb_np = rgbs[0][None] if len(rgbs) == 1 else np.stack(rgbs)
        th_np = thermals[0][None] if len(thermals) == 1 else np.stack(thermals)
        out: BackendOutput = backend.run(rgb_np, th_np, return_probs)
        t3 = time.perf_counter()
        n = len(rgbs)
        timings = {
            "preprocess": (out.t_inputs_ready - t0) * 1e3 / n,
            "inference": (out.t_forward_done - out.t_inputs_ready) * 1e3 / n,
            "postprocess": (t3 - out.t_forward_done) * 1e3 / n,
        }
        return [
            FusionResult(
                fused=out.fused[i],
                mask=out.mask[i],
                probs=None if out.probs is None else out.probs[i],
                timings=dict(timings),
            )
            for i in range(n)
        ]

    def infer(self, rgb: np.ndarray, thermal: np.ndarray, return_probs: bool = False) -> FusionResult:
        """Fuse one pair: ``rgb`` (H, W, 3) uint8 RGB; ``thermal`` (h, w) uint8 or float [0, 1], any size."""
        t0 = time.perf_counter()
        rgb_a, th = self._prepare(rgb, thermal)
        return self._run([rgb_a], [th], return_probs, t0)[0]

    def infer_batch(
        self,
        pairs: Sequence[tuple[np.ndarray, np.ndarray]],
        return_probs: bool = False,
        max_batch: int = 8,
    ) -> list[FusionResult]:
        """Fuse many pairs; pairs whose RGB size and thermal dtype match run as one batch. Order is kept."""
        if max_batch < 1:
            raise ConfigError(f"max_batch must be >= 1, got {max_batch}")
        results: list[FusionResult | None] = [None] * len(pairs)
        groups: dict[tuple[tuple[int, ...], np.dtype], list[int]] = {}
        prepared: list[tuple[np.ndarray, np.ndarray]] = []
        prep_s: list[float] = []
        for i, pair in enumerate(pairs):  # validate everything before spending compute
            t = time.perf_counter()
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise InputError(f"pair {i} must be an (rgb, thermal) tuple")
            try:
                rgb_a, th = self._prepare(*pair)
            except ValueError as exc:
                raise InputError(f"pair {i}: {exc}") from None
            prepared.append((rgb_a, th))
            prep_s.append(time.perf_counter() - t)
            groups.setdefault((rgb_a.shape, th.dtype), []).append(i)
        for idx in groups.values():
            for start in range(0, len(idx), max_batch):
                chunk = idx[start : start + max_batch]
                # Back-date the start so the chunk's preprocess time includes its CPU-side preparation.
                t0 = time.perf_counter() - sum(prep_s[i] for i in chunk)
                rgbs = [prepared[i][0] for i in chunk]
                out = self._run(rgbs, [prepared[i][1] for i in chunk], return_probs, t0)
                for i, r in zip(chunk, out, strict=True):
                    results[i] = r
        return [r for r in results if r is not None]

    def warmup(self, height: int = 480, width: int = 640, runs: int = 2) -> float:
        """Run ``runs`` dummy frames (kernel selection, allocator, lazy init); returns the last call's ms."""
        rgb = np.zeros((height, width, 3), np.uint8)
        th = np.zeros((height, width), np.uint8)
        ms = 0.0
        for _ in range(max(runs, 1)):
            t = time.perf_counter()
            self.infer(rgb, th)
            ms = (time.perf_counter() - t) * 1e3
        return ms

    # ------------------------------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Drop the model (and on CUDA return cached memory), e.g. when a lifecycle node deactivates."""
        if self._backend is None:
            return
        self._backend.close()
        self._backend = None

    @property
    def closed(self) -> bool:
        return self._backend is None

    def __enter__(self) -> FusionEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
