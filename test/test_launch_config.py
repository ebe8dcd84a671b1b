"""The parameter table, config/fusion.yaml, the launch file and docs/node.md agree (names and defaults)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from sccosf_ros.node.launch_args import UNSET, node_launch
from sccosf_ros.node.params import PARAMETERS, SPECS, ParameterError, parse_size, validate

ROOT = Path(__file__).resolve().parents[1]
YAML_PATH = ROOT / "config" / "fusion.yaml"
LAUNCH_PATH = ROOT / "launch" / "fusion.launch.py"
EXTRA_LAUNCH_ARGS = {
    "params_file",
    "namespace",
    "use_sim_time",
    "rgb_topic",
    "thermal_topic",
    "rgb_camera_info_topic",
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
        assert default == UNSET, spec.name  # not given = not passed: the params file decides
        assert doc.startswith(spec.description) and "node default: " in doc
    assert all(args[name][1] for name in EXTRA_LAUNCH_ARGS)
    assert args["params_file"][0].endswith("fusion.yaml")
    assert args["fastdds_profile"][0] == UNSET and args["use_sim_time"][0] == UNSET


def test_fastdds_profile_argument() -> None:
    """Not given: the shell's variable, else the shipped profile; '' = none, passed explicitly empty."""
    import xml.etree.ElementTree as ET

    from sccosf_ros.paths import FASTDDS_PROFILE_ENV, with_fastdds_profile

    shipped = str(ROOT / "config" / "fastdds_large_images.xml")
    assert node_launch({}, {}).env == {FASTDDS_PROFILE_ENV: shipped}
    assert node_launch({"fastdds_profile": UNSET}, {}).env == {FASTDDS_PROFILE_ENV: shipped}
    assert node_launch({}, {FASTDDS_PROFILE_ENV: "/etc/my.xml"}).env == {FASTDDS_PROFILE_ENV: "/etc/my.xml"}
    # '' loads no profile anywhere: the node gets the variable set and empty, so its main() adds nothing
    for shell in ({}, {FASTDDS_PROFILE_ENV: "/etc/my.xml"}):
        env = node_launch({"fastdds_profile": ""}, shell).env
        assert env == {FASTDDS_PROFILE_ENV: ""}
        assert with_fastdds_profile(env) == {FASTDDS_PROFILE_ENV: ""}
    assert node_launch({"fastdds_profile": "/x.xml"}, {}).env == {FASTDDS_PROFILE_ENV: "/x.xml"}
    # The profile is the default participant profile and its segment holds ten 640x480 rgb8 images.
    ns = {"f": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}
    root = ET.parse(shipped).getroot()
    assert root.find("f:participant", ns).get("is_default_profile") == "true"
    segment = int(
        root.find("f:transport_descriptors/f:transport_descriptor[f:type='SHM']/f:segment_size", ns).text
    )
    assert segment >= 12 * 640 * 480 * 3
    # Receiving: readers announce UDP only (a default-configured camera would push 900 KiB samples through
    # its own 512 KiB shared-memory segment to reach us, and lose them), into a 4 MiB socket buffer.
    rtps = root.find("f:participant/f:rtps", ns)
    assert [loc[0].tag.split("}")[1] for loc in rtps.find("f:defaultUnicastLocatorList", ns)] == ["udpv4"]
    udp = root.find("f:transport_descriptors/f:transport_descriptor[f:type='UDPv4']", ns)
    assert int(udp.find("f:receiveBufferSize", ns).text) >= 4 * 1024 * 1024
    used = {t.text for t in rtps.find("f:userTransports", ns)}
    assert used == {"sccosf_shm", "sccosf_udp"}  # shared memory still carries what the node sends


