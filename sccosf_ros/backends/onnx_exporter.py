"""Export an SC-CoSF checkpoint to ONNX, check it against PyTorch with ONNX Runtime, cache exports.

What the file computes is :class:`sccosf_ros.backends.torch_backend.EngineGraph`: uint8 frames in; the
fused uint8 image, the uint8 class mask and the float logits out, i.e. the network plus the engine's
on-device pre/post-processing, traced from the same functions the torch backend runs. Colour is planar,
(B, 3, H, W), at both ends of the graph (why: EngineGraph's docstring).

Choices (measured or tried on the 2-core development machine, torch 2.13, onnxruntime 1.30; see
``docs/onnx.md``):

* **Exporter**: ``torch.export`` (non-strict) and the dynamo ONNX exporter (onnxscript), **opset 18** (the
  first with ``Resize(antialias=1)``, which the encoder's antialiased downsampling needs).
* **Selective scan**: the pure-PyTorch ``chunked`` form, forced with :func:`sccosf_ros.scan.forced_backend`
  whatever ``SCCOSF_SCAN_BACKEND`` says (``triton`` and ``compile`` do not trace; ``sequential`` would
  unroll into one node per token).
* **einsum decomposed before conversion**: exported as ONNX ``Einsum``, the scan's six einsums took 85 of
  155 ms per 480×640 forward in ONNX Runtime's CPU kernel; decomposed into MatMul/Transpose (torch's own
  decomposition, nothing else decomposed) the whole graph ran in 96 ms against 158 ms.
* **Fixed frame size**: the network's internal size is ``round(H·s/32)·32`` (Python rounding) and Sc-LRB's
  adaptive pooling is specialised to the traced size; an export with symbolic H, W was tried and gave
  out-of-range Gather indices at any other size. So H×W is fixed per file; the engine refuses other sizes
  with a clear error, and in cache mode exports once per size. The **batch** may be dynamic
  (``dynamic_batch=True``, exports take about twice as long) or fixed at 1 (the default).
* **seg_refine is fixed per file** (a Python branch in the forward): one file with the refinement, one
  without (ONNX Runtime runs every node of a graph even when an output is not fetched, so one file with
  both masks would always pay for the refinement).

The file's metadata, the export cache and its fingerprints: :mod:`.onnx_format`.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from sccosf_ros import __version__
from sccosf_ros.backends.onnx_format import DEFAULT_OPSET, ExportInfo, file_sha256, metadata_entries
from sccosf_ros.checkpoint import CheckpointMeta
from sccosf_ros.errors import BackendUnavailableError, ConfigError, SccosfError

MAX_FUSED_DIFF = 2
"""Export fails when ONNX Runtime's fused image differs from PyTorch's by more than this (grey levels)."""
MIN_MASK_AGREEMENT = 0.99
"""... or when fewer mask pixels than this share agree (near-ties in random-weight models flip a few)."""

log = logging.getLogger(__name__)


class ExportCheckError(SccosfError, RuntimeError):
    """The exported graph does not reproduce PyTorch's outputs within tolerance."""


def _require_exporter() -> None:
    missing = []
    for module in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise BackendUnavailableError(
            f"exporting to ONNX needs {', '.join(missing)} (not installed): pip install 'sccosf_ros[onnx]' "
            "(or pip install onnx onnxscript onnxruntime)"
        )


