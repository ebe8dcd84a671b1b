"""The package's layers: the runtime never imports the trainer, the core never imports ROS."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _modules_after(code: str) -> set[str]:
    """Module names loaded by a fresh interpreter after running ``code`` (no site hooks of the venv matter:
    the ROS wheels' bootstrapper only sets library paths)."""
    probe = textwrap.dedent(code) + "\nimport sys\nprint('\\n'.join(sorted(sys.modules)))\n"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    )
    return set(done.stdout.split())


@pytest.mark.parametrize(
    "code",
    [
        "import sccosf_ros.bags, sccosf_ros.evaluation",
        # the demo bag draws synthetic scenes: the generator lives on the runtime side
        "import tempfile, sccosf_ros.bags as b\n"
        "spec = b.SyntheticBagSpec(seconds=0.3, height=48, width=64)\n"
        "b.write_synthetic_bag(tempfile.mkdtemp() + '/x', spec)",
    ],
)
def test_the_runtime_loads_no_trainer_module(code: str) -> None:
    loaded = _modules_after(code)
    assert not {m for m in loaded if m == "sccosf_train" or m.startswith("sccosf_train.")}


def test_the_core_loads_no_ros() -> None:
    loaded = _modules_after(
        "import sccosf_ros.engine, sccosf_ros.evaluation, sccosf_ros.pairing, sccosf_ros.metrics, "
        "sccosf_ros.imaging, sccosf_ros.synthetic, sccosf_ros.topics, sccosf_ros.replay"
    )
    assert not {
        m for m in loaded if m.split(".")[0] in ("rclpy", "sensor_msgs", "std_msgs", "rcl_interfaces")
    }


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
