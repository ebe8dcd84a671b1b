"""Launch the sccosf_ros fusion node: `ros2 launch sccosf_ros fusion.launch.py rgb_topic:=X thermal_topic:=Y`.

Every node parameter is also a launch argument (named as the parameter, defaults equal to the node's), plus
``params_file``, ``namespace``, ``use_sim_time``, the two input topics (bound by remapping) and
``fastdds_profile`` (the Fast DDS XML the node's process loads; see docs/node.md, "Transport"). A launch
argument overrides the params file only when it differs from the node's default, so the params file is not
silently replaced by arguments nobody set.

launch/launch_ros are imported only inside :func:`generate_launch_description`, so tests (and machines
without them) can import this file and read :func:`launch_arguments`.
"""

from __future__ import annotations

from sccosf_ros.node.params import PARAMETERS, default_text, launch_overrides

PACKAGE = "sccosf_ros"
EXECUTABLE = "fusion_node"
NODE_NAME = "sccosf"


def default_params_file() -> str:
    """The installed (or source checkout's) config/fusion.yaml; empty when none is found."""
    from sccosf_ros.paths import find_data_file

    path = find_data_file("config/fusion.yaml")
    return "" if path is None else str(path)


def default_fastdds_profile() -> str:
    """FASTRTPS_DEFAULT_PROFILES_FILE if the shell sets it, else the shipped large-image profile."""
    import os

    from sccosf_ros.paths import FASTDDS_PROFILE_ENV, with_fastdds_profile

    return with_fastdds_profile(os.environ).get(FASTDDS_PROFILE_ENV, "")


def launch_arguments() -> list[tuple[str, str, str]]:
    """(name, default, description) of every launch argument, node parameters first."""
    args = [(p.name, default_text(p), p.description) for p in PARAMETERS]
    args += [
        (
            "params_file",
            default_params_file(),
            "Node parameters YAML (applied before launch-argument overrides)",
        ),
        ("namespace", "", "Namespace for the node and its relative topics"),
        ("use_sim_time", "false", "Use /clock (true when replaying a bag with `ros2 bag play --clock`)"),
        ("rgb_topic", "rgb/image", "RGB camera image topic (remapped onto the node's rgb/image)"),
        ("thermal_topic", "thermal/image", "Thermal camera image topic (remapped onto thermal/image)"),
        (
            "fastdds_profile",
            default_fastdds_profile(),
            "Fast DDS XML profile for the node's process (shared-memory segment large enough for images); "
            "'' keeps Fast DDS's defaults",
        ),
    ]
    return args


def remappings(rgb_topic: str, thermal_topic: str) -> list[tuple[str, str]]:
    """Inputs are bound by remapping; the compressed variants follow image_transport's naming."""
    return [
        ("rgb/image", rgb_topic),
        ("thermal/image", thermal_topic),
        ("rgb/image/compressed", f"{rgb_topic}/compressed"),
        ("thermal/image/compressed", f"{thermal_topic}/compressed"),
    ]


def generate_launch_description():  # launch types exist only where launch is installed
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    from launch import LaunchDescription

    def node(context, *args, **kwargs):
        def value(name: str) -> str:
            return LaunchConfiguration(name).perform(context)

        overrides = launch_overrides({p.name: value(p.name) for p in PARAMETERS})
        overrides["use_sim_time"] = value("use_sim_time").lower() in ("true", "1", "yes")
        params_file = value("params_file")
        profile = value("fastdds_profile")
        from sccosf_ros.paths import FASTDDS_PROFILE_ENV

        return [
            Node(
                package=PACKAGE,
                executable=EXECUTABLE,
                name=NODE_NAME,
                namespace=value("namespace"),
                parameters=([params_file] if params_file else []) + [overrides],
                remappings=remappings(value("rgb_topic"), value("thermal_topic")),
                additional_env={FASTDDS_PROFILE_ENV: profile} if profile else None,
                output="screen",
                emulate_tty=True,
            )
        ]

    declared = [
        DeclareLaunchArgument(name, default_value=default, description=description)
        for name, default, description in launch_arguments()
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=node)])