def check_frames(height: int, width: int, batch: int = 1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded image-like frames for the export check: uint8 RGB (B, H, W, 3), float32 thermal (B, H, W).

    Smooth gradients, a few flat rectangles (edges) and mild noise: pure noise would be a poor test of a
    network trained on images, and real pairs are not part of the package. Small by design.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = np.empty((batch, height, width, 4), np.float32)
    for frame in frames:
        a, b = rng.uniform(-0.25, 0.25, (2, 4)).astype(np.float32)
        frame[:] = 0.5 + a * xx[..., None] / width + b * yy[..., None] / height
        for _ in range(6):
            y0, x0 = rng.integers(0, height), rng.integers(0, width)
            y1, x1 = y0 + rng.integers(2, max(3, height // 3)), x0 + rng.integers(2, max(3, width // 3))
            frame[y0:y1, x0:x1] += rng.uniform(-0.4, 0.4, 4).astype(np.float32)
        frame += rng.normal(0, 0.03, frame.shape).astype(np.float32)
    frames = np.clip(frames, 0.0, 1.0)
    return np.round(frames[..., :3] * 255).astype(np.uint8), np.ascontiguousarray(frames[..., 3])


def to_planar(rgb: np.ndarray) -> np.ndarray:
    """(B, H, W, 3) → (B, 3, H, W), contiguous: the graph's colour layout (see EngineGraph)."""
    return np.ascontiguousarray(rgb.transpose(0, 3, 1, 2))


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter logs a warning per torchvision operator it cannot find (torchvision is not used) and
    torch.export a FutureWarning about its own pytree internals: noise for our users."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module="copyreg")
            yield
    finally:
        logger.setLevel(level)


def _to_onnx(graph: Any, rgb: Any, thermal: Any, dynamic_batch: bool, opset: int) -> Any:
    """torch.export → einsum decomposed → ONNX ModelProto."""
    import torch

    from sccosf_ros import scan
    from sccosf_ros.backends.torch_backend import EngineGraph

    dynamic_shapes = None
    if dynamic_batch:
        b = torch.export.Dim("batch", min=1, max=256)
        dynamic_shapes = {"rgb": {0: b}, "thermal": {0: b}}
    with scan.forced_backend("chunked"), torch.no_grad(), _quiet_exporter():
        ep = torch.export.export(graph, (rgb, thermal), dynamic_shapes=dynamic_shapes, strict=False)
        table = torch.export.default_decompositions()
        for op in list(table.keys()):
            if op != torch.ops.aten.einsum.default:
                del table[op]
        ep = ep.run_decompositions(table)
        program = torch.onnx.export(
            ep,
            (rgb, thermal),
            dynamo=True,
            opset_version=opset,
            input_names=list(EngineGraph.INPUT_NAMES),
            output_names=list(EngineGraph.OUTPUT_NAMES),
            dynamic_shapes=dynamic_shapes,
            external_data=False,
            optimize=True,
            verbose=False,
        )
    return program.model_proto


def layout_for_onnxruntime_(model: Any) -> None:
    """Inference-only changes with the same outputs that suit ONNX Runtime's CPU kernels (in place).

    The segmentation refinement's fuse convolutions get zero channels up to a multiple of 16, the
    block of ONNX Runtime's NCHWc kernels (8 on AVX2, 16 on AVX-512): 41 → 48 channels, bit-identical
    outputs in PyTorch, and 23 ms → 5 ms for those two convolutions at 480×640 (docs/onnx.md).
    """
    refine = getattr(getattr(model, "icrm", None), "refine", None)
    if refine is not None:
        refine.pad_fuse_channels_(16)


def compare_with_torch(
    graph: Any, model_bytes: bytes, rgb: np.ndarray, thermal: np.ndarray
) -> dict[str, Any]:
    """Run the ONNX graph with ONNX Runtime (CPU) and the same graph in PyTorch on one batch; the diffs."""
    import onnxruntime as ort
    import torch

    so = ort.SessionOptions()
    so.log_severity_level = 3
    session = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    fused_o, mask_o, logits_o = session.run(None, {"rgb": rgb, "thermal": thermal})
    with torch.inference_mode():
        fused_t, mask_t, logits_t = (
            t.numpy() for t in graph(torch.from_numpy(rgb), torch.from_numpy(thermal))
        )
    return {
        "frames": int(rgb.shape[0]),
        "size": [int(rgb.shape[2]), int(rgb.shape[3])],
        "inputs": "sccosf_ros.backends.onnx_exporter.check_frames (synthetic, seeded)",
        "fused_max_diff": int(np.abs(fused_o.astype(np.int16) - fused_t.astype(np.int16)).max()),
        "fused_mean_abs_diff": float(np.abs(fused_o.astype(np.float32) - fused_t.astype(np.float32)).mean()),
        "mask_agreement": float((mask_o == mask_t).mean()),
        "logits_max_abs_diff": float(np.abs(logits_o - logits_t).max()),
        "finite": bool(np.isfinite(logits_o).all()),
    }


def export_onnx(
    checkpoint: str | Path,
    out: str | Path,
    height: int = 480,
    width: int = 640,
    seg_refine: bool = True,
    dynamic_batch: bool = False,
    opset: int = DEFAULT_OPSET,
    check: bool = True,
) -> ExportInfo:
    """Export ``checkpoint`` (a .safetensors SC-CoSF checkpoint) to ``out`` for ``height``×``width`` frames.

    With ``check`` (the default) the graph is run by ONNX Runtime on CPU against PyTorch on synthetic
    frames of that size before the file is written; beyond :data:`MAX_FUSED_DIFF` grey levels or below
    :data:`MIN_MASK_AGREEMENT` it raises :class:`ExportCheckError` and writes nothing. The file is written
    atomically (temp file + rename), so a cache never holds half an export.
    """
    _require_exporter()
    import torch

    from sccosf_ros.backends.torch_backend import EngineGraph, has_refine, load_inference_model

    if height < 1 or width < 1:
        raise ConfigError(f"frame size must be positive, got {height}x{width}")
    t0 = time.perf_counter()
    checkpoint = Path(checkpoint)
    model, meta = load_inference_model(checkpoint)
    layout_for_onnxruntime_(model)
    refine = bool(seg_refine) and has_refine(model)
    graph = EngineGraph(model, refine).eval()
    batch = 2 if dynamic_batch else 1  # trace a batch of 2 so that the exporter cannot specialise on 1
    rgb_np, th_np = check_frames(height, width, batch)
    rgb_np = to_planar(rgb_np)
    proto = _to_onnx(graph, torch.from_numpy(rgb_np), torch.from_numpy(th_np), dynamic_batch, opset)
    info = ExportInfo(
        height=int(height),
        width=int(width),
        batch=None if dynamic_batch else 1,
        seg_refine=refine,
        has_refine=has_refine(model),
        opset=opset,
        source=checkpoint.name,
        source_sha256=file_sha256(checkpoint),
        torch_version=torch.__version__,
    )
    if check:
        info.check = compare_with_torch(graph, proto.SerializeToString(), rgb_np, th_np)
        c = info.check
        if (
            not c["finite"]
            or c["fused_max_diff"] > MAX_FUSED_DIFF
            or c["mask_agreement"] < MIN_MASK_AGREEMENT
        ):
            raise ExportCheckError(
                f"{checkpoint}: the exported graph does not reproduce PyTorch (fused max diff "
                f"{c['fused_max_diff']} grey levels, mask agreement {c['mask_agreement']:.4%}, logits "
                f"max diff {c['logits_max_abs_diff']:.3g}); nothing written"
            )
    info.export_s = round(time.perf_counter() - t0, 2)
    finish_model(proto, meta, info)
    _write_atomic(Path(out), proto.SerializeToString())
    return info


def finish_model(proto: Any, meta: CheckpointMeta, info: ExportInfo) -> None:
    """Set the metadata sccosf_ros reads back (class names, palette, the export record), producer and doc."""
    entries = metadata_entries(meta, info)
    keep = [p for p in proto.metadata_props if p.key not in entries]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in entries.items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value
    proto.producer_name = "sccosf_ros"
    proto.producer_version = __version__
    proto.doc_string = (
        "SC-CoSF thermal/RGB fusion + segmentation (sccosf_ros). Inputs: rgb (B,3,H,W) uint8 RGB planar, "
        "thermal (B,H,W) float32 in [0,1]. Outputs: fused (B,3,H,W) uint8 planar, mask (B,H,W) uint8 class "
        "ids, seg_logits (B,K,H,W) float32. Class names and palette: metadata 'sccosf'; export details: "
        "'sccosf_onnx'."
    )


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
