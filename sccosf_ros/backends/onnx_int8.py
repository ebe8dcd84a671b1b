"""INT8 static quantisation of an exported SC-CoSF graph for ONNX Runtime, calibrated on real pairs.

``sccosf-export --onnx OUT.onnx --int8 --calibration DIR`` (:func:`export_int8`) exports the float graph
(:func:`.onnx_exporter.export_onnx`, checked against PyTorch), runs it on real image pairs from ``DIR`` to
record the range of every activation it will quantise, and writes a QDQ graph (QuantizeLinear /
DequantizeLinear around the quantised operators, which ONNX Runtime fuses into its integer kernels) with:

* **per-channel INT8 weights** (symmetric) and **uint8 activations** (asymmetric, per tensor), the
  combination ONNX Runtime's x86 kernels run (``onnxruntime.quantization.quantize_static``);
* only the operators of :data:`DEFAULT_RECIPE` quantised: the encoder's convolutions, ReLU6 and residual
  additions from its third block on, where the sensitivity sweep (``python -m sccosf_train.int8_quality
  sweep``) measured a small error and the profile a gain; everything else stays float: the selective
  scan, the attention and its softmax, the sigmoid gates, every resize, the ReAW reconstruction and colour
  arithmetic, the last layers of both heads (docs/onnx.md, "INT8").

Calibration pairs come from ``DIR/vi`` + ``DIR/ir`` (the MSRS layout) or ``DIR/rgb`` + ``DIR/thermal``,
matched by file stem. Names that have an image in ``DIR/seafusion`` are the MSRS validation pairs and are
never used; ``exclude`` names more (a file of names, one a line). The file's metadata records that it is
INT8, the recipe, and the calibration's provenance (folder, pair names, what was excluded), and the
check of the INT8 graph against the float one on pairs of ``DIR`` that calibration did not use.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sccosf_ros.backends.onnx_format import (
    ExportInfo,
    file_sha256,
    module_scopes,
    read_onnx_metadata,
)
from sccosf_ros.errors import BackendUnavailableError, ConfigError
from sccosf_ros.image_folders import pair_by_stem, read_rgb, read_thermal, spread

log = logging.getLogger(__name__)

MIN_CALIBRATION_PAIRS = 8
"""Fewer pairs than this cannot show the activation ranges of a camera's scenes (day, night, glare)."""
DEFAULT_CALIBRATION_PAIRS = 32
"""Pairs used by default, spread evenly over the sorted names (more: longer export, same ranges here)."""
CHECK_PAIRS = 4
"""Pairs of the calibration folder, not used for calibration, on which INT8 is compared with float."""
MAX_FUSED_MEAN_DIFF = 2.0
"""The export fails when the INT8 fused image differs from the float one by more than this on average
(grey levels) on the check pairs: the quality bound of docs/onnx.md."""
PERCENTILE, BINS = 99.999, 2048
"""Percentile calibration: ONNX Runtime's defaults (the share of magnitudes kept, histogram bins)."""
VALIDATION_FOLDER = "seafusion"
"""Names with an image here are validation pairs (MSRS layout) and never calibrate."""
LAYOUTS = (("vi", "ir"), ("rgb", "thermal"))


