"""preflight.host.rule: the one host rule (disturbed, excused) and how its figures read."""

from __future__ import annotations

import pytest

from preflight.host import rule


def test_one_figure_is_taken_above_a_quarter_and_no_figure_never_is() -> None:
    assert not rule.taken(0.25) and rule.taken(0.6)
    assert not rule.taken(None)


@pytest.mark.parametrize(("steal", "frozen", "neighbours", "expected"), [
    (None, None, None, False),
    (0.25, 0.25, 0.5, False),  # at the thresholds: still the job's
    (0.6, None, None, True),
    (None, 0.64, None, True),  # a frozen cgroup shows no steal
    (0.0, 0.0, 0.9, True),  # a neighbour's build took the machine
])
def test_disturbed_is_steal_or_frozen_over_a_quarter_or_neighbours_over_half(
        steal: float | None, frozen: float | None, neighbours: float | None,
        expected: bool) -> None:
    assert rule.disturbed(steal, frozen, neighbours) is expected


def test_only_a_near_miss_is_excused() -> None:
    near = {"kind": "throughput", "degradation_max": 0.25, "ratio_last_first": 0.5}
    assert rule.excused(near)
    assert not rule.excused({**near, "ratio_last_first": 0.1})
    assert rule.excused({"kind": "stall", "longest_stall_s": 2.0, "stall_s": 1.0})
    assert not rule.excused({"kind": "stall", "longest_stall_s": 4.0, "stall_s": 1.0})
    assert not rule.excused({"kind": "leak"})


def test_the_host_texts() -> None:
    assert rule.host_text(None, None) == "steal unknown"
    assert rule.host_text(0.031, 0.0, 0.12) == (
        "steal 3%, harness frozen 0%, other processes 12% of the machine")
    assert rule.attempt_host_text(0.0, 0.64) == "steal 0%, frozen 64%"
    assert rule.attempt_host_text(None, None) == "—"
    assert rule.attempt_host_text(0.5, None) == "steal 50%"
    assert rule.taken_text(0.6, 0.64) == (
        "60% host CPU steal and the harness frozen 64% of the time")
    assert rule.taken_text(None, 0.64) == "the harness frozen 64% of the time"

