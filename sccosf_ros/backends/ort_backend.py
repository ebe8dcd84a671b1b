"""The ONNX Runtime backend: the exported graph (:mod:`.onnx_exporter`) on TensorRT, CUDA or CPU.

Where the model comes from (``checkpoint`` of :class:`~sccosf_ros.engine.FusionEngine`):

* an ``.onnx`` file written by ``sccosf-export --onnx``: used as is. Its metadata carries the class names,
  palette, the frame size it was exported for and its precision (fp32, or int8 for a file quantised with
  ``--int8``: the file decides, ``precision`` int8 refuses an fp32 file); frames of another size are
  refused with a clear error.
  Running it needs only onnxruntime and NumPy (and this package), not the exporter nor torch.
* anything else (a ``.safetensors`` checkpoint, or none: the shipped model): exported on first use of each
  frame size into a cache (``$SCCOSF_ONNX_CACHE``, default ``~/.cache/sccosf_ros/onnx``), keyed by the
  checkpoint's content, the size, the refinement switch and a fingerprint of the network code, and reused
  from then on. The first frame of a new size waits for the export (20-40 s on 2 cores); needs torch,
  onnx and onnxscript.

Execution providers, in order: TensorRT and CUDA where this onnxruntime build has them (device ``auto`` or
``cuda[:N]``), CPU always last. ``$SCCOSF_ORT_PROVIDERS`` (comma-separated provider names) or the engine's
``ort_providers`` argument replaces that list.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sccosf_ros.backends import BackendOptions, BackendOutput, Device, check_precision, softmax
from sccosf_ros.backends.onnx_format import (
    PRECISIONS as GRAPH_PRECISIONS,
)
from sccosf_ros.backends.onnx_format import (
    cached_export_path,
    file_sha256,
    onnx_cache_dir,
    read_onnx_metadata,
)
from sccosf_ros.errors import BackendUnavailableError, CheckpointError, ConfigError, InputError

PROVIDERS_ENV = "SCCOSF_ORT_PROVIDERS"
TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"

log = logging.getLogger(__name__)


def import_ort() -> Any:
    """onnxruntime, or a :class:`BackendUnavailableError` that says how to install it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailableError(
            f"backend 'onnxruntime' needs the onnxruntime package, which is not installed ({exc}): "
            "pip install 'sccosf_ros[onnx]' (CPU), or onnxruntime-gpu for CUDA/TensorRT; "
            "or use backend 'torch'"
        ) from None
    return onnxruntime


def select_providers(
    device: str, available: Sequence[str], requested: Sequence[str] | None = None
) -> list[str]:
    """Execution providers for ``device`` ('auto', 'cpu', 'cuda', 'cuda:N'), CPU always last."""
    if requested:
        unknown = [p for p in requested if p not in available]
        if unknown:
            raise BackendUnavailableError(
                f"ONNX Runtime execution provider(s) {', '.join(unknown)} not in this onnxruntime build "
                f"(available: {', '.join(available)})"
            )
        return list(dict.fromkeys([*requested, CPU]))
    if device == "cpu":
        return [CPU]
    gpu = [p for p in (TRT, CUDA) if p in available]
    if device.startswith("cuda") and CUDA not in available:
        raise ConfigError(
            f"device {device!r} requested but this onnxruntime has no CUDAExecutionProvider (available: "
            f"{', '.join(available)}): install onnxruntime-gpu, or use device 'cpu'"
        )
    return [*gpu, CPU]


def _provider_options(
    providers: Sequence[str], device_id: int, cache_dir: Path, extra: dict[str, dict[str, Any]] | None = None
) -> list[dict[str, str]]:
    """Each provider's options: the GPU device, TensorRT's engine and timing caches on disk beside the
    ONNX cache (so a restart loads the built engine), and ``extra`` per provider name on top (e.g.
    ``{"TensorrtExecutionProvider": {"trt_fp16_enable": True}}`` for TensorRT's fp16 engine)."""
    out = []
    for p in providers:
        if p == TRT:
            out.append(
                {
                    "device_id": str(device_id),
                    "trt_engine_cache_enable": "True",
                    "trt_engine_cache_path": str(cache_dir / "trt"),
                    "trt_timing_cache_enable": "True",
                    "trt_timing_cache_path": str(cache_dir / "trt"),
                }
            )
        elif p == CUDA:
            out.append({"device_id": str(device_id)})
        else:
            out.append({})
    for options, p in zip(out, providers, strict=True):
        options.update({k: str(v) for k, v in (extra or {}).get(p, {}).items()})
    return out


