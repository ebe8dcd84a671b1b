"""ONNX Runtime's INT8 convolution kernels against its float ones on this CPU, one layer type at a time.

    python benchmarks/bench_int8_kernels.py --threads 1

Why: whether INT8 pays depends on the CPU's integer instructions (VNNI or not) and on the layer type, and
the network mixes them. Each case is a chain of four convolutions (+ ReLU) of one shape from the network's
encoder, built with onnx.helper, quantised the way ``sccosf-export --int8`` does (QDQ, per-channel int8
weights, uint8 activations, calibrated on random inputs) with and without 7-bit weights (``reduce_range``),
and timed against the float chain, interleaved, ``--rounds`` times; the table gives the medians and the CPU's
relevant instruction sets. Random weights: speed only, no accuracy.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CASES = {  # name: (in channels, out channels, kernel, groups, height, width)
    "pointwise 16→96 at 128×160 (expansion, stride 4)": (16, 96, 1, 1, 128, 160),
    "depthwise 3×3, 96 channels at 128×160": (96, 96, 3, 96, 128, 160),
    "dense 3×3 32→32 at 64×80": (32, 32, 3, 1, 64, 80),
    "pointwise 64→384 at 16×20 (stride 16)": (64, 384, 1, 1, 16, 20),
}


def chain(cin: int, cout: int, k: int, groups: int, h: int, w: int, layers: int = 4):
    """``layers`` convolutions + ReLU, alternating cin→cout→cin for dense ones, as an ONNX model."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, x, c = [], [], "x", cin
    for i in range(layers):
        co = c if groups > 1 else (cout if c == cin else cin)
        weight = rng.normal(0, 0.1, (co, c // groups, k, k)).astype(np.float32)
        inits += [
            numpy_helper.from_array(weight, f"w{i}"),
            numpy_helper.from_array(np.zeros(co, np.float32), f"b{i}"),
        ]
        nodes.append(
            helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], pads=[k // 2] * 4, group=groups)
        )
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"y{i}"]))
        x, c = f"y{i}", co
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, h, w])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=40)
    args = ap.parse_args(argv)

    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gpu_check import cpu_flags

    class Random(CalibrationDataReader):
        def __init__(self, shape: tuple[int, ...]) -> None:
            self.left, self.shape = 4, shape

        def get_next(self) -> dict | None:
            if not self.left:
                return None
            self.left -= 1
            return {"x": np.random.default_rng(self.left).random(self.shape, dtype=np.float32)}

    cpu = cpu_flags()
    print(
        f"{cpu['cpu']}, {cpu['cores']} cores, flags {', '.join(cpu['flags'])}; onnxruntime "
        f"{ort.__version__}, {args.threads} thread(s), {args.rounds} rounds, median ms of a 4-layer chain"
    )
    print("\n| layers | float | INT8 | INT8, 7-bit weights | INT8 speed-up |\n|---|---:|---:|---:|---:|")
    tmp = Path(tempfile.mkdtemp(prefix="sccosf_int8_kernels_"))
    for name, (cin, cout, k, groups, h, w) in CASES.items():
        onnx.save(chain(cin, cout, k, groups, h, w), str(tmp / "float.onnx"))
        for reduce in (False, True):
            quantize_static(
                str(tmp / "float.onnx"), str(tmp / f"int8_{reduce}.onnx"), Random((1, cin, h, w)),
                quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=reduce,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                op_types_to_quantize=["Conv", "Relu"],
            )  # fmt: skip
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sessions = {
            f: ort.InferenceSession(str(tmp / f"{f}.onnx"), so, providers=["CPUExecutionProvider"])
            for f in ("float", "int8_False", "int8_True")
        }
        x = np.random.default_rng(9).random((1, cin, h, w), dtype=np.float32)
        times: dict[str, list[float]] = {f: [] for f in sessions}
        for _ in range(args.rounds):
            for f, s in sessions.items():
                t = time.perf_counter()
                s.run(None, {"x": x})
                times[f].append((time.perf_counter() - t) * 1e3)
        med = {f: statistics.median(v) for f, v in times.items()}
        print(f"| {name} | {med['float']:.2f} | {med['int8_False']:.2f} | {med['int8_True']:.2f} "
              f"| {med['float'] / med['int8_False']:.2f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
