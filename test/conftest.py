"""Shared fixtures, and reruns for real-time loopback tests.

``timing_retry``: tests that play camera streams through rclpy in real time and assert on counts and
latencies. On the shared 2-core development machine the whole test process sometimes stalls for 1-3 s
(seen on 2026-11-26 on code that had passed all day, CPU mostly idle; cause not found), which no
tolerance short of asserting nothing absorbs. Such a test is rerun up to ``reruns`` times with fresh
fixtures and passes only if one run passes; every rerun is listed in the summary. This is the small core
of pytest-rerunfailures, which is not installable here.

``random_checkpoint`` is a real ``tiny`` SC-CoSF checkpoint with seeded random weights, written once per
test session (building and saving takes well under a second). It is shared: treat the file as read-only;
copy it to ``tmp_path`` before corrupting or modifying it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _pytest.runner import runtestprotocol

_RERUNS: list[str] = []


def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    marker = item.get_closest_marker("timing_retry")
    if marker is None:
        return None
    reruns = int(marker.kwargs.get("reruns", 2))
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    for attempt in range(reruns + 1):
        reports = runtestprotocol(item, nextitem=nextitem, log=False)
        if attempt == reruns or not any(r.failed for r in reports):
            break
        failed = next(r for r in reports if r.failed)
        _RERUNS.append(f"{item.nodeid} (run {attempt + 1} failed: {failed.longrepr.reprcrash.message[:120]})"
                       if hasattr(failed.longrepr, "reprcrash") else item.nodeid)
        item._initrequest()  # fresh fixtures for the next run
    for report in reports:
        item.ihook.pytest_runtest_logreport(report=report)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _RERUNS:
        terminalreporter.section("timing_retry reruns")
        for line in _RERUNS:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path to a seeded random-weight ``tiny`` checkpoint with MSRS class names and palette."""
    from sccosf_ros.checkpoint import CheckpointMeta, save_checkpoint
    from sccosf_ros.model import build_model

    with torch.random.fork_rng():  # seeded, without disturbing other tests' RNG state
        torch.manual_seed(0)
        model = build_model("tiny", num_classes=9)
    meta = CheckpointMeta.for_model(model, preset="tiny", training={"note": "random weights, test fixture"})
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_random.safetensors", model, meta)
