"""``replay_bag``: play a bag into the running fusion node over rclpy, record its outputs, score, time them.

Why: the offline evaluator scores the model; this measures the node as deployed — DDS transport, the
synchroniser, the one-slot hand-off that drops pairs when inference is slower than the cameras — and the
end-to-end latency a robot would see. The parts: :mod:`.scan` reads the bag once before playing,
:mod:`.supervisor` runs the node as a child process, :mod:`.player` (the only part that imports rclpy) plays
and records, :mod:`.score` scores with the offline evaluator's scorer and writes the report.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sccosf_ros import bags
from sccosf_ros.evaluation import load_labels
from sccosf_ros.paths import with_fastdds_profile
from sccosf_ros.replay.bag_survey import BagLabels, ReplayJob, check_bag, first_rgb_size, scan_bag
from sccosf_ros.replay.config import ReplayConfig
from sccosf_ros.replay.supervisor import NodeProcess, node_command


def prepare(bag: str | Path, out_dir: str | Path, cfg: ReplayConfig) -> ReplayJob:
    """Check the settings and the bag, read its labels and pairs; nothing starts before this passes."""
    if not cfg.rate > 0:
        raise ValueError(f"rate must be > 0, got {cfg.rate}")
    bag, out = Path(bag), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    check_bag(bag, cfg)
    if cfg.write_bag and (out / "output_bag").exists():
        raise bags.BagError(f"{out / 'output_bag'} exists; replay into an empty directory")
    labels = BagLabels(*load_labels(bag, cfg.label_topic))
    return ReplayJob(bag, out, cfg, scan_bag(bag, cfg), labels)


def child_environment(domain: int) -> dict[str, str]:
    """The node's environment: this domain, unbuffered logs, this checkout importable, the Fast DDS profile.

    Both ends get the shipped Fast DDS profile (unless the user set one): with Fast DDS's default 512 KiB
    shared-memory segment, images are recycled mid-read or fragmented over UDP and frames go missing
    (docs/node.md). This process's own setting counts only if no participant exists in it yet, so it is set
    here too.
    """
    src = str(Path(__file__).resolve().parents[2])  # the child imports this very package, installed or not
    pythonpath = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)
    os.environ.update(with_fastdds_profile(os.environ))
    return dict(os.environ, ROS_DOMAIN_ID=str(domain), PYTHONUNBUFFERED="1", PYTHONPATH=pythonpath)


def replay_bag(bag: str | Path, out_dir: str | Path, config: ReplayConfig | None = None) -> dict[str, Any]:
    """Play ``bag`` through the node, record and score its outputs; writes the same files as the evaluator."""
    from sccosf_ros.replay.player import LivePlayer  # rclpy: imported when a replay actually runs
    from sccosf_ros.replay.score import score_playback

    cfg = config or ReplayConfig()
    job = prepare(bag, out_dir, cfg)
    domain = cfg.domain_id if cfg.domain_id is not None else int(os.environ.get("ROS_DOMAIN_ID", "0"))
    env = child_environment(domain)
    node_code = None
    with LivePlayer(cfg, domain) as player:
        cmd = node_command(cfg, first_rgb_size(job.scan, cfg))
        node = NodeProcess(cmd, job.out / "node.log", env) if cfg.start_node else None
        try:
            playback = player.run(job.bag, job.scan, node)
        finally:
            node_code = node.stop() if node is not None else None
    warnings = [] if node_code in (None, 0) else [f"the node exited with code {node_code} (see node.log)"]
    return score_playback(job, playback, warnings)
