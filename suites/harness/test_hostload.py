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


def test_a_measurement_is_made_again_only_while_it_failed_on_a_busy_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each reading advances 100 jiffies; the steal in it is scripted per attempt.
    steal_per_attempt = iter([70, 80, 0, 0])
    clock = {"steal": 0, "total": 0, "reading": 0}

    def reading() -> CpuTimes:
        clock["reading"] += 1
        if clock["reading"] % 2 == 0:  # the reading after a measurement
            clock["steal"] += next(steal_per_attempt)
        clock["total"] += 100
        return CpuTimes(steal=clock["steal"], total=clock["total"])

    monkeypatch.setattr(hostload, "read_cpu_times", reading)
    made: list[int] = []
    result, shares = hostload.measure_settled(lambda n: made.append(n) or "fail", lambda r: False)
    assert made == [1, 2, 3] and shares == [0.7, 0.8, 0.0]  # bounded; the third was quiet
    made.clear()
    result, shares = hostload.measure_settled(lambda n: made.append(n) or "fail", lambda r: False)
    assert made == [1] and result == "fail"  # failed on a quiet host: the job's failure
    made.clear()
    monkeypatch.setattr(hostload, "read_cpu_times", lambda: None)  # no /proc/stat
    assert hostload.measure_settled(lambda n: made.append(n) or "ok", lambda r: True)[0] == "ok"
    assert made == [1]
