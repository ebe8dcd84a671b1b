"""Where the time goes in an exported graph: ONNX Runtime's own profiler, per operator type and per part of
the network, for one or more ``.onnx`` files side by side.

    python benchmarks/profile_onnx.py tiny_480x640.onnx tiny_480x640_int8.onnx --threads 2 \\
        --md docs/results/onnx_profile.md --json docs/results/onnx_profile.json

Each file runs in a session with the engine's session options (``ort_backend.session_options``) and
profiling on; all files are open at once and, after ``--warmup`` rounds, each of ``--runs`` rounds runs every
file once in rotating order (so the load of a shared machine falls on all alike), cycling through real MSRS
pairs (or synthetic frames where ``../shared`` is absent). The profiler's per-node kernel times of the timed
rounds are summed and divided by the number of runs and reported three ways:

* **operator types** (after ONNX Runtime's graph optimisation: ``Conv`` here is often the NCHWc kernel,
  ``QLinearConv`` the fused INT8 one, ``QuantizeLinear``/``DequantizeLinear`` the cost of the float/int8
  boundaries);
* **parts of the network** (``encoder``, ``cfm.0``, ``icrm.stages.1`` (its selective scan), ``seg refine``,
  ``reaw`` ...), from the module path the exporter stores in every node (``pkg.torch.onnx.name_scopes``);
  nodes that ONNX Runtime made (layout reorders, fusions, quantisation boundaries) are traced back to the
  node whose output they read or write, through the optimised graph;
* the **slowest nodes**.

Timings on a shared machine move with its load: ``/proc/loadavg`` is recorded, and the shares are steadier
than the milliseconds. The profile's sum is below the wall time of a run (the Python call, the executor
between kernels).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sample_pairs import sample_pairs

MSRS = Path(__file__).resolve().parents[2] / "shared" / "data" / "msrs"

# Module path prefix -> the part of the network it belongs to (first match wins).
PARTS = (
    (r"^model\.encoder", "encoder (MobileNetV2 trunk, both modalities)"),
    (r"^model\.cfm\.(\d)\.lrb", "Sc-CFM {0}: long-range branch (attention)"),
    (r"^model\.cfm\.(\d)", "Sc-CFM {0}: projection, fine branch, DCR"),
    (r"^model\.icrm\.stages\.(\d)\.vss", "ICRM {0}: VSS block (selective scan)"),
    (r"^model\.icrm\.stages\.(\d)", "ICRM {0}: up-merge"),
    (r"^model\.icrm\.exchange", "decoder exchanges"),
    (r"^model\.icrm\.head", "segmentation head (coarse)"),
    (r"^model\.icrm\.refine", "segmentation refinement (input resolution)"),
    (r"^model\.reaw\.stages", "ReAW stages"),
    (r"^model\.reaw\.head", "ReAW head"),
    (r"^model$", "network top level (input resize, logits/maps upsampling, ReAW reconstruction, colour)"),
    (r"^$", "engine pre/post (uint8 in, argmax, uint8 out)"),
)


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "n/a"


def _scope(node: Any) -> str:
    """The innermost module path the exporter recorded for a graph node ('' for the engine's own pre/post
    processing, '?' for a node without the record: one the quantiser added)."""
    from sccosf_ros.backends.onnx_format import module_scopes

    if not any(p.key == "pkg.torch.onnx.name_scopes" for p in node.metadata_props):
        return "?"
    scopes = module_scopes(node)
    return scopes[-1] if scopes else ""


def part_of(scope: str) -> str:
    for pattern, label in PARTS:
        m = re.match(pattern, scope)
        if m:
            return label.format(*m.groups())
    return scope or "?"


_ORT_SUFFIX = re.compile(r"(_nchwc|_token_\d+|_(Quantize|Dequantize)Linear(_\d+)?|/.*)$")


def node_parts(model_path: Path, optimized: Path) -> dict[str, str]:
    """Optimised-graph node name -> part of the network, via exporter scopes and tensor names."""
    import onnx

    src = onnx.load(str(model_path), load_external_data=False)
    by_name: dict[str, str] = {}
    by_tensor: dict[str, str] = {}
    for n in src.graph.node:
        scope = _scope(n)
        if scope == "?":  # a node the quantiser added: named after the tensor it quantises
            continue
        part = part_of(scope)
        by_name[n.name] = part
        for t in n.output:
            by_tensor[t] = part
    opt = onnx.load(str(optimized), load_external_data=False)
    out: dict[str, str] = {}
    pending = list(opt.graph.node)
    for _ in range(4):  # nodes made by ORT inherit from the producer of an input (or a consumer)
        left = []
        for n in pending:
            base = _ORT_SUFFIX.sub("", n.name)  # hardtanh_2_nchwc, node_conv2d_3_token_320, x_QuantizeLinear
            part = by_name.get(n.name) or by_name.get(base) or by_tensor.get(base)
            part = part or next((by_tensor[t] for t in n.output if t in by_tensor), None)
            part = part or next((by_tensor[t] for t in n.input if t in by_tensor), None)
            if part is None:
                left.append(n)
                continue
            out[n.name] = part
            for t in n.output:
                by_tensor.setdefault(t, part)
        pending = left
    for n in pending:
        out[n.name] = "?"
    return out


def open_session(path: Path, threads: int, tmp: Path) -> Any:
    """A profiling session with the engine's session options; its optimised graph saved into ``tmp``."""
    import onnxruntime as ort

    from sccosf_ros.backends.ort_backend import session_options

    tmp.mkdir(parents=True, exist_ok=True)
    so = session_options(threads)
    so.optimized_model_filepath = str(tmp / "optimized.onnx")
    so.enable_profiling = True
    so.profile_file_prefix = str(tmp / "profile")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def summarise(
    path: Path, events: list[dict[str, Any]], optimized: Path, walls: list[float]
) -> dict[str, Any]:
    """Per operator type, per part of the network and per node, in ms a run, from profiler events."""
    parts = node_parts(path, optimized)
    by_op: Counter[str] = Counter()
    by_part: Counter[str] = Counter()
    by_node: Counter[tuple[str, str]] = Counter()
    count: dict[str, set[str]] = defaultdict(set)
    runs = 0
    for e in events:
        if e.get("cat") == "Session" and e.get("name") == "model_run":
            runs += 1
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        node, op = e["name"][: -len("_kernel_time")], e["args"]["op_name"]
        us = float(e["dur"])
        by_op[op] += us
        by_part[parts.get(node, "?")] += us
        by_node[(node, op)] += us
        count[op].add(node)
    runs = max(runs, 1)
    total = sum(by_op.values()) or 1.0

    def rows(counter: Counter) -> list[dict[str, Any]]:
        return [
            {"name": k, "ms": round(v / runs / 1e3, 2), "share": round(v / total, 4)}
            for k, v in counter.most_common()
        ]

    ops = rows(by_op)
    for r in ops:
        r["nodes"] = len(count[r["name"]])
    return {
        "file": str(path),
        "size_mb": round(path.stat().st_size / 1e6, 1),
        "runs_profiled": runs,
        "wall_ms_median": round(statistics.median(walls), 1),
        "wall_ms_p10": round(float(np.percentile(walls, 10)), 1),
        "kernel_ms_per_run": round(total / runs / 1e3, 1),
        "nodes_run": len(by_node),
        "ops": ops,
        "parts": rows(by_part),
        "top_nodes": [
            {"node": k[0], "op": k[1], "part": parts.get(k[0], "?"), "ms": round(v / runs / 1e3, 2)}
            for k, v in by_node.most_common(25)
        ],
    }


