"""Launch arguments -> the node's parameters, remappings and environment, without launch or launch_ros.

``launch/fusion.launch.py`` is a thin shell over :func:`launch_arguments` and :func:`node_launch`, so what a
command line means is decided (and tested) here:

* every node parameter is a launch argument whose default is :data:`UNSET`. An argument given on the command
  line is passed *after* the params file and wins, whatever its value (``seg_refine:=true`` overrides a file
  that says false, even though true is the node's default); an argument not given is not passed, so the
  params file (or, without one, the node's default) decides. Launch cannot tell "given" from "defaulted"
  by itself, hence the sentinel default (yolo_bringup uses ``""`` the same way, which would make an empty
  string impossible to pass on purpose: ``class_names:=''`` here really clears the file's class names);
* ``use_sim_time`` follows the same rule;
* ``fastdds_profile``: not given -> the shell's ``FASTRTPS_DEFAULT_PROFILES_FILE`` if set, else the shipped
  ``config/fastdds_large_images.xml``; ``fastdds_profile:=''`` -> no profile (Fast DDS's defaults); a path ->
  that file. The variable is always passed to the node explicitly (empty when opted out), because the node's
  ``main()`` loads the shipped profile when the variable is absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sccosf_ros.node.params import PARAMETERS, launch_value, validate
from sccosf_ros.paths import FASTDDS_PROFILE_ENV, find_data_file, with_fastdds_profile

UNSET = "<unset>"
"""Default of every optional launch argument: not given on the command line."""


def default_text(value: Any) -> str:
    """A parameter value as the command line would write it (for descriptions)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(repr(x) for x in value) + "]"
    return repr(value) if value == "" else str(value)


def default_params_file() -> str:
    """The installed (or source checkout's) config/fusion.yaml; empty when none is found."""
    path = find_data_file("config/fusion.yaml")
    return "" if path is None else str(path)


def launch_arguments() -> list[tuple[str, str, str]]:
    """(name, default, description) of every launch argument, node parameters first."""
    unset_note = "; not given: params_file's value, else the node default"
    args = [
        (p.name, UNSET, f"{p.description} (node default: {default_text(p.default)}{unset_note})")
        for p in PARAMETERS
    ]
    args += [
        ("params_file", default_params_file(), "Node parameters YAML; '' for none"),
        ("namespace", "", "Namespace for the node and its relative topics"),
        (
            "use_sim_time",
            UNSET,
            "Use /clock (true when replaying a bag with `ros2 bag play --clock`)" + unset_note,
        ),
        ("rgb_topic", "rgb/image", "RGB camera image topic (remapped onto the node's rgb/image)"),
        ("thermal_topic", "thermal/image", "Thermal camera image topic (remapped onto thermal/image)"),
        (
            "rgb_camera_info_topic",
            "",
            "RGB camera_info topic (remapped onto rgb/camera_info); '' = camera_info beside rgb_topic",
        ),
        (
            "fastdds_profile",
            UNSET,
            "Fast DDS XML profile for the node's process (shared-memory segment large enough for images); "
            f"'' loads none; not given: ${FASTDDS_PROFILE_ENV} if set, else the shipped profile",
        ),
    ]
    return args


def camera_info_beside(image_topic: str) -> str:
    """image_transport's camera_info topic of an image: ``/cam/rgb/image_raw`` -> ``/cam/rgb/camera_info``."""
    head, sep, _ = image_topic.rpartition("/")
    return f"{head}{sep}camera_info"


def remappings(rgb_topic: str, thermal_topic: str, rgb_info_topic: str = "") -> list[tuple[str, str]]:
    """Inputs are bound by remapping; the compressed variants and the camera_info follow image_transport's
    naming unless ``rgb_info_topic`` is given."""
    return [
        ("rgb/image", rgb_topic),
        ("thermal/image", thermal_topic),
        ("rgb/image/compressed", f"{rgb_topic}/compressed"),
        ("thermal/image/compressed", f"{thermal_topic}/compressed"),
        ("rgb/camera_info", rgb_info_topic or camera_info_beside(rgb_topic)),
    ]


def _bool(name: str, text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise ValueError(f"launch argument '{name}': expected true or false, got {text!r}")


@dataclass(frozen=True)
class NodeLaunch:
    """What the launch file hands to ``launch_ros.actions.Node``."""

    parameters: list[Any]  # the params file path (if any) first, then a dict of the given arguments
    remappings: list[tuple[str, str]]
    namespace: str
    env: dict[str, str]  # additional_env: always holds FASTRTPS_DEFAULT_PROFILES_FILE (maybe empty)
    overrides: dict[str, Any]  # the dict in ``parameters``, for logs and tests


def fastdds_profile_env(argument: str, env: Mapping[str, str]) -> str:
    """The node's ``FASTRTPS_DEFAULT_PROFILES_FILE`` for a ``fastdds_profile`` argument ('' = none)."""
    if argument == UNSET:
        return with_fastdds_profile(env).get(FASTDDS_PROFILE_ENV, "")
    return argument


def node_launch(arguments: Mapping[str, str], env: Mapping[str, str]) -> NodeLaunch:
    """Turn launch-argument strings (as ``LaunchConfiguration`` performs them) into the node's setup.

    Arguments missing from ``arguments`` count as not given. Raises ``ParameterError`` (a ``ValueError``)
    for a given value the node would reject, so a typo fails at launch, naming the argument.
    """

    def arg(name: str, default: str = UNSET) -> str:
        return arguments.get(name, default)

    overrides: dict[str, Any] = {}
    for spec in PARAMETERS:
        text = arg(spec.name)
        if text != UNSET:
            overrides[spec.name] = launch_value(spec.name, text)
    validate(overrides)
    if arg("use_sim_time") != UNSET:
        overrides["use_sim_time"] = _bool("use_sim_time", arg("use_sim_time"))
    params_file = arg("params_file", default_params_file())
    return NodeLaunch(
        parameters=([params_file] if params_file else []) + ([overrides] if overrides else []),
        remappings=remappings(
            arg("rgb_topic", "rgb/image"),
            arg("thermal_topic", "thermal/image"),
            arg("rgb_camera_info_topic", ""),
        ),
        namespace=arg("namespace", ""),
        env={FASTDDS_PROFILE_ENV: fastdds_profile_env(arg("fastdds_profile"), env)},
        overrides=overrides,
    )