@dataclass(frozen=True)
class Int8Recipe:
    """Which operators become INT8, by operator type and by the module path the exporter records for
    every node (``pkg.torch.onnx.name_scopes``); ``float_scopes`` win over the others.

    A scope ``p`` matches a node whose module path is ``p`` or lies under it (``p.…``); ``p$`` only the
    nodes directly in ``p`` (``model$``: the network's top level: input normalisation, reconstruction).
    """

    op_scopes: tuple[tuple[str, tuple[str, ...]], ...]
    """(operator type, module scopes where it is quantised)."""
    float_scopes: tuple[str, ...] = ()
    calibration: str = "percentile"
    """``percentile`` (99.999 % of the range seen, symmetric histograms: robust to a few outlying
    activations) or ``minmax`` (the whole range seen; ``sccosf-export --calibration-method minmax``). Same
    graph, so the same speed. On the 61 validation pairs (models/README.md) percentile held every tolerance
    and minmax missed one (bike F +0.021 against a bound of 0.02)."""
    reduce_range: bool = False
    """7-bit weights: avoids the int16 saturation of the u8×s8 products on x86 CPUs without VNNI."""
    depthwise: bool = True
    """Quantise depthwise convolutions too. Alone, ONNX Runtime's uint8 depthwise kernel took twice the time
    of its float NCHWc one on an AVX2 CPU (3×3, 96 channels, 128×160; pointwise and dense INT8 were
    1.2–1.7× faster than float), but inside an INT8 chain a float depthwise convolution costs a dequantise
    and a quantise of the widest tensor of the block, which took longer (docs/onnx.md, "INT8")."""

    def scopes_by_op(self) -> dict[str, tuple[str, ...]]:
        """Operator type → every scope it is quantised in (an operator may appear more than once)."""
        out: dict[str, tuple[str, ...]] = {}
        for op, scopes in self.op_scopes:
            out[op] = out.get(op, ()) + tuple(scopes)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "ops": {op: list(scopes) for op, scopes in self.scopes_by_op().items()},
            "float_scopes": list(self.float_scopes),
            "calibration": self.calibration,
            "reduce_range": self.reduce_range,
            "depthwise_convs": "int8" if self.depthwise else "float",
            "weights": "int8, symmetric, per output channel",
            "activations": "uint8, asymmetric, per tensor",
            "format": "QDQ",
        }

    @property
    def op_types(self) -> list[str]:
        return list(self.scopes_by_op())

    def replace(self, **changes: Any) -> Int8Recipe:
        return dataclasses.replace(self, **changes)


_ENCODER = ("model.encoder",)
DEFAULT_RECIPE = Int8Recipe(
    op_scopes=(
        ("Conv", _ENCODER),
        ("Add", _ENCODER),  # the residual additions
        ("Clip", _ENCODER),  # ReLU6, folded into the convolutions' output range
    ),
    float_scopes=(
        # the first two blocks (stride 2, where 8-bit activations meet an image's few grey levels):
        # most of the error of an all-INT8 encoder, little of its time
        "model.encoder.features.0",
        "model.encoder.features.1",
    ),
    depthwise=True,
)
"""INT8: the encoder from block 2 on, one integer chain (convolutions, ReLU6, residual additions) from its
first quantised layer to its four stage outputs. Float: the first two encoder blocks, and everything after
the encoder: Sc-CFM (its attention, softmax and sigmoid gates), the selective scan, the decoders and their
exchanges, both heads and the refinement, every resize, the ReAW reconstruction and the colour arithmetic.
Why (``python -m sccosf_train.int8_quality sweep``; profile: ``benchmarks/profile_onnx.py``; docs/onnx.md):
quantising those parts alone cost more accuracy per millisecond saved, and ONNX Runtime's integer kernels
are faster than its float NCHWc ones only for convolutions."""


def _require_quantizer() -> Any:
    try:
        import onnx
        import onnxruntime.quantization as quantization
    except ImportError as exc:
        raise BackendUnavailableError(
            f"INT8 export needs onnx and onnxruntime (not installed: {exc}): pip install 'sccosf_ros[onnx]'"
        ) from None
    return onnx, quantization


# ---------------------------------------------------------------------------------------- calibration data
@dataclass
class CalibrationSet:
    """Calibration pairs of one folder, and the record of how they were chosen (stored in the file)."""

    folder: Path
    layout: tuple[str, str]
    pairs: list[tuple[str, Path, Path]]
    """(name, rgb file, thermal file) used for calibration."""
    spare: list[tuple[str, Path, Path]]
    """Usable pairs not used for calibration (the export check runs on some of them)."""
    record: dict[str, Any] = field(default_factory=dict)


