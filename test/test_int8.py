"""INT8 export (``sccosf-export --int8 --calibration DIR``) and INT8 files in the onnxruntime backend.

CI part: the random-weight fixture checkpoint, exported and quantised once at 64×96 with a calibration folder
of synthetic pairs written here (its ``seafusion/`` names must be left out), then the file's metadata, the
selection by ``precision``, and every error a user can meet. With ``../shared``: the shipped model's float
export (the one test_onnx.py makes, 240×320) quantised with real training pairs agrees with the float graph
on real validation pairs within the tolerances below. No test asserts a time.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from sccosf_ros.backends import onnx_int8
from sccosf_ros.backends.onnx_format import EXPORT_KEY, ExportInfo
from sccosf_ros.cli import export as export_cli
from sccosf_ros.engine import FusionEngine
from sccosf_ros.errors import ConfigError

H, W = 64, 96
MSRS = Path(__file__).resolve().parents[2] / "shared" / "data" / "msrs"
ROOT = Path(__file__).resolve().parents[1]
VALIDATION = ("s00", "s05")  # written to seafusion/: never calibrated on
# Real pairs (240x320 shipped model): INT8 against float, the bounds docs/onnx.md states for this test.
REAL_MAX_FUSED_MEAN = 2.0  # grey levels, mean over pixels and channels, each pair
REAL_MIN_MASK_AGREEMENT = 0.95  # share of equal mask pixels, each pair


def _write_pairs(folder: Path, n: int, size: tuple[int, int] = (H, W), layout=("vi", "ir")) -> list[str]:
    from sccosf_synth.scenes import generate_scene

    for d in layout:
        (folder / d).mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        scene = generate_scene(900 + i, *size, night=bool(i % 2))
        name = f"s{i:02d}"
        cv2.imwrite(str(folder / layout[0] / f"{name}.png"), cv2.cvtColor(scene.rgb, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(folder / layout[1] / f"{name}.png"), scene.thermal)
        names.append(name)
    return names


def _info(path: Path) -> ExportInfo:
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    return ExportInfo.from_json(props[EXPORT_KEY])


@pytest.fixture(scope="module")
def calibration_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("calibration")
    _write_pairs(folder, 12)
    (folder / "seafusion").mkdir()
    (folder / "boxes" / "fusion").mkdir(parents=True)
    for name in VALIDATION:
        (folder / "seafusion" / f"{name}.png").write_bytes(b"")  # only the names count
        (folder / "boxes" / "fusion" / f"{name}.txt").write_text("2 0.5 0.5 0.4 0.4\n0 0.2 0.5 0.1 0.3\n")
    return folder


@pytest.fixture(scope="module")
def int8_file(
    random_checkpoint: Path, calibration_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("int8") / "random_int8.onnx"
    argv = ["--onnx", str(out), "--checkpoint", str(random_checkpoint), "--size", str(H), str(W)]
    argv += ["--int8", "--calibration", str(calibration_dir), "--calibration-pairs", "8"]
    assert export_cli.main(argv) == 0
    return out


@pytest.fixture(scope="module")
def fp32_file(random_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sccosf_ros.backends.onnx_exporter import export_onnx

    out = tmp_path_factory.mktemp("fp32") / "random_fp32.onnx"
    export_onnx(random_checkpoint, out, H, W)
    return out


# ---- the file ------------------------------------------------------------------------------------------


def test_int8_file_records_precision_recipe_and_calibration(int8_file: Path, calibration_dir: Path) -> None:
    import onnx

    model = onnx.load(str(int8_file))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ: ONNX Runtime fuses them into int8 kernels
    info = _info(int8_file)
    assert info.precision == "int8" and (info.height, info.width, info.batch) == (H, W, 1)
    q = info.quantization
    cal = q["calibration"]
    assert cal["folder"] == str(calibration_dir.resolve()) and cal["pairs_used"] == 8
    assert cal["pairs_paired"] == 12 and cal["pairs_usable"] == 10
    assert cal["validation_left_out"]["count"] == 2 and not set(VALIDATION) & set(cal["names"])
    assert q["recipe"]["float_scopes"] == list(onnx_int8.DEFAULT_RECIPE.float_scopes)
    assert q["recipe"]["weights"].startswith("int8") and q["recipe"]["format"] == "QDQ"
    assert q["nodes_quantized"] > 0
    chk = q["check_vs_float"]
    assert chk["finite"] and chk["fused_mean_abs_diff"] <= onnx_int8.MAX_FUSED_MEAN_DIFF
    assert "not used for calibration" in chk["inputs"]  # the 2 spare usable pairs
    assert info.check["fused_max_diff"] <= 2  # the float graph's own check against PyTorch
    # The exporter's module paths survive quantisation (the recipe and the profiler read them).
    quantised = [n for n in model.graph.node if n.op_type == "Conv"]
    assert any(onnx_int8.module_scopes(n) for n in quantised)


def test_export_cli_prints_what_it_calibrated_on(
    random_checkpoint: Path, calibration_dir: Path, fp32_file: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "from_onnx.onnx"
    # A float .onnx export as the source: quantised as it is (no new export), its size kept.
    argv = [
        "--onnx",
        str(out),
        "--checkpoint",
        str(fp32_file),
        "--int8",
        "--calibration",
        str(calibration_dir),
    ]
    assert export_cli.main([*argv, "--calibration-pairs", "8", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["precision"] == "int8" and (record["height"], record["width"]) == (H, W)
    assert record["quantization"]["recipe"]["calibration"] == "percentile"  # the default
    assert export_cli.main([*argv, "--calibration-pairs", "8"]) == 0
    text = capsys.readouterr().out
    assert "int8" in text and "calibrated on 8 pairs" in text and "2 validation pairs left out" in text


def test_export_cli_passes_the_calibration_method(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``--calibration-method minmax``: the default recipe with min–max ranges (the rest unchanged); the
    default is percentile."""
    seen = {}

    def fake_export_int8(*args, recipe, **kwargs):
        seen["recipe"] = recipe
        raise ConfigError("stop here")

    monkeypatch.setattr(export_cli, "export_int8", fake_export_int8)
    argv = ["--onnx", str(tmp_path / "o.onnx"), "--int8", "--calibration", str(tmp_path)]
    assert export_cli.main([*argv, "--calibration-method", "minmax"]) != 0
    assert seen["recipe"] == onnx_int8.DEFAULT_RECIPE.replace(calibration="minmax")
    assert export_cli.main(argv) != 0 and seen["recipe"] == onnx_int8.DEFAULT_RECIPE
    assert onnx_int8.DEFAULT_RECIPE.calibration == "percentile"


