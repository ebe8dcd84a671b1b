"""Live replay through the real fusion node (child process) over rclpy on loopback, own ROS_DOMAIN_ID."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("sensor_msgs.msg")

from sccosf_ros import bags, topics
from sccosf_ros.replay import ReplayConfig, ReplayError, replay_bag
from sccosf_synth.demo_bag import SyntheticBagSpec, write_synthetic_bag

pytestmark = [pytest.mark.ros, pytest.mark.timeout(180)]


def _domain_id(offset: int) -> int:
    """A per-process domain in the portable 0-101 range, so concurrent test runs do not hear each other."""
    return 10 + (os.getpid() * 2 + offset) % 90


@pytest.fixture(scope="module")
def tiny_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bag") / "tiny"
    write_synthetic_bag(path, SyntheticBagSpec(seconds=1.0, height=96, width=128, seed=2))
    return path


def test_live_replay_through_node(
    tiny_bag: Path, random_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sccosf_ros.paths import FASTDDS_PROFILE_ENV, fastdds_profile_path

    monkeypatch.delenv(FASTDDS_PROFILE_ENV, raising=False)  # replay sets it for itself and the node
    out = tmp_path / "replay"
    cfg = ReplayConfig(
        checkpoint=random_checkpoint,
        device="cpu",
        domain_id=_domain_id(0),
        progress=False,
        startup_timeout_s=90,
        drain_timeout_s=30,
        num_threads=1,
    )
    report = replay_bag(tiny_bag, out, cfg)

    pairs = report["pairs"]
    assert (pairs["rgb_messages"], pairs["thermal_messages"]) == (30, 8)
    assert pairs["pairs_expected"] == 8
    assert pairs["outputs_received"] >= 1, (out / "node.log").read_text()
    assert pairs["outputs_received"] - pairs["outputs_unexpected"] + pairs["outputs_dropped"] == 8
    assert pairs["segmentation_received"] == pairs["outputs_received"]

    node = report["node_counters"]  # the node's /diagnostics minus its post-warm-up baseline
    assert node is not None and node["node_bad_inputs"] == 0
    assert 0 <= node["node_rgb_received"] <= 30 and 0 <= node["node_thermal_received"] <= 8
    assert node["inputs_not_delivered"] == 38 - node["node_rgb_received"] - node["node_thermal_received"]
    assert node["node_pairs_published"] + node["node_pairs_dropped_slow"] <= node["node_pairs_matched"] <= 8
    assert pairs["outputs_received"] <= node["node_pairs_published"]

    lat = report["latency_ms"]
    assert lat["count"] == pairs["outputs_received"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"] < 60_000

    fusion, seg = report["fusion"], report["segmentation"]
    assert fusion["frames"] == pairs["outputs_received"]
    assert all(math.isfinite(v) for v in fusion["mean"].values())
    assert seg is not None and 0.0 <= seg["miou"] <= 1.0
    assert not any("exited with code" in w for w in report["warnings"]), report["warnings"]
    assert f"Fast DDS profile: {fastdds_profile_path()}" in (out / "node.log").read_text()

    saved = json.loads((out / "report.json").read_text())
    assert saved["latency_ms"]["count"] == lat["count"]
    assert "latency" in (out / "report.md").read_text()
    info = bags.bag_info(out / "output_bag")
    assert info.topic(topics.FUSED).count == pairs["outputs_received"]
    assert info.topic(topics.CAMERA_RGB).count == 30
    rgb_stamps = {m.stamp_ns for m in bags.read_images(tiny_bag, [topics.CAMERA_RGB])}
    fused = list(bags.read_images(out / "output_bag", [topics.FUSED]))
    assert {m.stamp_ns for m in fused} <= rgb_stamps  # outputs carry the RGB stamp; warm-up excluded


def test_no_node_running_is_a_clear_error(tiny_bag: Path, tmp_path: Path) -> None:
    cfg = ReplayConfig(start_node=False, domain_id=_domain_id(1), startup_timeout_s=1.5, progress=False)
    with pytest.raises(ReplayError, match="no fusion node"):
        replay_bag(tiny_bag, tmp_path / "r", cfg)