def _read_names(path: Path) -> set[str]:
    """A names file: one file stem a line, blank lines and # comments ignored (config/msrs_dev_split.txt)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"calibration exclude file {path}: cannot read ({exc.strerror})") from None
    return {Path(s.strip()).stem for s in lines if s.strip() and not s.strip().startswith("#")}


def find_calibration_pairs(
    folder: str | Path, count: int = DEFAULT_CALIBRATION_PAIRS, exclude: str | Path | None = None
) -> CalibrationSet:
    """``count`` pairs of ``folder`` spread evenly over the sorted names, validation pairs left out.

    ConfigError (one line, says what to do) for a folder that is missing, has neither layout, or has fewer
    than :data:`MIN_CALIBRATION_PAIRS` usable pairs.
    """
    root = Path(folder)
    if count < MIN_CALIBRATION_PAIRS:
        raise ConfigError(f"--calibration-pairs must be at least {MIN_CALIBRATION_PAIRS}, got {count}")
    if not root.is_dir():
        raise ConfigError(f"calibration folder {root} does not exist or is not a folder")
    layout = next((lay for lay in LAYOUTS if all((root / d).is_dir() for d in lay)), None)
    if layout is None:
        raise ConfigError(
            f"calibration folder {root} has neither vi/ + ir/ (MSRS layout) nor rgb/ + thermal/ image folders"
        )
    pairs, _, _ = pair_by_stem(root / layout[0], root / layout[1])
    validation = root / VALIDATION_FOLDER
    held = {p.stem for p in validation.iterdir() if p.is_file()} if validation.is_dir() else set()
    excluded = _read_names(Path(exclude)) if exclude else set()
    usable = [p for p in pairs if p[0] not in held and p[0] not in excluded]
    if len(usable) < MIN_CALIBRATION_PAIRS:
        raise ConfigError(
            f"calibration folder {root} has {len(usable)} usable pair(s) ({len(pairs)} paired by name, "
            f"{sum(p[0] in held for p in pairs)} validation pairs with a {VALIDATION_FOLDER}/ output and "
            f"{sum(p[0] in excluded for p in pairs)} excluded left out); INT8 calibration needs at least "
            f"{MIN_CALIBRATION_PAIRS}"
        )
    picks = set(spread(len(usable), count))
    chosen = [p for i, p in enumerate(usable) if i in picks]
    spare = [p for i, p in enumerate(usable) if i not in picks]
    record = {
        "folder": str(root.resolve()),
        "layout": f"{layout[0]}/ + {layout[1]}/",
        "pairs_paired": len(pairs),
        "pairs_usable": len(usable),
        "pairs_used": len(chosen),
        "names": [p[0] for p in chosen],
        "validation_left_out": {
            "rule": f"names with an image in {VALIDATION_FOLDER}/ (the MSRS validation pairs)",
            "count": sum(p[0] in held for p in pairs),
        },
        "excluded_file": None
        if not exclude
        else {"path": str(exclude), "count": sum(p[0] in excluded for p in pairs)},
    }
    return CalibrationSet(root, layout, chosen, spare, record)


def read_pair(rgb_path: Path, thermal_path: Path, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(RGB (H, W, 3) uint8, thermal (H, W) float32 in [0, 1]) at the export size, as the engine feeds them:
    8-bit thermal divided by 255, deeper thermal by its own 1–99 percentile range (``sccosf-fuse``'s
    ``auto``)."""
    import cv2

    from sccosf_ros.imaging import ThermalNormalizer

    rgb = read_rgb(rgb_path)
    th = ThermalNormalizer("auto", smoothing=0.0)(read_thermal(thermal_path))
    if rgb.shape[:2] != (height, width):
        rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    if th.shape != (height, width):
        th = cv2.resize(th, (width, height), interpolation=cv2.INTER_AREA)
    return rgb, np.clip(th, 0.0, 1.0).astype(np.float32)


def graph_feeds(
    pairs: Sequence[tuple[str, Path, Path]], height: int, width: int
) -> Iterator[dict[str, np.ndarray]]:
    """The graph's inputs (planar uint8 RGB, float thermal, batch 1) for each pair."""
    for _, rgb_path, thermal_path in pairs:
        rgb, th = read_pair(rgb_path, thermal_path, height, width)
        yield {"rgb": np.ascontiguousarray(rgb.transpose(2, 0, 1)[None]), "thermal": th[None]}


# ------------------------------------------------------------------------------------------- quantisation
def _in_scope(scopes: Sequence[str], wanted: Sequence[str]) -> bool:
    """Whether a node with module paths ``scopes`` lies in one of ``wanted`` (``p``: p or below it;
    ``p$``: directly in p, not in a submodule)."""
    for w in wanted:
        if w.endswith("$"):
            if scopes and scopes[-1] == w[:-1]:
                return True
        elif any(s == w or s.startswith(w + ".") for s in scopes):
            return True
    return False