# ---- selection by parameter -------------------------------------------------------------------------------


def test_int8_file_runs_by_precision_or_by_its_metadata(int8_file: Path, fp32_file: Path) -> None:
    from sccosf_synth.scenes import generate_scene

    scene = generate_scene(5, H, W)
    with FusionEngine(int8_file, device="cpu", backend="onnxruntime", precision="int8") as e8:
        assert e8.precision == "int8" and e8.describe()["graph_precision"] == "int8"
        r8 = e8.infer(scene.rgb, scene.thermal, return_probs=True)
    assert r8.fused.shape == (H, W, 3) and r8.mask.shape == (H, W) and r8.probs is not None
    # backend auto with the default precision: the .onnx goes to ONNX Runtime and its metadata says int8
    with FusionEngine(int8_file, device="cpu", backend="auto") as auto:
        assert auto.backend == "onnxruntime" and auto.precision == "int8"
    with FusionEngine(fp32_file, device="cpu", backend="onnxruntime") as e32:
        assert e32.precision == "fp32"
        r32 = e32.infer(scene.rgb, scene.thermal)
    diff = np.abs(r8.fused.astype(np.int16) - r32.fused.astype(np.int16))
    assert diff.mean() <= onnx_int8.MAX_FUSED_MEAN_DIFF