def profile_files(
    paths: list[Path], pairs: list, threads: int, warmup: int, runs: int
) -> list[dict[str, Any]]:
    """All files open at once and run in rotating order each round, so load changes fall on all alike."""
    from sccosf_ros.backends.onnx_exporter import to_planar

    tmp = Path(tempfile.mkdtemp(prefix="sccosf_profile_"))
    sessions = [open_session(p, threads, tmp / str(i)) for i, p in enumerate(paths)]
    feeds = [
        {"rgb": to_planar(rgb[None]), "thermal": (th.astype(np.float32) / np.float32(255.0))[None]}
        for rgb, th in pairs
    ]
    for i in range(warmup):
        for s in sessions:
            s.run(None, feeds[i % len(feeds)])
    walls: list[list[float]] = [[] for _ in paths]
    order = list(range(len(paths)))
    for i in range(runs):
        for k in order[i % len(order) :] + order[: i % len(order)]:
            t = time.perf_counter()
            sessions[k].run(None, feeds[i % len(feeds)])
            walls[k].append((time.perf_counter() - t) * 1e3)
    out = []
    for i, (path, s) in enumerate(zip(paths, sessions, strict=True)):
        events = json.loads(Path(s.end_profiling()).read_text())
        events = _drop_warmup(events, warmup)
        out.append({**summarise(path, events, tmp / str(i) / "optimized.onnx", walls[i]), "threads": threads})
    return out