SESSION_DEFAULTS: dict[str, Any] = {"opt_level": "all", "spinning": False, "parallel": False}
OPT_LEVELS = ("all", "extended", "basic", "disabled")


def session_options(num_threads: int | None, **config: Any) -> Any:
    """ONNX Runtime session options as the engine uses them; ``config`` overrides :data:`SESSION_DEFAULTS`
    (the benchmark compares them).

    ``num_threads``: intra-op threads (None: onnxruntime's default, one per physical core), like torch's
    ``set_num_threads``. ``opt_level`` all (with the NCHWc layout transforms) / extended / basic /
    disabled. ``parallel`` False: sequential execution (the graph is mostly a chain). ``spinning`` False:
    the node shares its cores with message conversion and DDS, and on a busy machine spinning pool threads
    take CPU from everything else (see docs/onnx.md for what was measured).
    """
    ort = import_ort()
    unknown = sorted(set(config) - set(SESSION_DEFAULTS))
    if unknown:
        raise ConfigError(
            f"unknown ONNX Runtime session option(s) {unknown}; known: {sorted(SESSION_DEFAULTS)}"
        )
    cfg = {**SESSION_DEFAULTS, **config}
    if cfg["opt_level"] not in OPT_LEVELS:
        raise ConfigError(f"opt_level must be one of {OPT_LEVELS}, got {cfg['opt_level']!r}")
    so = ort.SessionOptions()
    levels = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }
    so.graph_optimization_level = levels[cfg["opt_level"]]
    so.execution_mode = (
        ort.ExecutionMode.ORT_PARALLEL if cfg["parallel"] else ort.ExecutionMode.ORT_SEQUENTIAL
    )
    so.intra_op_num_threads = int(num_threads or 0)
    so.inter_op_num_threads = 2 if cfg["parallel"] else 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if cfg["spinning"] else "0")
    so.log_severity_level = 3  # warnings about constant folding of CastLike are noise
    return so