def test_int8_asked_of_what_cannot_run_it(fp32_file: Path, random_checkpoint: Path) -> None:
    with pytest.raises(ConfigError, match="is an fp32 graph: make an INT8 one with sccosf-export"):
        FusionEngine(fp32_file, device="cpu", backend="onnxruntime", precision="int8")
    for backend in ("onnxruntime", "auto"):  # auto: int8 is ONNX Runtime's, which needs an INT8 file
        with pytest.raises(ConfigError, match=r"needs an INT8 \.onnx file.*--int8 --calibration"):
            FusionEngine(random_checkpoint, device="cpu", backend=backend, precision="int8")
    with pytest.raises(ConfigError, match=r"not available with backend 'torch'.*onnxruntime"):
        FusionEngine(random_checkpoint, device="cpu", backend="torch", precision="int8")
    with pytest.raises(ConfigError, match="precision must be one of"):
        FusionEngine(fp32_file, device="cpu", backend="onnxruntime", precision="int4")


def test_node_parameter_accepts_int8() -> None:
    from sccosf_ros.node.params import ParameterError, validate

    assert validate({"precision": "int8"})["precision"] == "int8"
    with pytest.raises(ParameterError, match="precision"):
        validate({"precision": "int4"})


# ---- errors ---------------------------------------------------------------------------------------------


def test_calibration_folder_errors(tmp_path: Path, random_checkpoint: Path, capsys) -> None:
    few = tmp_path / "few"
    _write_pairs(few, 5, layout=("rgb", "thermal"))
    flat = tmp_path / "flat"
    flat.mkdir()
    out = tmp_path / "x.onnx"
    base = ["--onnx", str(out), "--checkpoint", str(random_checkpoint), "--size", str(H), str(W)]
    cases = [
        (["--int8"], "--int8 needs --calibration DIR"),
        (["--calibration", str(few)], "go with --int8"),
        (["--int8", "--calibration", str(tmp_path / "missing")], "does not exist"),
        (["--int8", "--calibration", str(flat)], "neither vi/ + ir/"),
        (["--int8", "--calibration", str(few)], "has 5 usable pair(s)"),
        (["--int8", "--calibration", str(few), "--calibration-pairs", "3"], "at least 8"),
        (
            ["--int8", "--calibration", str(few), "--calibration-exclude", str(tmp_path / "no.txt")],
            "cannot read",
        ),
        (["--int8", "--calibration", str(few), "--dynamic-batch"], "batch 1 only"),
    ]
    for extra, message in cases:
        assert export_cli.main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (extra, err)  # one line, no traceback
    assert not out.exists()


def test_calibration_pairs_are_spread_and_exclusions_counted(tmp_path: Path) -> None:
    names = _write_pairs(tmp_path, 20, size=(16, 16))
    exclude = tmp_path / "dev.txt"
    exclude.write_text("# dev pairs\ns01\ns02.png\n\n")
    cal = onnx_int8.find_calibration_pairs(tmp_path, 9, exclude=exclude)
    used = [p[0] for p in cal.pairs]
    assert len(used) == 9 and used[0] == "s00" and used[-1] == "s19"  # first to last, evenly
    assert not {"s01", "s02"} & set(used) and len(cal.spare) == 20 - 2 - 9
    assert cal.record["excluded_file"]["count"] == 2 and cal.record["pairs_usable"] == 18
    assert set(used) | {p[0] for p in cal.spare} | {"s01", "s02"} == set(names)


