"""Backends by registry: one registered from the test suite runs through the engine, the node's parameter
check, ``sccosf-fuse`` and the offline evaluator, with the engine untouched; the engine names no backend."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from echo_backend import EchoBackend

from sccosf_ros import backends, bags
from sccosf_ros.engine import FusionEngine
from sccosf_ros.errors import ConfigError

ENGINE_SOURCE = Path(__file__).resolve().parents[1] / "sccosf_ros" / "engine.py"


@pytest.fixture
def echo() -> Iterator[str]:
    backends.register("echo", EchoBackend, ("echo_class",))  # the one registration line
    yield "echo"
    backends.unregister("echo")


def _pair(h: int = 24, w: int = 32) -> tuple[np.ndarray, np.ndarray]:
    rgb = np.random.default_rng(0).integers(0, 255, (h, w, 3), np.uint8)
    thermal = np.zeros((h, w), np.uint8)
    thermal[:, w // 2 :] = 200
    return rgb, thermal


def test_a_registered_backend_runs_through_the_engine(echo: str, random_checkpoint: Path) -> None:
    assert echo in backends.backend_names()
    rgb, thermal = _pair()
    with FusionEngine(random_checkpoint, device="cpu", backend=echo, echo_class=3) as engine:
        out = engine.infer(rgb, thermal)
        assert (
            engine.backend == "echo"
            and engine.device.type == "cpu"
            and engine.describe()["backend"] == "echo"
        )
        assert np.array_equal(out.fused, rgb) and set(np.unique(out.mask)) == {0, 3}
        assert (out.mask[:, 16:] == 3).all() and set(out.timings) == {
            "preprocess",
            "inference",
            "postprocess",
        }
        batch = engine.infer_batch([(rgb, thermal), _pair(12, 16)])
        assert [b.mask.shape for b in batch] == [(24, 32), (12, 16)]
        assert engine.class_names == list(EchoBackend(random_checkpoint, 1).meta.class_names)
    with pytest.raises(ConfigError, match="CPU in fp32 only"):  # the backend's own checks
        FusionEngine(random_checkpoint, device="cpu", precision="bf16", backend=echo)
    with pytest.raises(TypeError, match="unexpected keyword"):
        FusionEngine(random_checkpoint, device="cpu", backend=echo, echo_colour=3)


def test_unknown_backends_are_refused_with_the_registered_names(random_checkpoint: Path) -> None:
    with pytest.raises(ConfigError, match=r"backend must be one of \('auto', 'torch', 'onnxruntime'\)"):
        FusionEngine(random_checkpoint, backend="echo")
    with pytest.raises(ConfigError, match="reserved"):
        backends.register("auto", EchoBackend)


def test_the_node_parameters_and_the_cli_read_the_registry(
    echo: str, random_checkpoint: Path, tmp_path: Path
) -> None:
    from sccosf_ros.cli import fuse
    from sccosf_ros.node.params import ParameterError, validate

    assert validate({"backend": echo})["backend"] == echo
    backends.unregister(echo)
    with pytest.raises(ParameterError, match="backend"):
        validate({"backend": echo})
    backends.register(echo, EchoBackend, ("echo_class",))
    rgb, thermal = _pair()
    for sub, image in (("rgb", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)), ("ir", thermal)):
        (tmp_path / sub).mkdir()
        cv2.imwrite(str(tmp_path / sub / "a.png"), image)
    argv = ["--rgb", str(tmp_path / "rgb"), "--thermal", str(tmp_path / "ir"), "--out", str(tmp_path / "out")]
    assert fuse.main([*argv, "--checkpoint", str(random_checkpoint), "--backend", echo, "--quiet"]) == 0
    fused = cv2.cvtColor(cv2.imread(str(tmp_path / "out" / "fused" / "a.png")), cv2.COLOR_BGR2RGB)
    assert np.array_equal(fused, rgb)


def test_the_evaluator_runs_a_registered_backend(echo: str, random_checkpoint: Path, tmp_path: Path) -> None:
    from sccosf_ros.evaluation import EvalConfig, evaluate_bag

    rgb, thermal = _pair(48, 64)
    for sub, image in (("vi", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)), ("ir", thermal)):
        (tmp_path / sub).mkdir()
        for name in ("a", "b"):
            cv2.imwrite(str(tmp_path / sub / f"{name}.png"), image)
    bags.write_folder_bag(tmp_path / "bag", tmp_path / "vi", tmp_path / "ir")
    cfg = EvalConfig(checkpoint=random_checkpoint, backend=echo, progress=False, label_topic=None)
    report = evaluate_bag(tmp_path / "bag", tmp_path / "eval", cfg)
    assert report["backend"] == "echo" and report["pairs"]["pairs_evaluated"] == 2
    (fused,) = {
        m.array.tobytes() for m in bags.read_images(tmp_path / "eval" / "output_bag", ["/sccosf/fused"])
    }
    assert fused == rgb.tobytes()


def test_the_engine_names_no_backend_and_imports_no_runtime() -> None:
    """Adding a backend never touches engine.py: its code holds no backend's name and imports no runtime."""
    tree = ast.parse(ENGINE_SOURCE.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    strings = {
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
        if id(n) not in docstrings
    }
    names = set(backends.backend_names()) - {"auto"}
    assert not {s for s in strings if any(name in s.lower() for name in names)}
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported.isdisjoint({"torch", "onnxruntime", "onnx"})
