"""Live replay of a bag through the fusion node (see :mod:`sccosf_ros.replay.run`).

Importing this package needs no ROS; :func:`replay_bag` imports rclpy when it runs.
"""

from sccosf_ros.replay.config import ReplayConfig, ReplayError
from sccosf_ros.replay.run import replay_bag

__all__ = ["ReplayConfig", "ReplayError", "replay_bag", "ros_missing"]


def ros_missing() -> str | None:
    """Why a live replay cannot run here (rclpy or a message package not importable), or None."""
    try:
        import diagnostic_msgs.msg  # noqa: F401
        import rclpy  # noqa: F401
        import sensor_msgs.msg  # noqa: F401
        import std_msgs.msg  # noqa: F401
    except ImportError as exc:
        return str(exc)
    return None