def test_recipe_scopes_select_nodes() -> None:
    class Node:
        def __init__(self, name: str, op: str, group: int = 1) -> None:
            self.name, self.op_type = name, op
            self.attribute = [type("Attr", (), {"name": "group", "i": group})()]

    class Model:
        def __init__(self) -> None:
            ops = (("a", "Conv", 1), ("b", "Conv", 1), ("c", "Add", 1), ("d", "Add", 1), ("e", "Conv", 1))
            ops += (("f", "Conv", 32),)  # depthwise
            self.graph = type("Graph", (), {"node": [Node(*spec) for spec in ops]})()

    scopes = {
        "a": ["model", "model.encoder", "model.encoder.features.0"],
        "b": ["model", "model.encoder", "model.encoder.features.4"],
        "c": ["model", "model.encoder", "model.encoder.features.4"],
        "d": ["model"],
        "e": ["model", "model.reaw", "model.reaw.head"],
        "f": ["model", "model.encoder", "model.encoder.features.5"],
    }
    assert onnx_int8.select_nodes(Model(), onnx_int8.DEFAULT_RECIPE, scopes) == ["b", "c", "f"]
    no_dw = onnx_int8.DEFAULT_RECIPE.replace(depthwise=False)
    assert onnx_int8.select_nodes(Model(), no_dw, scopes) == ["b", "c"]
    top = onnx_int8.Int8Recipe(op_scopes=(("Add", ("model$",)), ("Conv", ("model.reaw",))))
    assert onnx_int8.select_nodes(Model(), top, scopes) == ["d", "e"]
    twice = onnx_int8.Int8Recipe(op_scopes=(("Conv", ("model.reaw",)), ("Conv", ("model.encoder",))))
    assert onnx_int8.select_nodes(Model(), twice, scopes) == ["a", "b", "e", "f"]


# ---- calibration ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prepared(fp32_file: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The float fixture graph pre-processed for quantisation, and the nodes the default recipe selects."""
    import onnx

    out = tmp_path_factory.mktemp("prepared") / "prepared.onnx"
    scopes_of = onnx_int8.prepare_for_quantization(fp32_file, out)
    nodes = onnx_int8.select_nodes(onnx.load(str(out)), onnx_int8.DEFAULT_RECIPE, scopes_of)
    return out, nodes


def _ranges(data) -> dict[str, tuple[float, float]]:
    return {k: tuple(float(np.ravel(x)[0]) for x in v.range_value) for k, v in data.data.items()}


def test_calibration_covers_only_the_quantised_nodes(prepared, calibration_dir: Path) -> None:
    """Only the activations of the recipe's nodes are calibrated, not every tensor of the operator types
    (the full-resolution float parts held 14 GB of percentile data), and the quantiser finds every range it
    needs there: the INT8 file comes out of the restricted ranges."""
    import onnx

    path, nodes = prepared
    model = onnx.load(str(path))
    tensors = onnx_int8.activations_of(model, nodes)
    chosen = [n for n in model.graph.node if n.name in set(nodes)]
    touched = {t for n in chosen for t in (*n.input, *n.output)}
    assert tensors and tensors <= touched
    # Float convolutions whose output no quantised node reads (the heads, the refinement) are left out.
    float_only = {n.output[0] for n in model.graph.node if n.op_type == "Conv"} - touched
    assert float_only and not float_only & tensors
    weights = {i.name for i in model.graph.initializer}
    assert not tensors & weights
    cal = onnx_int8.find_calibration_pairs(calibration_dir, 8)
    data = onnx_int8.calibrate_ranges(path, tensors, cal, H, W, "minmax")
    assert set(data.data) == tensors


