"""The parameter table, config/fusion.yaml, the launch file and docs/node.md agree (names and defaults)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from sccosf_ros.node.params import PARAMETERS, SPECS, ParameterError, launch_overrides, launch_value, validate

ROOT = Path(__file__).resolve().parents[1]
YAML_PATH = ROOT / "config" / "fusion.yaml"
LAUNCH_PATH = ROOT / "launch" / "fusion.launch.py"
EXTRA_LAUNCH_ARGS = {
    "params_file",
    "namespace",
    "use_sim_time",
    "rgb_topic",
    "thermal_topic",
    "fastdds_profile",
}


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _yaml_params() -> dict[str, Any]:
    doc = yaml.safe_load(YAML_PATH.read_text())
    return _flatten(doc["/**"]["ros__parameters"])


def _launch_module() -> Any:
    spec = importlib.util.spec_from_file_location("fusion_launch", LAUNCH_PATH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # must not need launch/launch_ros at import time
    return module


def test_yaml_keys_and_defaults_match_the_parameter_table() -> None:
    params = _yaml_params()
    assert set(params) == set(SPECS)
    for name, value in params.items():
        assert value == SPECS[name].default, name
    assert validate(params) == {p.name: p.default for p in PARAMETERS}


def test_launch_arguments_match_the_parameter_table() -> None:
    args = {name: (default, doc) for name, default, doc in _launch_module().launch_arguments()}
    assert set(args) == set(SPECS) | EXTRA_LAUNCH_ARGS
    for spec in PARAMETERS:
        default, doc = args[spec.name]
        assert launch_value(spec.name, default) == spec.default, spec.name
        assert doc == spec.description and doc
    assert all(args[name][1] for name in EXTRA_LAUNCH_ARGS)
    assert args["params_file"][0].endswith("fusion.yaml")


def test_launch_loads_the_shipped_fastdds_profile_unless_the_shell_sets_one(monkeypatch) -> None:
    import xml.etree.ElementTree as ET

    from sccosf_ros.paths import FASTDDS_PROFILE_ENV, with_fastdds_profile

    monkeypatch.delenv(FASTDDS_PROFILE_ENV, raising=False)
    shipped = ROOT / "config" / "fastdds_large_images.xml"
    assert _launch_module().default_fastdds_profile() == str(shipped)
    assert with_fastdds_profile({})[FASTDDS_PROFILE_ENV] == str(shipped)
    assert with_fastdds_profile({FASTDDS_PROFILE_ENV: ""}) == {FASTDDS_PROFILE_ENV: ""}  # opted out: kept
    monkeypatch.setenv(FASTDDS_PROFILE_ENV, "/etc/my_dds.xml")
    assert _launch_module().default_fastdds_profile() == "/etc/my_dds.xml"
    # The profile is the default participant profile and its segment holds ten 640x480 rgb8 images.
    ns = {"f": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}
    root = ET.parse(shipped).getroot()
    assert root.find("f:participant", ns).get("is_default_profile") == "true"
    segment = int(
        root.find("f:transport_descriptors/f:transport_descriptor[f:type='SHM']/f:segment_size", ns).text
    )
    assert segment >= 12 * 640 * 480 * 3


def test_launch_overrides_only_what_differs_from_defaults() -> None:
    module = _launch_module()
    defaults = {name: default for name, default, _ in module.launch_arguments() if name in SPECS}
    assert launch_overrides(defaults) == {}
    changed = dict(
        defaults, sync_slop="0.1", publish_overlay="true", **{"thermal_normalization.percentiles": "[2, 98]"}
    )
    assert launch_overrides(changed) == {
        "sync_slop": 0.1,
        "publish_overlay": True,
        "thermal_normalization.percentiles": [2.0, 98.0],
    }
    with pytest.raises(ParameterError, match="sync_slop"):
        launch_overrides(dict(defaults, sync_slop="-1"))
    assert ("rgb/image", "/cam/rgb") in module.remappings("/cam/rgb", "/cam/ir")
    assert ("thermal/image/compressed", "/cam/ir/compressed") in module.remappings("/cam/rgb", "/cam/ir")


def test_docs_list_every_parameter() -> None:
    text = (ROOT / "docs" / "node.md").read_text()
    missing = [p.name for p in PARAMETERS if f"`{p.name}`" not in text]
    assert not missing


def test_node_declares_exactly_the_table_and_reads_the_yaml() -> None:
    rclpy = pytest.importorskip("rclpy")
    from sccosf_ros.node.fusion_node import FusionNode

    ctx = rclpy.Context()
    rclpy.init(
        context=ctx, args=["--ros-args", "--params-file", str(YAML_PATH)], domain_id=10 + os.getpid() % 80
    )
    try:
        node = FusionNode(context=ctx, engine_factory=lambda **k: None)
        builtin = {"use_sim_time", "start_type_description_service"}  # every rclpy node has these
        declared = set(node.list_parameters([], 10).names) - builtin
        assert declared == set(SPECS)
        for spec in PARAMETERS:  # the rcl YAML parser (not PyYAML) read every value with the right type
            assert node.get_parameter(spec.name).value == spec.default, spec.name
        assert str(node.trigger_configure()).endswith("SUCCESS"), node.last_error
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)


def test_launch_description_builds_where_launch_ros_is_installed() -> None:
    pytest.importorskip("launch_ros")
    launch = pytest.importorskip("launch")
    if not hasattr(launch, "LaunchDescription"):  # the repo's launch/ folder shadows a missing package
        pytest.skip("launch is not installed")
    description = _launch_module().generate_launch_description()
    names = {a.name for a in description.get_launch_arguments()}
    assert names == set(SPECS) | EXTRA_LAUNCH_ARGS
