"""The package's layers: the core imports no ROS; the runtime (sccosf_ros) imports neither the trainer nor the
generators (sccosf_synth); the engine imports no torch until a backend that needs it is chosen."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _modules_after(code: str) -> set[str]:
    """Module names loaded by a fresh interpreter after running ``code`` (no site hooks of the venv matter:
    the ROS wheels' bootstrapper only sets library paths)."""
    probe = textwrap.dedent(code) + "\nimport sys\nprint('\\n'.join(sorted(sys.modules)))\n"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    )
    return set(done.stdout.split())


RUNTIME_MODULES = [
    "bags",
    "evaluation",
    "engine",
    "pipeline",
    "replay",
    "backends.ort_backend",
    "backends.onnx_format",
    "cli.bag",
    "cli.fuse",
    "cli.evaluate",
    "cli.export",
    "cli.replay",
    "node.params",
    "node.launch_args",
]
RUNTIME = "import " + ", ".join(f"sccosf_ros.{m}" for m in RUNTIME_MODULES)


def _owned_by(loaded: set[str], *packages: str) -> set[str]:
    return {m for m in loaded if m.split(".")[0] in packages}


def test_the_runtime_loads_no_trainer_and_no_generator() -> None:
    assert not _owned_by(_modules_after(RUNTIME), "sccosf_train", "sccosf_synth")


def test_no_runtime_module_names_the_trainer_or_the_generators() -> None:
    """Lazy imports count too: no file of sccosf_ros imports sccosf_train or sccosf_synth anywhere."""
    offenders = [
        str(p.relative_to(REPO))
        for p in (REPO / "sccosf_ros").rglob("*.py")
        if re.search(r"^\s*(from|import)\s+(sccosf_train|sccosf_synth)\b", p.read_text(), re.MULTILINE)
    ]
    assert not offenders


def test_the_core_loads_no_ros() -> None:
    loaded = _modules_after(
        "import sccosf_ros.engine, sccosf_ros.evaluation, sccosf_ros.pairing, sccosf_ros.pipeline, "
        "sccosf_ros.metrics, sccosf_ros.imaging, sccosf_ros.topics, sccosf_ros.replay, "
        "sccosf_ros.node.params, sccosf_ros.node.stats, sccosf_synth.scenes, sccosf_synth.demo_bag"
    )
    assert not _owned_by(loaded, "rclpy", "sensor_msgs", "std_msgs", "rcl_interfaces", "diagnostic_msgs")


def test_the_engine_imports_no_torch_until_a_backend_needs_it() -> None:
    """An ONNX-Runtime-only install: the engine, its checkpoint format and the ONNX backend load no torch."""
    loaded = _modules_after(
        "import sccosf_ros.engine, sccosf_ros.backends.ort_backend, sccosf_ros.backends.onnx_format, "
        "sccosf_ros.pipeline"
    )
    assert "torch" not in loaded and "onnxruntime" not in loaded


def test_an_onnx_file_runs_without_torch(tiny_onnx_240: Path) -> None:
    """Running an exported file in ONNX Runtime loads no torch at all (the exporter is another install)."""
    loaded = _modules_after(
        "import numpy as np\n"
        "from sccosf_ros.engine import FusionEngine\n"
        f"e = FusionEngine({str(tiny_onnx_240)!r}, device='cpu', backend='onnxruntime', num_threads=1)\n"
        "out = e.infer(np.zeros((240, 320, 3), np.uint8), np.zeros((240, 320), np.uint8))\n"
        "assert out.mask.shape == (240, 320)"
    )
    assert "onnxruntime" in loaded and "torch" not in loaded