def _group(node: Any) -> int:
    return next((int(a.i) for a in node.attribute if a.name == "group"), 1)


def select_nodes(model: Any, recipe: Int8Recipe, scopes_of: dict[str, list[str]]) -> list[str]:
    """Names of the nodes ``recipe`` quantises (``scopes_of``: node name → its module paths)."""
    wanted = recipe.scopes_by_op()
    out = []
    for node in model.graph.node:
        scopes = scopes_of.get(node.name)
        if node.op_type not in wanted or not scopes:
            continue
        if node.op_type == "Conv" and not recipe.depthwise and _group(node) > 1:
            continue
        if _in_scope(scopes, wanted[node.op_type]) and not _in_scope(scopes, recipe.float_scopes):
            out.append(node.name)
    return out


class _Reader:
    """onnxruntime.quantization's CalibrationDataReader over a list of feeds (read lazily)."""

    def __init__(self, pairs: Sequence[tuple[str, Path, Path]], height: int, width: int) -> None:
        self._pairs, self._size = list(pairs), (height, width)
        self._it: Iterator[dict[str, np.ndarray]] | None = None

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._it is None:
            self._it = graph_feeds(self._pairs, *self._size)
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None

    def __len__(self) -> int:
        return len(self._pairs)


def prepare_for_quantization(fp32_path: Path, out: Path) -> dict[str, list[str]]:
    """ONNX Runtime's pre-processing (shape inference, basic optimisation) into ``out``, with each kept
    node's exporter metadata restored (the pre-processing drops it; the recipe and the profiler read it).
    Returns node name → module scopes."""
    onnx, _ = _require_quantizer()
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(fp32_path), str(out), skip_symbolic_shape=False)
    source = {n.name: n for n in onnx.load(str(fp32_path)).graph.node}
    model = onnx.load(str(out))
    scopes_of: dict[str, list[str]] = {}
    for node in model.graph.node:
        original = source.get(node.name)
        if original is None:
            continue
        del node.metadata_props[:]
        node.metadata_props.extend(original.metadata_props)
        scopes_of[node.name] = module_scopes(original)
    onnx.save(model, str(out))
    return scopes_of


def activations_of(model: Any, nodes: Sequence[str]) -> set[str]:
    """The float activations the quantiser needs ranges for: every input and output of ``nodes`` that is
    not a weight (ONNX Runtime would calibrate every tensor of every node of the recipe's operator types,
    the full-resolution float parts included)."""
    from onnx import TensorProto

    wanted = set(nodes)
    weights = {init.name for init in model.graph.initializer}
    infos = {vi.name: vi for vi in (*model.graph.value_info, *model.graph.output, *model.graph.input)}
    out = set()
    for node in model.graph.node:
        if node.name not in wanted:
            continue
        for name in (*node.input, *node.output):
            vi = infos.get(name)
            if (
                name
                and name not in weights
                and vi is not None
                and vi.type.tensor_type.elem_type == TensorProto.FLOAT
            ):
                out.add(name)
    return out


def percentile_collector(cal: Any) -> Any:
    """ONNX Runtime's histogram collector (``cal``: ``onnxruntime.quantization.calibrate``) for symmetric
    :data:`PERCENTILE` ranges over :data:`BINS` bins, except that a tensor whose values span too narrow a
    range for the bins in float32 (``np.histogram`` refuses it: seen on a constant-like tensor of random
    weights) keeps its min–max range instead of failing the whole calibration."""

    class Collector(cal.HistogramCollector):  # type: ignore[misc, name-defined]
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.narrow: dict[str, tuple[float, float]] = {}

        def collect_absolute_value(self, name_to_arr: dict[str, Any]) -> None:
            for name, arrays in name_to_arr.items():
                a = np.asarray(arrays)
                if name not in self.narrow:
                    try:
                        super().collect_absolute_value({name: arrays})
                        continue
                    except ValueError:
                        old = self.histogram_dict.pop(name, None)
                        seen = (float(old[2]), float(old[3])) if old else (np.inf, -np.inf)
                        self.narrow[name] = seen
                lo, hi = self.narrow[name]
                self.narrow[name] = (min(lo, float(np.nanmin(a))), max(hi, float(np.nanmax(a))))

        def compute_collection_result(self) -> dict[str, Any]:
            out = super().compute_collection_result() if self.histogram_dict else {}
            for name, (lo, hi) in self.narrow.items():
                out[name] = (np.float32(lo), np.float32(hi), np.zeros(1, np.int64), np.zeros(2, np.float32))
            return out

    return Collector(
        method="percentile",
        symmetric=True,
        num_bins=BINS,
        num_quantized_bins=None,
        percentile=PERCENTILE,
        scenario=None,
    )