def test_ranges_are_merged_pair_by_pair(prepared, calibration_dir: Path) -> None:
    """Collected one pair at a time: min–max over two pairs is the union of each pair's ranges, and the
    percentile ranges (99.999 %, symmetric, clipped to what was seen) lie within the min–max ones."""
    import onnx

    path, nodes = prepared
    tensors = onnx_int8.activations_of(onnx.load(str(path)), nodes)
    cal = onnx_int8.find_calibration_pairs(calibration_dir, 8)

    def ranges(pairs, method="minmax"):
        subset = onnx_int8.CalibrationSet(cal.folder, cal.layout, pairs, [])
        return _ranges(onnx_int8.calibrate_ranges(path, tensors, subset, H, W, method))

    a, b, both = ranges(cal.pairs[:1]), ranges(cal.pairs[1:2]), ranges(cal.pairs[:2])
    for name in tensors:
        assert both[name] == (min(a[name][0], b[name][0]), max(a[name][1], b[name][1]))
    pct = ranges(cal.pairs[:2], "percentile")
    assert set(pct) == tensors
    for name in tensors:
        lo, hi = both[name]
        assert lo <= pct[name][0] <= pct[name][1] <= hi


def test_percentile_keeps_a_too_narrow_tensor_by_its_range() -> None:
    """A tensor spanning too little for 2048 float32 bins (np.histogram refuses it) keeps its min–max
    range instead of failing the calibration; the other tensors get their percentile ranges."""
    from onnxruntime.quantization import calibrate as cal

    collector = onnx_int8.percentile_collector(cal)
    narrow = np.float32(1000.0) + np.array([0.0, 6.1e-5, 1.2e-4], np.float32)
    with pytest.raises(ValueError, match="Too many bins"):
        np.histogram(np.abs(narrow), bins=2048)
    wide = np.linspace(-2.0, 3.0, 1000).astype(np.float32)
    collector.collect({"narrow": [narrow], "wide": [wide]})
    collector.collect({"narrow": [narrow - 1.0], "wide": [wide * 2.0]})
    data = cal.TensorsData(cal.CalibrationMethod.Percentile, collector.compute_collection_result())
    np.testing.assert_allclose(np.ravel(data["narrow"].range_value), [999.0, float(narrow[-1])])
    lo, hi = (float(np.ravel(x)[0]) for x in data["wide"].range_value)
    assert -4.0 <= lo < -3.9 and 5.9 < hi <= 6.0  # symmetric 99.999 % of |x|, clipped to what was seen


# ---- the quality tool ------------------------------------------------------------------------------------


def test_quality_score_exports_scores_and_checks_tolerances(
    random_checkpoint: Path, calibration_dir: Path, tmp_path: Path, capsys
) -> None:
    """``int8_quality score --checkpoint``: both exports, then float and INT8 on the validation pairs."""
    from sccosf_train import int8_quality

    dev = tmp_path / "dev.txt"
    dev.write_text("s01\ns02\n")
    argv = ["score", "--checkpoint", str(random_checkpoint), "--size", str(H), str(W), "--dev", str(dev)]
    argv += ["--msrs-root", str(calibration_dir), "--out", str(tmp_path / "q"), "--threads", "1"]
    assert int8_quality.main(argv) == 0
    report = json.loads((tmp_path / "q" / "int8_quality.json").read_text())
    assert report["pairs"] == len(VALIDATION)  # the validation pairs only
    fp32, int8 = (tmp_path / "q" / f"{random_checkpoint.stem}_64x96{s}.onnx" for s in ("", "_int8"))
    assert [r["precision"] for r in report["results"].values()] == ["fp32", "int8"]
    assert _info(int8).quantization["calibration"]["excluded_file"]["count"] == 2
    (checks,) = report["tolerances"].values()
    assert {"box mean F", "box F car", "SSIM", "fused image (grey levels, mean)"} <= set(checks)
    assert all(set(c) == {"measured", "bound", "holds"} for c in checks.values())
    assert "tolerances hold" in capsys.readouterr().out
    stamp = int8.stat().st_mtime_ns
    assert int8_quality.main(argv) == 0  # the same checkpoint: the exports are reused
    assert int8.stat().st_mtime_ns == stamp and fp32.is_file()


