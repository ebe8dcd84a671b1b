"""An INT8 model's quality against the float one, and which parts of the network INT8 may touch.

Two commands, both on real MSRS pairs, no ROS:

``score`` — the float model and one or more INT8 models in one run on the 61 validation pairs (the pairs with
a SeAFusion output, never trained or calibrated on; ``--checkpoint`` exports both first, 480×640, the INT8
one calibrated on the training pairs with the dev pairs left out): the box score per class and its mean
(:mod:`sccosf_ros.metrics.boxes`, against the MSRS detection boxes), the eight fusion metrics and SSIM
(:mod:`sccosf_ros.metrics.fusion`), and how far each INT8 model's outputs are from the float model's
(fused image in grey levels, mask agreement); then each INT8 model against :data:`TOLERANCES`::

    python -m sccosf_train.int8_quality score --checkpoint models/sccosf_tiny.safetensors \\
        --msrs-root ../shared/data/msrs --out runs/int8      # or --fp32 FILE.onnx --int8 FILE_int8.onnx

``sweep`` — the sensitivity sweep that chose what stays float (:data:`sccosf_ros.backends.onnx_int8.
DEFAULT_RECIPE`): calibrated once on training pairs (the dev pairs left out), each candidate part of the
network is quantised *alone* and compared with the float graph on the 20 dev pairs (training pairs held out
of training and of calibration, never the validation pairs), plus the default recipe and its variants::

    python -m sccosf_train.int8_quality sweep --fp32 tiny_480x640.onnx --msrs-root ../shared/data/msrs \\
        --out runs/int8_sweep

Both write ``int8_quality.json``/``.md`` (or ``int8_sweep.*``) into ``--out`` and print the markdown.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from sccosf_ros.metrics.boxes import BoxDir
from sccosf_ros.metrics.fusion import FUSION_METRICS, fusion_metrics, to_gray255
from sccosf_ros.report import json_safe
from sccosf_train.compare_models import num_cell, score_masks
from sccosf_train.dataset import read_split_file, read_thermal, read_visible, seafusion_split

TOLERANCES = {
    "box_mean_F": 0.01,
    "box_class_F": 0.02,
    "fusion_metric_relative": 0.01,
    "fused_mean_grey": 2.0,
}
"""INT8 against float: |Δ mean F| ≤ 0.01, |Δ F| per class ≤ 0.02, each fusion metric within 1 % (relative),
fused images within 2 grey levels (mean absolute difference over pixels and channels, averaged over pairs)."""


def _engine(path: str, threads: int | None) -> Any:
    from sccosf_ros.engine import FusionEngine

    backend = "onnxruntime" if str(path).lower().endswith(".onnx") else "torch"
    return FusionEngine(path, device="cpu", backend=backend, num_threads=threads)


# ------------------------------------------------------------------------------------------------- score
def run_models(
    models: dict[str, str], root: Path, names: list[str], threads: int | None
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, float]]]:
    """Every model on every pair: per-model box score and mean fusion metrics, and per-model differences
    from the first (the float reference): fused grey levels (mean, worst pair, max) and mask agreement."""
    engines = {label: _engine(path, threads) for label, path in models.items()}
    ref_label = next(iter(models))
    masks: dict[str, list[tuple[str, np.ndarray]]] = {k: [] for k in models}
    metrics: dict[str, list[dict[str, float]]] = {k: [] for k in models}
    diffs: dict[str, dict[str, list[float]]] = {k: {"fused": [], "max": [], "agree": []} for k in models}
    ms: dict[str, list[float]] = {k: [] for k in models}
    for name in names:
        rgb, ir = read_visible(root / "vi" / f"{name}.png"), read_thermal(root / "ir" / f"{name}.png")
        g_ir, g_vi = to_gray255(ir), to_gray255(rgb)
        ref = None
        for label, engine in engines.items():
            t = time.perf_counter()
            res = engine.infer(rgb, ir)
            ms[label].append((time.perf_counter() - t) * 1e3)
            masks[label].append((name, res.mask))
            metrics[label].append(fusion_metrics(to_gray255(res.fused), g_ir, g_vi))
            if label == ref_label:
                ref = res
                continue
            assert ref is not None
            d = np.abs(res.fused.astype(np.int16) - ref.fused.astype(np.int16))
            diffs[label]["fused"].append(float(d.mean()))
            diffs[label]["max"].append(float(d.max()))
            diffs[label]["agree"].append(float((res.mask == ref.mask).mean()))
    boxes = BoxDir(root / "boxes")
    results: dict[str, dict[str, Any]] = {}
    for label, engine in engines.items():
        results[label] = {
            "path": models[label],
            "precision": engine.precision,
            "box": score_masks(masks[label], boxes)[0],
            "fusion": {m: float(np.nanmean([r[m] for r in metrics[label]])) for m in FUSION_METRICS},
            "engine_ms_median": float(np.median(ms[label])),
        }
        engine.close()
    summary = {
        label: {
            "fused_mean_grey": float(np.mean(d["fused"])),
            "fused_mean_grey_worst_pair": float(np.max(d["fused"])),
            "fused_max_grey": float(np.max(d["max"])),
            "mask_agreement": float(np.mean(d["agree"])),
            "mask_agreement_min": float(np.min(d["agree"])),
        }
        for label, d in diffs.items()
        if d["fused"]
    }
    return results, summary


def check_tolerances(ref: dict[str, Any], other: dict[str, Any], diff: dict[str, float]) -> dict[str, Any]:
    """Each criterion of :data:`TOLERANCES`: the measured difference, the bound, and whether it holds."""
    out: dict[str, Any] = {}
    d_mean = other["box"]["mean_F"] - ref["box"]["mean_F"]
    out["box mean F"] = (d_mean, TOLERANCES["box_mean_F"], abs(d_mean) <= TOLERANCES["box_mean_F"])
    for cls, v in ref["box"]["per_class"].items():
        if math.isnan(v["F"]):
            continue
        d = other["box"]["per_class"][cls]["F"] - v["F"]
        out[f"box F {cls}"] = (d, TOLERANCES["box_class_F"], abs(d) <= TOLERANCES["box_class_F"])
    for m in FUSION_METRICS:
        rel = (other["fusion"][m] - ref["fusion"][m]) / abs(ref["fusion"][m])
        bound = TOLERANCES["fusion_metric_relative"]
        out[m] = (rel, bound, abs(rel) <= bound)
    g, bound = diff["fused_mean_grey"], TOLERANCES["fused_mean_grey"]
    out["fused image (grey levels, mean)"] = (g, bound, g <= bound)
    return {k: {"measured": v[0], "bound": v[1], "holds": bool(v[2])} for k, v in out.items()}


def score_markdown(report: dict[str, Any]) -> str:
    results, summary, checks = report["results"], report["differences"], report["tolerances"]
    classes = list(next(iter(results.values()))["box"]["per_class"])
    head = ["model", *(f"{c} F" for c in classes), "mean F", *FUSION_METRICS, "engine ms"]
    lines = [
        f"INT8 against float on {report['pairs']} validation pairs of `{report['msrs_root']}` "
        f"({report['generated']}; engine ms: median per pair on this machine, load {report['loadavg']})",
        "",
        "| " + " | ".join(head) + " |",
        "|---|" + "---:|" * (len(head) - 1),
    ]
    for label, r in results.items():
        pc = r["box"]["per_class"]
        cells = [label, *(num_cell(pc[c]["F"]) for c in classes), num_cell(r["box"]["mean_F"])]
        cells += [num_cell(r["fusion"][m]) for m in FUSION_METRICS] + [f"{r['engine_ms_median']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "| model | fused Δ grey, mean (worst pair) | fused Δ max | mask agreement (lowest pair) |",
        "|---|---:|---:|---:|",
    ]
    for label, d in summary.items():
        lines.append(
            f"| {label} | {d['fused_mean_grey']:.3f} ({d['fused_mean_grey_worst_pair']:.3f}) "
            f"| {d['fused_max_grey']:.0f} | {100 * d['mask_agreement']:.2f} % "
            f"({100 * d['mask_agreement_min']:.2f} %) |"
        )
    for label, c in checks.items():
        held = sum(v["holds"] for v in c.values())
        lines += [
            "",
            f"**{label}**: {held} of {len(c)} tolerances hold",
            "",
            "| criterion | Δ | bound | holds |",
        ]
        lines += ["|---|---:|---:|---|"]
        for k, v in c.items():
            unit = " (relative)" if k in FUSION_METRICS else ""
            lines.append(
                f"| {k}{unit} | {v['measured']:+.4f} | {v['bound']} | {'yes' if v['holds'] else '**no**'} |"
            )
    return "\n".join(lines) + "\n"


def exports(
    checkpoint: Path, out: Path, root: Path, dev: str, size: tuple[int, int] = (480, 640)
) -> tuple[Path, Path]:
    """The checkpoint's float and INT8 files in ``out`` (``STEM_HxW.onnx`` and ``STEM_HxW_int8.onnx``; the
    INT8 one calibrated on ``root``'s training pairs, ``dev`` left out); made again whenever the checkpoint
    changed since, reused otherwise."""
    from sccosf_ros.backends import onnx_int8
    from sccosf_ros.backends.onnx_exporter import export_onnx
    from sccosf_ros.backends.onnx_format import file_sha256

    h, w = size
    fp32, int8 = out / f"{checkpoint.stem}_{h}x{w}.onnx", out / f"{checkpoint.stem}_{h}x{w}_int8.onnx"
    sha = file_sha256(checkpoint)
    if not (fp32.is_file() and _source_sha(fp32) == sha):
        export_onnx(checkpoint, fp32, h, w)
        int8.unlink(missing_ok=True)
    if not (int8.is_file() and _source_sha(int8) == sha):
        onnx_int8.export_int8(fp32, int8, root, exclude=dev)
    return fp32, int8


def _source_sha(path: Path) -> str:
    return _onnx_info(path).source_sha256


def score(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(args.msrs_root)
    _, names = seafusion_split(root)
    names = names[: args.max_pairs] if args.max_pairs else names
    if args.checkpoint:
        made = exports(Path(args.checkpoint), Path(args.out), root, args.dev, tuple(args.size))
        args.fp32, args.int8 = str(made[0]), [str(made[1])]
    if not args.fp32 or not args.int8:
        raise SystemExit("score: give --checkpoint, or --fp32 and --int8")
    models = {f"float ({Path(args.fp32).name})": args.fp32}
    for spec in args.int8:
        label, _, path = spec.rpartition("=")
        models[label or f"INT8 ({Path(path).name})"] = path
    results, summary = run_models(models, root, names, args.threads)
    ref = next(iter(results.values()))
    checks = {label: check_tolerances(ref, results[label], d) for label, d in summary.items()}
    return {
        "title": "INT8 against float",
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m sccosf_train.int8_quality", *sys.argv[1:]]),
        "msrs_root": str(root),
        "pairs": len(names),
        "loadavg": _loadavg(),
        "tolerances_def": TOLERANCES,
        "results": results,
        "differences": summary,
        "tolerances": checks,
    }


# ------------------------------------------------------------------------------------------------- sweep
def _blocks(start: int, end: int) -> tuple[str, ...]:
    return tuple(f"model.encoder.features.{i}" for i in range(start, end))


Spec = tuple[tuple[str, tuple[str, ...]], ...]


def _convs(*scopes: str, add: bool = False) -> Spec:
    """Convolutions with their ReLU/ReLU6 (folded into the output range), and the residual additions."""
    ops = ["Conv", "Clip", "Relu"] + (["Add"] if add else [])
    return tuple((op, scopes) for op in ops)


SWEEP_PARTS: tuple[tuple[str, Spec], ...] = (
    ("encoder block 0 (first conv, stride 2)", _convs("model.encoder.features.0")),
    ("encoder block 1 (stride 2)", _convs("model.encoder.features.1")),
    ("encoder blocks 2-3 (stride 4)", _convs(*_blocks(2, 4), add=True)),
    ("encoder blocks 4-6 (stride 8)", _convs(*_blocks(4, 7), add=True)),
    ("encoder blocks 7-17 (stride 16-32)", _convs(*_blocks(7, 18), add=True)),
    ("Sc-CFM 0 convs (stride 4)", _convs("model.cfm.0")),
    ("Sc-CFM 1-3 convs", _convs("model.cfm.1", "model.cfm.2", "model.cfm.3")),
    ("Sc-CFM gates (sigmoid)", (("Sigmoid", ("model.cfm",)),)),
    ("Sc-LRB attention (matmul)", (("MatMul", ("model.cfm",)),)),
    ("ICRM convs (up-merge, scan's depthwise conv)", _convs("model.icrm.stages")),
    ("ICRM selective scan and projections (matmul)", (("MatMul", ("model.icrm.stages",)),)),
    ("decoder exchanges", _convs("model.icrm.exchange")),
    ("ReAW stages", _convs("model.reaw.stages")),
    ("segmentation head (last layers)", _convs("model.icrm.head")),
    ("segmentation refinement (last layers)", _convs("model.icrm.refine")),
    ("ReAW head (last layers of the fusion)", _convs("model.reaw.head")),
    ("resizes", (("Resize", ("model",)),)),
    ("ReAW reconstruction arithmetic", (("Add", ("model$",)), ("Mul", ("model$",)))),
)
"""Candidate parts, each quantised alone in the sweep. ``model$``: nodes at the network's top level only
(the reconstruction, colour conversion and input normalisation)."""


def sweep(args: argparse.Namespace) -> dict[str, Any]:
    from sccosf_ros.backends import onnx_int8 as q8

    root, fp32 = Path(args.msrs_root), Path(args.fp32)
    dev = read_split_file(args.dev)
    meta = _onnx_size(fp32)
    cal = q8.find_calibration_pairs(root, args.calibration_pairs, exclude=args.dev)
    pairs = [(n, root / "vi" / f"{n}.png", root / "ir" / f"{n}.png") for n in dev]
    feeds = list(q8.graph_feeds(pairs, *meta))
    all_ops = sorted({op for _, spec in SWEEP_PARTS for op, _ in spec} | set(q8.DEFAULT_RECIPE.op_types))
    rows = []
    with tempfile.TemporaryDirectory(prefix="sccosf_sweep_") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        scopes_of = q8.prepare_for_quantization(fp32, prepared)
        cache = Path(tmp) / "ranges.json"
        # One calibration for every candidate: ranges of every tensor of the operator types any uses.
        superset = q8.Int8Recipe(op_scopes=tuple((op, ("model",)) for op in all_ops), depthwise=True)
        q8.quantize_prepared(prepared, Path(tmp) / "all.onnx", scopes_of, cal, *meta, superset, cache)
        variants: list[tuple[str, q8.Int8Recipe]] = [
            (label, q8.Int8Recipe(op_scopes=spec)) for label, spec in SWEEP_PARTS
        ]
        variants += [
            ("**default recipe** (what sccosf-export --int8 writes)", q8.DEFAULT_RECIPE),
            ("default recipe, first two encoder blocks INT8 too", q8.DEFAULT_RECIPE.replace(float_scopes=())),
            ("default recipe, 7-bit weights (reduce_range)", q8.DEFAULT_RECIPE.replace(reduce_range=True)),
            ("default recipe, depthwise convolutions float", q8.DEFAULT_RECIPE.replace(depthwise=False)),
            (
                "default recipe + Sc-CFM, ICRM and ReAW stage convolutions",
                q8.DEFAULT_RECIPE.replace(
                    op_scopes=(
                        *q8.DEFAULT_RECIPE.op_scopes,
                        *_convs("model.cfm", "model.icrm.stages", "model.reaw.stages")[::2],
                    )
                ),
            ),
        ]
        for label, recipe in variants:
            if args.only and args.only not in label:
                continue
            out = Path(tmp) / "candidate.onnx"
            try:
                nodes = q8.quantize_prepared(prepared, out, scopes_of, cal, *meta, recipe, cache)
            except Exception as exc:  # a candidate that cannot be quantised is a row, not the end
                rows.append({"part": label, "error": f"{type(exc).__name__}: {exc}"[:200]})
                continue
            rows.append({"part": label, "nodes": len(nodes), **q8.compare_graphs(fp32, out, feeds)})
    return {
        "title": "INT8 sensitivity sweep",
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m sccosf_train.int8_quality", *sys.argv[1:]]),
        "fp32": str(fp32),
        "eval_pairs": f"{len(dev)} dev pairs ({args.dev})",
        "calibration": cal.record,
        "rows": rows,
    }


def sweep_markdown(report: dict[str, Any]) -> str:
    cal = report["calibration"]
    lines = [
        f"Each part quantised alone (INT8 QDQ, per-channel weights), against the float graph on the "
        f"{report['eval_pairs']}; calibrated on {cal['pairs_used']} training pairs ({report['generated']}).",
        "",
        "| quantised | nodes | mask agreement (lowest pair) | fused Δ grey mean (worst pair) | fused Δ max "
        "| logits mean Δ |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        if "error" in r:
            lines.append(f"| {r['part']} | – | {r['error']} | | | |")
            continue
        lines.append(
            f"| {r['part']} | {r['nodes']} | {100 * r['mask_agreement']:.2f} % "
            f"({100 * r['mask_agreement_min']:.2f} %) | {r['fused_mean_abs_diff']:.3f} "
            f"({r['fused_mean_abs_diff_worst']:.3f}) | {r['fused_max_diff']} "
            f"| {r['logits_mean_abs_diff']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def _onnx_info(path: Path) -> Any:
    import onnxruntime as ort

    from sccosf_ros.backends.onnx_format import read_onnx_metadata

    meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta()
    return read_onnx_metadata(dict(meta.custom_metadata_map), str(path))[1]


def _onnx_size(path: Path) -> tuple[int, int]:
    info = _onnx_info(path)
    return info.height, info.width


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sccosf_train.int8_quality",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("score", help="float and INT8 models on the validation pairs, against the tolerances")
    s.add_argument(
        "--checkpoint",
        help="export it first (float and INT8 at --size, into --out; reused while it is unchanged)",
    )
    s.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"), help="of the exports")
    s.add_argument("--fp32", help="the float reference: an .onnx file (or a .safetensors: torch)")
    s.add_argument("--int8", action="append", metavar="[LABEL=]FILE", help="INT8 .onnx (repeatable)")
    s.add_argument("--max-pairs", type=int, default=None, help="only the first N validation pairs")
    s.add_argument("--threads", type=int, default=2)
    w = sub.add_parser("sweep", help="which parts INT8 may touch: each quantised alone, on the dev pairs")
    w.add_argument("--fp32", required=True, help="the float .onnx file (sccosf-export)")
    w.add_argument("--calibration-pairs", type=int, default=32)
    w.add_argument("--only", default=None, help="only the rows whose label contains this text (quick runs)")
    for a in (s, w):
        a.add_argument(
            "--dev",
            default="config/msrs_dev_split.txt",
            help="dev pairs: never calibrated on (sweep: evaluated on)",
        )
        a.add_argument("--msrs-root", required=True, help="MSRS layout folder (vi/, ir/, seafusion/, boxes/)")
        a.add_argument("--out", required=True, help="folder for the .json and .md")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.command == "score":
        report, stem, md = score(args), "int8_quality", score_markdown
    else:
        report, stem, md = sweep(args), "int8_sweep", sweep_markdown
    text = md(report)
    (out / f"{stem}.json").write_text(json.dumps(json_safe(report), indent=1) + "\n")
    (out / f"{stem}.md").write_text(text)
    print(text)
    print(f"wrote {out / stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