class OrtBackend:
    """Runs exported SC-CoSF graphs with ONNX Runtime; see the module docstring for how it finds them."""

    name = "onnxruntime"
    PRECISIONS = GRAPH_PRECISIONS  # what an exported graph computes in

    @classmethod
    def check(cls, options: BackendOptions) -> BackendOptions:
        """fp32 (the exported graph) or int8 (an INT8 file from ``sccosf-export --int8``)."""
        precision = check_precision(options.precision)
        if precision not in cls.PRECISIONS:
            raise ConfigError(
                f"precision {precision!r} is not available with backend 'onnxruntime' (it runs fp32 graphs "
                "and INT8 files): use precision 'fp32' or 'int8', or backend 'torch' for fp16/bf16"
            )
        return dataclasses.replace(options, precision=precision)

    @classmethod
    def open(cls, checkpoint: Path, options: BackendOptions) -> OrtBackend:
        x = options.extra
        backend = cls(
            checkpoint,
            str(options.device),
            options.seg_refine,
            options.num_threads,
            x.get("ort_providers"),
            x.get("onnx_cache"),
            x.get("ort_session"),
            options.precision,
            x.get("ort_provider_options"),
        )
        on_gpu = backend.session_providers[0] != CPU  # what runs (a file's session exists already)
        gpu = options.device if options.device.type == "cuda" else Device("cuda")
        backend.device = gpu if on_gpu else Device("cpu")
        return backend

    def __init__(
        self,
        checkpoint: str | Path,
        device: str = "auto",
        seg_refine: bool = True,
        num_threads: int | None = None,
        providers: Sequence[str] | None = None,
        cache_dir: str | Path | None = None,
        session_config: dict[str, Any] | None = None,
        precision: str = "fp32",
        provider_options: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self._ort = import_ort()
        self._provider_extra = dict(provider_options or {})
        self.device = Device.parse(device)
        self.checkpoint = Path(checkpoint)
        self._cache_dir = onnx_cache_dir(cache_dir)
        self._device_id = int(device.split(":")[1]) if device.startswith("cuda:") else 0
        env = [p.strip() for p in os.environ.get(PROVIDERS_ENV, "").split(",") if p.strip()]
        self.providers = select_providers(device, self._ort.get_available_providers(), providers or env)
        self._explicit_cuda = device.startswith("cuda")
        self._threads = num_threads
        self._session_config = dict(session_config or {})
        session_options(num_threads, **self._session_config)  # unknown options fail here, not per size
        self._sessions: dict[tuple[int, int], Any] = {}
        self._files: dict[tuple[int, int], Path] = {}
        self._failed: dict[tuple[int, int], str] = {}  # cache mode: sizes whose export failed, and why
        self._lock = threading.Lock()
        self._closed = False
        if not self.checkpoint.exists():
            raise CheckpointError(f"{self.checkpoint}: checkpoint file not found")
        if self.checkpoint.suffix.lower() == ".onnx":
            self.mode = "file"
            session = self._open(self.checkpoint)
            meta_map = dict(session.get_modelmeta().custom_metadata_map)
            self.meta, info = read_onnx_metadata(meta_map, str(self.checkpoint))
            self.export_info = info
            self.has_refine = bool(info.has_refine)
            wanted = bool(seg_refine) and self.has_refine
            if wanted != bool(info.seg_refine):
                have = "with" if info.seg_refine else "without"
                flag = "" if wanted else " --no-seg-refine"
                raise ConfigError(
                    f"{self.checkpoint} was exported {have} the segmentation refinement, but seg_refine="
                    f"{bool(seg_refine)} was asked for: export another file (sccosf-export --onnx OUT.onnx"
                    f"{flag}) or pass the .safetensors checkpoint (exports are then cached per setting)"
                )
            self.seg_refine = bool(info.seg_refine)
            self.precision = self._file_precision(info.precision, precision)
            self._sessions[(info.height, info.width)] = session
            self._files[(info.height, info.width)] = self.checkpoint
        else:
            from sccosf_ros.backends.torch_backend import has_refine, load_inference_model

            if precision == "int8":
                raise ConfigError(
                    f"precision 'int8' needs an INT8 .onnx file, and {self.checkpoint.name} is not one (the "
                    "export cache makes fp32 graphs only): sccosf-export --onnx OUT.onnx --int8 "
                    "--calibration DIR (pairs from your cameras), then use OUT.onnx as the checkpoint"
                )
            self.mode = "cache"
            self.precision = "fp32"
            self.export_info = None
            # Loaded now (and dropped), so a bad checkpoint fails here as it does with the torch backend.
            model, self.meta = load_inference_model(self.checkpoint)
            self.has_refine = has_refine(model)
            del model
            self.seg_refine = bool(seg_refine) and self.has_refine
            self._sha256 = file_sha256(self.checkpoint)

    def _file_precision(self, file_precision: str, requested: str) -> str:
        """The file decides (an INT8 file runs as INT8 under the default fp32); int8 asked of an fp32 file
        is an error, so that a deployment that wants the faster model knows when it does not get it."""
        if requested == "int8" and file_precision != "int8":
            raise ConfigError(
                f"precision 'int8' was asked for, but {self.checkpoint} is an {file_precision} graph: make "
                "an INT8 one with sccosf-export --onnx OUT.onnx --int8 --calibration DIR, or use precision "
                "'fp32'"
            )
        if file_precision != requested:
            log.info("%s is an %s graph: running it as %s", self.checkpoint, file_precision, file_precision)
        return file_precision

    # ------------------------------------------------------------------------------------------ sessions
    def _open(self, path: Path | bytes) -> Any:
        so = session_options(self._threads, **self._session_config)
        options = _provider_options(self.providers, self._device_id, self._cache_dir, self._provider_extra)
        try:
            session = self._ort.InferenceSession(
                str(path) if isinstance(path, Path) else path,
                so,
                providers=self.providers,
                provider_options=options,
            )
        except Exception as exc:  # InvalidProtobuf, NoSuchFile, Fail: all mean "unusable model file"
            raise CheckpointError(
                f"{path}: not a loadable ONNX model ({type(exc).__name__}: {exc})"
            ) from None
        if self._explicit_cuda and CUDA not in session.get_providers() and TRT not in session.get_providers():
            raise BackendUnavailableError(
                f"device 'cuda' requested but ONNX Runtime could not start a GPU provider (session runs on "
                f"{session.get_providers()}); check the CUDA/cuDNN libraries onnxruntime-gpu needs"
            )
        return session

    def _session_for(self, height: int, width: int) -> Any:
        key = (height, width)
        session = self._sessions.get(key)
        if session is not None:
            return session
        if self.mode == "file":
            ((h, w),) = self._sessions
            raise InputError(
                f"frame size {height}x{width} does not match the ONNX model {self.checkpoint.name}, exported "
                f"for {h}x{w}: export one for this size (sccosf-export --onnx OUT.onnx --size {height} "
                f"{width}) or pass the .safetensors checkpoint (exports are then cached per size)"
            )
        with self._lock:
            failed = self._failed.get(key)
            if failed is not None:  # an export takes ~20 s: every later frame of the size must not retry it
                raise BackendUnavailableError(
                    f"no ONNX graph for {height}x{width} frames: its export failed ({failed}); not tried "
                    "again until the engine is restarted"
                )
            if key not in self._sessions:
                try:
                    path = self._cached_export(height, width)
                    self._sessions[key] = self._open(path)
                except Exception as exc:
                    self._failed[key] = f"{type(exc).__name__}: {exc}"
                    raise
                self._files[key] = path
        return self._sessions[key]

    def _cached_export(self, height: int, width: int) -> Path:
        from sccosf_ros.backends.onnx_exporter import export_onnx

        path = cached_export_path(
            self.checkpoint, height, width, self.seg_refine, self._cache_dir, sha256=self._sha256
        )
        if not path.is_file():
            log.warning(
                "exporting %s to ONNX for %dx%d frames into %s (once per size)",
                self.checkpoint,
                height,
                width,
                path,
            )
            t = time.perf_counter()
            export_onnx(self.checkpoint, path, height, width, seg_refine=self.seg_refine)
            log.warning("ONNX export done in %.1f s", time.perf_counter() - t)
        return path

    def prepare(self, height: int, width: int) -> Path:
        """Make sure a session for ``height``×``width`` exists (exporting in cache mode); its model file."""
        self._session_for(height, width)
        return self._files[(height, width)]

    # ----------------------------------------------------------------------------------------- inference
    def run(self, rgb: np.ndarray, thermal: np.ndarray, want_probs: bool) -> BackendOutput:
        if self._closed:
            raise RuntimeError("FusionEngine is closed")
        session = self._session_for(int(rgb.shape[1]), int(rgb.shape[2]))
        planar = np.ascontiguousarray(rgb.transpose(0, 3, 1, 2))  # the graph's colour layout (EngineGraph)
        # uint8 / 255 in float32 is bit-identical to the torch backend's on-device division (checked in
        # test_onnx.py); float frames are clamped inside the graph as in the torch backend.
        if thermal.dtype == np.uint8:
            th = thermal.astype(np.float32) / np.float32(255.0)
        else:
            th = np.ascontiguousarray(thermal, dtype=np.float32)
        names = ["fused", "mask", "seg_logits"] if want_probs else ["fused", "mask"]
        fixed_batch = session.get_inputs()[0].shape[0]
        t1 = time.perf_counter()
        if isinstance(fixed_batch, int) and fixed_batch != len(planar):  # a batch-1 file: frame by frame
            parts = [
                session.run(names, {"rgb": planar[i : i + 1], "thermal": th[i : i + 1]})
                for i in range(len(planar))
            ]
            outs = [np.concatenate([p[j] for p in parts]) for j in range(len(names))]
        else:
            outs = session.run(names, {"rgb": planar, "thermal": th})
        t2 = time.perf_counter()
        fused = np.stack([cv2.merge(list(f)) for f in outs[0]])  # planar -> (H, W, 3): 0.05 ms at 480x640
        probs = softmax(outs[2]) if want_probs else None
        return BackendOutput(fused, outs[1], probs, t1, t2)

    def describe(self) -> dict[str, object]:
        providers = next(iter(self._sessions.values())).get_providers() if self._sessions else self.providers
        return {
            "backend": self.name,
            "providers": list(providers),
            "model": self.mode,
            "onnx_files": sorted(str(p) for p in self._files.values()),
            "graph_precision": self.precision,
        }

    @property
    def session_providers(self) -> list[str]:
        """Providers the first open session actually runs on (ORT drops those that fail to start)."""
        if not self._sessions:
            return list(self.providers)
        return list(next(iter(self._sessions.values())).get_providers())

    def close(self) -> None:
        self._closed = True
        self._sessions.clear()
