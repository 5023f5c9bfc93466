"""harness.hostload: the host's CPU steal from /proc/stat, and runs that carry it."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import hostload
from harness.hostload import CpuTimes, parse_cpu_line, steal_fraction

STAT = """cpu  100 5 50 800 10 0 5 30 0 0
cpu0 50 2 25 400 5 0 3 15 0 0
intr 12345
"""


def test_the_aggregate_line_is_read_and_guest_time_not_counted_twice() -> None:
    assert parse_cpu_line(STAT) == CpuTimes(steal=30, total=100 + 5 + 50 + 800 + 10 + 0 + 5 + 30)


@pytest.mark.parametrize(
    "text", ["", "cpu0 1 2 3\n", "cpu 1 2 3 4 5 6 7\n", "cpu 1 2 x 4 5 6 7 8\n"]
)
def test_no_steal_column_is_no_figure(text: str) -> None:
    assert parse_cpu_line(text) is None


def test_steal_share_between_two_readings() -> None:
    before, after = CpuTimes(steal=30, total=1000), CpuTimes(steal=130, total=1400)
    assert steal_fraction(before, after) == pytest.approx(0.25)
    assert steal_fraction(before, before) is None  # no time passed
    assert steal_fraction(None, after) is None
    assert not hostload.disturbed(0.25) and hostload.disturbed(0.6)
    assert not hostload.disturbed(None)


def test_reading_this_machine_or_a_missing_file(tmp_path: Path) -> None:
    assert hostload.read_cpu_times(tmp_path / "missing") is None
    here = hostload.read_cpu_times()
    if Path("/proc/stat").exists():
        assert here is not None and here.total > 0
