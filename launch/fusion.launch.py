"""Launch the sccosf_ros fusion node: `ros2 launch sccosf_ros fusion.launch.py rgb_topic:=X thermal_topic:=Y`.

Every node parameter is also a launch argument, plus ``params_file``, ``namespace``, ``use_sim_time``, the
two input topics (bound by remapping) and ``fastdds_profile``. An argument given on the command line
overrides the params file whatever its value; one not given leaves the params file alone;
``fastdds_profile:=''`` loads no Fast DDS profile. What the arguments mean is decided by the tested,
ROS-free :mod:`sccosf_ros.node.launch_args`; this file only hands its result to launch_ros.

launch/launch_ros are imported only inside :func:`generate_launch_description`, so tests (and machines
without them) can import this file.
"""

from __future__ import annotations

from sccosf_ros.node.launch_args import launch_arguments, node_launch

PACKAGE = "sccosf_ros"
EXECUTABLE = "fusion_node"
NODE_NAME = "sccosf"


def generate_launch_description():  # launch types exist only where launch is installed
    import os

    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    from launch import LaunchDescription

    declared = launch_arguments()

    def node(context, *args, **kwargs):
        values = {name: LaunchConfiguration(name).perform(context) for name, _, _ in declared}
        setup = node_launch(values, os.environ)
        return [
            Node(
                package=PACKAGE,
                executable=EXECUTABLE,
                name=NODE_NAME,
                namespace=setup.namespace,
                parameters=setup.parameters,
                remappings=setup.remappings,
                additional_env=setup.env,
                output="screen",
                emulate_tty=True,
            )
        ]

    return LaunchDescription(
        [
            *(DeclareLaunchArgument(name, default_value=d, description=doc) for name, d, doc in declared),
            OpaqueFunction(function=node),
        ]
    )
