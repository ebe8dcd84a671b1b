"""What a live replay is asked to do, and the error it raises when it cannot run."""

from __future__ import annotations

from dataclasses import dataclass, field

from sccosf_ros.errors import SccosfError
from sccosf_ros.evaluation import EvalConfig


class ReplayError(SccosfError, RuntimeError):
    """The replay could not run (node did not start, bag unusable); the message says what to check."""


@dataclass
class ReplayConfig(EvalConfig):
    """Evaluation settings plus how to play: speed factor, node start, time limits."""

    backend: str = "auto"  # the node's default (EvalConfig's offline default is torch)
    rate: float = 1.0
    start_node: bool = True
    node_args: list[str] = field(default_factory=list)  # extra ``--ros-args`` items for the started node
    domain_id: int | None = None  # default: ROS_DOMAIN_ID of the environment
    startup_timeout_s: float = 120.0  # node start + model load + discovery + warm-up pair
    drain_timeout_s: float = 60.0  # longest wait for outputs after the last input
    warmup_pairs: int = 1  # pairs sent (re-stamped before the bag) and awaited before timing starts
    output_depth: int = 50
