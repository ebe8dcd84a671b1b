"""``input_qos: auto``: the reliability rule (no ROS) and the parameter that selects it."""

from __future__ import annotations

import pytest

from sccosf_ros.node.params import SPECS, ParameterError, validate
from sccosf_ros.node.qos import BEST_EFFORT, RELIABLE, choose_reliability, describe


def test_reliable_only_when_every_publisher_offers_reliable() -> None:
    assert choose_reliability([RELIABLE]) == RELIABLE
    assert choose_reliability([RELIABLE, RELIABLE]) == RELIABLE
    assert choose_reliability([BEST_EFFORT]) == BEST_EFFORT
    # one best-effort publisher among reliable ones: a reliable reader could not match it
    assert choose_reliability([RELIABLE, BEST_EFFORT, RELIABLE]) == BEST_EFFORT
    assert choose_reliability(["RELIABLE"]) == RELIABLE  # spelling is not the policy's business


def test_unknown_offers_count_as_best_effort_which_matches_every_writer() -> None:
    assert choose_reliability(["system_default"]) == BEST_EFFORT
    assert choose_reliability([RELIABLE, "unknown"]) == BEST_EFFORT


def test_no_publisher_keeps_the_current_choice_or_starts_best_effort() -> None:
    assert choose_reliability([]) == BEST_EFFORT  # hears either kind of driver when it appears
    assert choose_reliability([], current=RELIABLE) == RELIABLE  # a driver restarting: no flapping
    assert choose_reliability([], current=BEST_EFFORT) == BEST_EFFORT
    assert choose_reliability([BEST_EFFORT], current=RELIABLE) == BEST_EFFORT
    assert choose_reliability([RELIABLE], current=BEST_EFFORT) == RELIABLE


def test_describe_counts_offers_for_the_log() -> None:
    assert describe([RELIABLE, BEST_EFFORT, RELIABLE]) == "1 best_effort, 2 reliable"
    assert describe([]) == "no publisher"


def test_auto_is_the_default_input_qos_and_not_an_output_qos() -> None:
    assert SPECS["input_qos"].default == "auto"
    for choice in ("auto", "sensor_data", "reliable", "best_effort", "system_default"):
        assert validate({"input_qos": choice})["input_qos"] == choice
    with pytest.raises(ParameterError, match="output_qos"):
        validate({"output_qos": "auto"})