def test_quality_sweep_quantises_one_part_at_a_time(
    fp32_file: Path, calibration_dir: Path, tmp_path: Path
) -> None:
    from sccosf_train import int8_quality

    dev = tmp_path / "dev.txt"
    dev.write_text("s01\ns02\n")
    argv = ["sweep", "--fp32", str(fp32_file), "--msrs-root", str(calibration_dir), "--dev", str(dev)]
    argv += ["--calibration-pairs", "8", "--only", "ReAW head", "--out", str(tmp_path / "s")]
    assert int8_quality.main(argv) == 0
    report = json.loads((tmp_path / "s" / "int8_sweep.json").read_text())
    (row,) = report["rows"]
    assert row["part"].startswith("ReAW head") and row["nodes"] >= 3 and row["frames"] == 2
    assert 0 <= row["mask_agreement"] <= 1 and row["fused_mean_abs_diff"] >= 0
    assert not {"s01", "s02"} & set(report["calibration"]["names"])


# ---- the shipped model on real pairs -----------------------------------------------------------------------


@pytest.mark.skipif(not (MSRS / "vi").is_dir(), reason="../shared/data/msrs not present")
def test_shipped_model_int8_agrees_with_float_on_real_pairs(tiny_onnx_240: Path, tiny_int8_240: Path) -> None:
    """Calibrated on 8 real training pairs (the dev pairs left out; conftest), compared on 4 validation
    pairs."""
    info = _info(tiny_int8_240)
    cal = info.quantization["calibration"]
    assert info.precision == "int8" and cal["folder"] == str(MSRS.resolve())
    assert cal["validation_left_out"]["count"] == 61 and cal["excluded_file"]["count"] == 20
    validation = ["00004N", "00028N", "00055D", "00103D"]  # two night, two day
    assert all((MSRS / "seafusion" / f"{n}.png").is_file() for n in validation)
    with (
        FusionEngine(tiny_onnx_240, device="cpu", backend="onnxruntime", num_threads=1) as e32,
        FusionEngine(
            tiny_int8_240, device="cpu", backend="onnxruntime", precision="int8", num_threads=1
        ) as e8,
    ):
        for name in validation:
            rgb, ir = onnx_int8.read_pair(MSRS / "vi" / f"{name}.png", MSRS / "ir" / f"{name}.png", 240, 320)
            r32, r8 = e32.infer(rgb, ir), e8.infer(rgb, ir)
            fused = float(np.abs(r8.fused.astype(np.int16) - r32.fused.astype(np.int16)).mean())
            agree = float((r8.mask == r32.mask).mean())
            assert fused <= REAL_MAX_FUSED_MEAN and agree >= REAL_MIN_MASK_AGREEMENT, (name, fused, agree)


def test_profile_tool_splits_the_time_by_operator_and_part(
    tiny_onnx_240: Path, tiny_int8_240: Path, tmp_path: Path
) -> None:
    """benchmarks/profile_onnx.py (docs/onnx.md's tables): every kernel traced to a part of the network."""
    import subprocess
    import sys

    out = tmp_path / "profile.json"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "profile_onnx.py"),
        str(tiny_onnx_240),
        str(tiny_int8_240),
    ]
    cmd += ["--threads", "1", "--runs", "2", "--warmup", "1", "--pairs", "1", "--json", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    fp32, int8 = json.loads(out.read_text())["profiles"]
    for p in (fp32, int8):
        parts = {r["name"]: r["ms"] for r in p["parts"]}
        assert parts.get("?", 0) < 0.02 * p["kernel_ms_per_run"], parts  # (almost) nothing unattributed
        assert (
            any(name.startswith("encoder") for name in parts)
            and abs(sum(r["share"] for r in p["ops"]) - 1) < 1e-3
        )
    assert "QLinearConv" in {r["name"] for r in int8["ops"]} and "QLinearConv" not in {
        r["name"] for r in fp32["ops"]
    }