def test_given_arguments_override_whatever_their_value_and_unset_ones_are_not_passed() -> None:
    args = {name: default for name, default, _ in _launch_module().launch_arguments()}
    untouched = node_launch(args, {})
    assert untouched.overrides == {}
    assert untouched.parameters == [args["params_file"]]  # the params file alone decides
    assert node_launch({}, {}).parameters == [args["params_file"]]  # missing = not given
    # given, equal to the node default: still passed, so it beats a params file that says otherwise
    given = node_launch(dict(args, seg_refine="true", sync_slop="0.06", class_names=""), {})
    assert given.overrides == {"seg_refine": True, "sync_slop": 0.06, "class_names": ""}
    assert given.parameters == [args["params_file"], given.overrides]  # after the file: it wins
    changed = node_launch(
        {"publish_overlay": "true", "thermal_normalization.percentiles": "[2, 98]", "use_sim_time": "true"},
        {},
    )
    assert changed.overrides == {
        "publish_overlay": True,
        "thermal_normalization.percentiles": [2.0, 98.0],
        "use_sim_time": True,
    }
    assert node_launch({"params_file": ""}, {}).parameters == []
    with pytest.raises(ParameterError, match="sync_slop"):
        node_launch({"sync_slop": "-1"}, {})
    with pytest.raises(ParameterError, match="seg_refine"):
        node_launch({"seg_refine": "maybe"}, {})
    with pytest.raises(ParameterError, match="sync_jump_threshold"):
        node_launch({"sync_jump_threshold": "0.01"}, {})  # not above sync_slop
    assert node_launch({"sync_jump_threshold": "2.5"}, {}).overrides == {"sync_jump_threshold": 2.5}
    setup = node_launch({"rgb_topic": "/cam/rgb", "thermal_topic": "/cam/ir", "namespace": "r1"}, {})
    assert ("rgb/image", "/cam/rgb") in setup.remappings and setup.namespace == "r1"
    assert ("thermal/image/compressed", "/cam/ir/compressed") in setup.remappings
    assert ("rgb/camera_info", "/cam/camera_info") in setup.remappings  # image_transport's sibling
    named = node_launch({"rgb_topic": "/cam/rgb/image_raw", "rgb_camera_info_topic": "/calib/rgb"}, {})
    assert ("rgb/camera_info", "/calib/rgb") in named.remappings
    assert ("rgb/camera_info", "rgb/camera_info") in node_launch({}, {}).remappings


def test_overrides_beat_the_params_file_in_rcl(tmp_path: Path) -> None:
    """The node reads the params file, then the overrides as launch_ros hands them over (a second file)."""
    rclpy = pytest.importorskip("rclpy")
    from sccosf_ros.node.fusion_node import FusionNode

    params = tmp_path / "p.yaml"
    params.write_text(
        "/**:\n  ros__parameters:\n    seg_refine: false\n    sync_slop: 0.2\n    class_names: 'a, b'\n"
        "    thermal_normalization:\n      mode: minmax\n"
    )
    given = {"seg_refine": "true", "class_names": "", "thermal_normalization.mode": "auto"}
    setup = node_launch({"params_file": str(params), **given}, {})
    overrides = tmp_path / "overrides.yaml"  # what launch_ros writes for a dict of parameters
    overrides.write_text(yaml.safe_dump({"/**": {"ros__parameters": setup.parameters[1]}}))
    args = ["--ros-args", "--params-file", setup.parameters[0], "--params-file", str(overrides)]
    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=args, domain_id=10 + os.getpid() % 80)
    try:
        node = FusionNode(context=ctx, engine_factory=lambda **k: None)
        got = {n: node.get_parameter(n).value for n in ("seg_refine", "sync_slop", "class_names")}
        got["mode"] = node.get_parameter("thermal_normalization.mode").value
        # given (even equal to the default) wins; not given (sync_slop) leaves the file's value
        assert got == {"seg_refine": True, "sync_slop": 0.2, "class_names": "", "mode": "auto"}
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)


def test_warmup_size_is_height_by_width_or_empty() -> None:
    assert parse_size("480x640") == (480, 640) and parse_size(" 240X320 ") == (240, 320)
    assert parse_size("") is None and validate({"warmup_size": ""})["warmup_size"] == ""
    for bad in ("640", "480x", "0x640", "-1x2", "axb", "1x2x3"):
        with pytest.raises(ParameterError, match="warmup_size"):
            validate({"warmup_size": bad})


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