def calibrate_ranges(
    prepared: Path, tensors: set[str], calibration: CalibrationSet, height: int, width: int, method: str
) -> Any:
    """The ranges of ``tensors`` over the calibration pairs (``onnxruntime.quantization``'s calibrators),
    collected one pair at a time: min–max merges each pair's minimum and maximum, percentile adds each
    pair's values into growing histograms (same bin width), so memory holds one pair's tensors, not
    every pair's (with every tensor of the graph and every pair at once, percentile took 14 GB)."""
    _require_quantizer()
    from onnxruntime.quantization import calibrate as cal

    with tempfile.TemporaryDirectory(prefix="sccosf_calib_") as tmp:
        augmented = str(Path(tmp) / "augmented.onnx")
        if method == "minmax":
            calibrator = cal.MinMaxCalibrater(str(prepared), None, augmented)
        else:  # ONNX Runtime's defaults for quantize_static's percentile method
            calibrator = cal.PercentileCalibrater(
                str(prepared), None, augmented, symmetric=True, num_bins=BINS, percentile=PERCENTILE
            )
            calibrator.collector = percentile_collector(cal)
        _, infos = calibrator.select_tensors_to_calibrate(calibrator.model)
        calibrator.select_tensors_to_calibrate = lambda model: (set(tensors), infos)
        calibrator.augment_graph()
        calibrator.create_inference_session()
        with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrator prints per call
            for pair in calibration.pairs:
                calibrator.collect_data(_Reader([pair], height, width))
            return calibrator.compute_data()


def quantize_prepared(
    prepared: Path,
    out: Path,
    scopes_of: dict[str, list[str]],
    calibration: CalibrationSet,
    height: int,
    width: int,
    recipe: Int8Recipe = DEFAULT_RECIPE,
    cache: Path | None = None,
) -> list[str]:
    """Quantise the pre-processed graph ``prepared`` into ``out`` by ``recipe``; the quantised node names.

    Only the activations of the quantised nodes are calibrated (:func:`calibrate_ranges`). ``cache``
    keeps the ranges (ONNX Runtime's JSON calibration cache), so several recipes can be tried on one
    calibration run: calibrate with the widest recipe first (the sensitivity sweep does).
    """
    onnx, q = _require_quantizer()
    from onnxruntime.quantization.calibrate import save_tensors_data

    model = onnx.load(str(prepared))
    nodes = select_nodes(model, recipe, scopes_of)
    if not nodes:
        raise ConfigError(f"the INT8 recipe selects no node of {prepared.name}: nothing to quantise")
    methods = {"minmax": q.CalibrationMethod.MinMax, "percentile": q.CalibrationMethod.Percentile}
    if recipe.calibration not in methods:
        raise ConfigError(f"calibration must be one of {sorted(methods)}, got {recipe.calibration!r}")
    with tempfile.TemporaryDirectory(prefix="sccosf_ranges_") as tmp:
        ranges = cache or Path(tmp) / "ranges.json"
        if not ranges.is_file():
            tensors = activations_of(model, nodes)
            data = calibrate_ranges(prepared, tensors, calibration, height, width, recipe.calibration)
            save_tensors_data(data, ranges)
        q.quantize_static(
            str(prepared),
            str(out),
            None,  # the ranges come from the cache written above
            quant_format=q.QuantFormat.QDQ,
            op_types_to_quantize=recipe.op_types,
            nodes_to_quantize=nodes,
            per_channel=True,
            reduce_range=recipe.reduce_range,
            activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8,
            calibrate_method=methods[recipe.calibration],
            calibration_cache_path=ranges,
        )
    return nodes


