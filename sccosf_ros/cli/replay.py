"""``sccosf-replay BAG --out DIR``: play a bag through the live fusion node and report (see :mod:`..replay`).

The node is started as a child process with the bag's topics remapped in (``--start-node``, the default), or
an already running one is used (``--no-start-node``; it must subscribe to the bag's topics, e.g. started with
``fusion_node --ros-args -r rgb/image:=/camera/rgb/image_raw -r thermal/image:=/camera/thermal/image_raw``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sccosf_ros.backends import backend_names
from sccosf_ros.cli.evaluate import add_common_arguments, config_from_args, print_summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sccosf-replay", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_arguments(parser)
    parser.add_argument(
        "--backend",
        default="auto",
        choices=backend_names(),
        help="the node's backend (default auto, as the node's: onnxruntime on a CPU where installed)",
    )
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor (0.5 = half speed)")
    parser.add_argument(
        "--start-node",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="start fusion_node as a child process (default) or use a running one",
    )
    parser.add_argument("--domain-id", type=int, help="ROS_DOMAIN_ID (default: the environment's)")
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=120.0,
        help="seconds for the node to load its model and answer a warm-up pair",
    )
    parser.add_argument(
        "--node-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra --ros-args item for the started node, e.g. --node-arg=-p "
        "--node-arg=input_qos:=reliable (repeatable)",
    )
    args = parser.parse_args(argv)
    from sccosf_ros.errors import SccosfError
    from sccosf_ros.replay import ReplayConfig, replay_bag, ros_missing

    missing = ros_missing()
    if missing:
        print(
            f"sccosf-replay: error: needs rclpy and sensor_msgs ({missing}); sccosf-eval works without ROS",
            file=sys.stderr,
        )
        return 2
    base = config_from_args(args)
    cfg = ReplayConfig(
        **vars(base),
        rate=args.rate,
        start_node=args.start_node,
        domain_id=args.domain_id,
        startup_timeout_s=args.startup_timeout,
        node_args=list(args.node_arg),
    )
    try:
        report = replay_bag(args.bag, args.out, cfg)
    except (SccosfError, OSError) as exc:
        print(f"sccosf-replay: error: {exc}", file=sys.stderr)
        return 2
    print_summary(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