def _drop_warmup(events: list[dict[str, Any]], warmup: int) -> list[dict[str, Any]]:
    """The events after the ``warmup``-th model run has ended (first runs allocate and are slower)."""
    ends = [e["ts"] + e["dur"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    if warmup <= 0 or len(ends) <= warmup:
        return events
    cut = sorted(ends)[warmup - 1]
    return [e for e in events if e.get("ts", 0) >= cut]


def markdown(result: dict[str, Any], top_ops: int = 15) -> str:
    lines = [
        f"ONNX Runtime profile, {result['size'][0]}x{result['size'][1]}, {result['frames']}, "
        f"{result['date']}; loadavg {result['loadavg']['start']} -> {result['loadavg']['end']}",
        f"(`{result['command']}`, onnxruntime {result['onnxruntime']})",
    ]
    for p in result["profiles"]:
        lines += [
            "",
            f"**{Path(p['file']).name}** ({p['size_mb']} MB), {p['threads']} thread(s): wall median "
            f"{p['wall_ms_median']} ms (p10 {p['wall_ms_p10']}), kernels {p['kernel_ms_per_run']} ms a run, "
            f"{p['nodes_run']} nodes",
            "",
            "| operator (after optimisation) | nodes | ms a run | share |",
            "|---|---:|---:|---:|",
        ]
        ops = p["ops"][:top_ops]
        lines += [f"| {r['name']} | {r['nodes']} | {r['ms']} | {100 * r['share']:.1f} % |" for r in ops]
        lines += ["", "| part of the network | ms a run | share |", "|---|---:|---:|"]
        lines += [f"| {r['name']} | {r['ms']} | {100 * r['share']:.1f} % |" for r in p["parts"]]
        lines += ["", "| slowest nodes | operator | part | ms a run |", "|---|---|---|---:|"]
        lines += [f"| {r['node']} | {r['op']} | {r['part']} | {r['ms']} |" for r in p["top_nodes"][:12]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("onnx", nargs="+", type=Path, help="exported .onnx files (sccosf-export)")
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=4, help="frames to cycle through")
    ap.add_argument("--md", type=Path, default=None, help="write the markdown tables here")
    ap.add_argument("--json", type=Path, default=None, help="write the full result here")
    args = ap.parse_args(argv)

    import onnxruntime as ort

    from sccosf_ros.backends.onnx_format import EXPORT_KEY

    sizes = set()
    for path in args.onnx:
        meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta()
        info = json.loads(meta.custom_metadata_map.get(EXPORT_KEY, "{}"))
        sizes.add((info.get("height", 480), info.get("width", 640)))
    if len(sizes) != 1:
        ap.error(f"the files are exported for different frame sizes: {sorted(sizes)}")
    ((h, w),) = sizes
    start = loadavg()
    pairs, source = sample_pairs([MSRS], args.pairs, h, w, seed=1)
    profiles = profile_files(args.onnx, pairs, args.threads, args.warmup, args.runs)
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["benchmarks/profile_onnx.py", *(argv if argv is not None else sys.argv[1:])]),
        "size": [h, w],
        "frames": source,
        "onnxruntime": ort.__version__,
        "cores": os.cpu_count(),
        "loadavg": {"start": start, "end": loadavg()},
        "profiles": profiles,
    }
    md = markdown(result)
    print(md)
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(md)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