def compare_graphs(
    reference: Path | bytes, candidate: Path | bytes, feeds: Sequence[dict[str, np.ndarray]]
) -> dict[str, Any]:
    """Two graphs with the same inputs and outputs on ``feeds`` (ONNX Runtime, CPU): fused image
    differences in grey levels, mask agreement, logit differences (worst pair and mean)."""
    import onnxruntime as ort

    def open_(model: Path | bytes) -> Any:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        source = str(model) if isinstance(model, Path) else model
        return ort.InferenceSession(source, so, providers=["CPUExecutionProvider"])

    ref, cand = open_(reference), open_(candidate)
    fused_mean, fused_max, agree, logit_mad, finite = [], 0, [], [], True
    for feed in feeds:
        (f0, m0, l0), (f1, m1, l1) = ref.run(None, feed), cand.run(None, feed)
        d = np.abs(f1.astype(np.int16) - f0.astype(np.int16))
        fused_mean.append(float(d.mean()))
        fused_max = max(fused_max, int(d.max()))
        agree.append(float((m1 == m0).mean()))
        logit_mad.append(float(np.abs(l1 - l0).mean()))
        finite = finite and bool(np.isfinite(l1).all())
    return {
        "frames": len(fused_mean),
        "fused_mean_abs_diff": round(float(np.mean(fused_mean)), 4),
        "fused_mean_abs_diff_worst": round(max(fused_mean), 4),
        "fused_max_diff": fused_max,
        "mask_agreement": round(float(np.mean(agree)), 6),
        "mask_agreement_min": round(min(agree), 6),
        "logits_mean_abs_diff": round(float(np.mean(logit_mad)), 5),
        "finite": finite,
    }


def _check_feeds(calibration: CalibrationSet, height: int, width: int) -> tuple[list[dict], str]:
    """Feeds for the export check: spare pairs of the folder (never calibrated on), else calibration pairs."""
    if calibration.spare:
        step = max(1, len(calibration.spare) // CHECK_PAIRS)
        pairs = calibration.spare[::step][:CHECK_PAIRS]
        source = "pairs of the folder not used for calibration"
    else:
        pairs, source = calibration.pairs[:CHECK_PAIRS], "calibration pairs (the folder has no other)"
    feeds = list(graph_feeds(pairs, height, width))
    return feeds, f"{len(feeds)} {source}: {', '.join(p[0] for p in pairs)}"


def _float_source(
    checkpoint: Path, dest: Path, height: int | None, width: int | None, seg_refine: bool, check: bool
) -> tuple[int, int]:
    """The float graph to quantise, at ``dest``: exported from a checkpoint (480×640 unless given), or an
    fp32 ``.onnx`` file from ``sccosf-export`` copied as it is (its size and refinement switch hold)."""
    import shutil

    from sccosf_ros.backends.onnx_exporter import export_onnx

    if checkpoint.suffix.lower() != ".onnx":
        h, w = height or 480, width or 640
        export_onnx(checkpoint, dest, h, w, seg_refine=seg_refine, check=check)
        return h, w
    onnx, _ = _require_quantizer()
    if not checkpoint.is_file():
        raise ConfigError(f"{checkpoint}: ONNX file not found")
    _, info = read_onnx_metadata(_custom_metadata(onnx.load(str(checkpoint))), str(checkpoint))
    if info.precision != "fp32":
        raise ConfigError(f"{checkpoint} is already an {info.precision} graph: quantise a float export")
    if (height or info.height, width or info.width) != (info.height, info.width):
        raise ConfigError(
            f"{checkpoint} was exported for {info.height}x{info.width}, not {height}x{width}: drop --size "
            "or quantise the .safetensors checkpoint"
        )
    if info.seg_refine != (bool(seg_refine) and info.has_refine):
        raise ConfigError(
            f"{checkpoint}: its refinement switch ({info.seg_refine}) differs from the one asked"
        )
    if info.batch != 1:
        raise ConfigError(f"{checkpoint} has a dynamic batch: INT8 files are exported for batch 1")
    shutil.copyfile(checkpoint, dest)
    return info.height, info.width


def export_int8(
    checkpoint: str | Path,
    out: str | Path,
    calibration: str | Path,
    height: int | None = None,
    width: int | None = None,
    seg_refine: bool = True,
    pairs: int = DEFAULT_CALIBRATION_PAIRS,
    exclude: str | Path | None = None,
    recipe: Int8Recipe = DEFAULT_RECIPE,
    check: bool = True,
) -> ExportInfo:
    """Export ``checkpoint`` as an INT8 ONNX graph calibrated on ``pairs`` pairs of the folder
    ``calibration`` (see the module docstring); returns the record stored in the file's metadata.

    The float graph is exported and checked against PyTorch first (as ``sccosf-export`` does), for
    ``height``×``width`` (default 480×640); a float ``.onnx`` file from ``sccosf-export`` is quantised as
    it is instead (its size; saves the export). With
    ``check``, the INT8 graph is compared with it on pairs of the folder that calibration did not use;
    beyond :data:`MAX_FUSED_MEAN_DIFF` grey levels (mean) or non-finite logits it raises
    :class:`~sccosf_ros.backends.onnx_exporter.ExportCheckError` and writes nothing.
    """
    onnx, _ = _require_quantizer()
    from sccosf_ros.backends.onnx_exporter import ExportCheckError, _write_atomic, finish_model

    t0 = time.perf_counter()
    cal = find_calibration_pairs(calibration, pairs, exclude)  # a bad folder fails before the export
    with tempfile.TemporaryDirectory(prefix="sccosf_int8_") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        height, width = _float_source(Path(checkpoint), fp32, height, width, seg_refine, check)
        prepared = Path(tmp) / "prepared.onnx"
        scopes_of = prepare_for_quantization(fp32, prepared)
        int8 = Path(tmp) / "int8.onnx"
        t_cal = time.perf_counter()
        nodes = quantize_prepared(prepared, int8, scopes_of, cal, height, width, recipe)
        calibration_s = time.perf_counter() - t_cal
        meta, info = read_onnx_metadata(_custom_metadata(onnx.load(str(fp32))), str(fp32))
        result: dict[str, Any] = {}
        if check:
            feeds, source = _check_feeds(cal, height, width)
            result = {**compare_graphs(fp32, int8, feeds), "inputs": source}
            if not result["finite"] or result["fused_mean_abs_diff"] > MAX_FUSED_MEAN_DIFF:
                raise ExportCheckError(
                    f"{checkpoint}: the INT8 graph does not reproduce the float one (fused image mean "
                    f"difference {result['fused_mean_abs_diff']:.2f} grey levels, mask agreement "
                    f"{result['mask_agreement']:.2%}, finite {result['finite']}); nothing written"
                )
        model = onnx.load(str(int8))
        float_sha = file_sha256(fp32)
    info.precision = "int8"
    info.quantization = {
        "tool": f"onnxruntime.quantization.quantize_static (onnxruntime {_ort_version()})",
        "recipe": recipe.to_dict(),
        "nodes_quantized": len(nodes),
        "calibration": cal.record,
        "calibration_s": round(calibration_s, 1),
        "check_vs_float": result,
        "float_graph_sha256": float_sha,
    }
    info.export_s = round(time.perf_counter() - t0, 2)
    finish_model(model, meta, info)
    _write_atomic(Path(out), model.SerializeToString())
    return info


def _custom_metadata(model: Any) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def _ort_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


def describe_quantization(info: ExportInfo) -> str:
    """One line for CLIs: what was calibrated on and how INT8 compares with float."""
    qz = info.quantization
    cal, chk = qz.get("calibration", {}), qz.get("check_vs_float", {})
    left_out = cal.get("validation_left_out", {}).get("count", 0)
    line = (
        f"INT8 ({qz.get('nodes_quantized')} nodes), calibrated on {cal.get('pairs_used')} pairs of "
        f"{cal.get('folder')} ({left_out} validation pairs left out)"
    )
    if chk:
        line += (
            f"; vs float on {chk['frames']} other pairs: fused mean diff {chk['fused_mean_abs_diff']:.2f} "
            f"grey levels (max {chk['fused_max_diff']}), mask agreement {chk['mask_agreement']:.2%}"
        )
    return line


__all__ = [
    "DEFAULT_RECIPE",
    "CalibrationSet",
    "Int8Recipe",
    "compare_graphs",
    "describe_quantization",
    "export_int8",
    "find_calibration_pairs",
]
