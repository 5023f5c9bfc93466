"""preflight.host.load: the host's CPU steal from /proc/stat, and runs that carry it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from preflight.host import load as hostload
from preflight.host.load import Jiffies, parse_jiffies, steal_fraction

STAT = """cpu  100 5 50 800 10 0 5 30 0 0
cpu0 50 2 25 400 5 0 3 15 0 0
intr 12345
"""


def test_the_aggregate_line_is_read_and_guest_time_not_counted_twice() -> None:
    total = 100 + 5 + 50 + 800 + 10 + 0 + 5 + 30
    assert parse_jiffies(STAT) == Jiffies(total=total, idle=800, iowait=10, steal=30)


@pytest.mark.parametrize(
    "text", ["", "cpu0 1 2 3\n", "cpu 1 2 3 4 5 6 7\n", "cpu 1 2 x 4 5 6 7 8\n"]
)
def test_no_steal_column_is_no_figure(text: str) -> None:
    assert parse_jiffies(text) is None


def test_steal_share_between_two_readings() -> None:
    before, after = Jiffies(1000, 0, 0, steal=30), Jiffies(1400, 0, 0, steal=130)
    assert steal_fraction(before, after) == pytest.approx(0.25)
    assert steal_fraction(before, before) is None  # no time passed
    assert steal_fraction(None, after) is None


def test_reading_this_machine_or_a_missing_file(tmp_path: Path) -> None:
    assert hostload.read_jiffies(tmp_path / "missing") is None
    here = hostload.read_jiffies()
    if Path("/proc/stat").exists():
        assert here is not None and here.total > 0


def test_a_busy_process_gets_most_of_a_cpu_on_an_idle_machine_and_less_beside_load() -> None:
    share = hostload.probe_cpu_share(seconds=0.3)
    assert share is not None and 0.0 < share <= 1.0
    # One more spinner than CPUs: together they cannot get more than CPUs / spinners each.
    crowded = hostload.probe_cpu_share(seconds=0.3, processes=2 * hostload.cpu_count())
    assert crowded is not None and crowded <= 0.5 + 0.1


@pytest.mark.parametrize("output,share", [("0.97\n", 0.97), ("", None), ("nan", None),
                                          ("oops", None)])
def test_a_spinner_that_reports_nothing_usable_is_no_figure(output: str, share: float | None
                                                            ) -> None:
    assert hostload._spinner_share(output) == share


def test_dilation_is_the_inverse_share_bounded_and_one_on_a_quiet_machine() -> None:
    assert hostload.dilation(None) == 1.0
    assert hostload.dilation(0.98) == 1.0
    assert hostload.dilation(hostload.QUIET_SHARE) == 1.0
    assert hostload.dilation(0.5) == pytest.approx(2.0)
    assert hostload.dilation(0.3) == pytest.approx(1 / 0.3)
    assert hostload.dilation(0.05) == hostload.DILATION_MAX
    assert hostload.dilation(0.0) == hostload.DILATION_MAX


def test_the_freeze_meter_adds_up_only_the_stretches_the_process_could_not_run() -> None:
    meter = hostload.FreezeMeter(tick_s=0.02, late_s=0.1)
    now = {"t": 100.0}
    meter._last = 100.0
    for step in [0.02, 0.025, 0.05, 1.52, 0.02, 0.11, 0.02]:  # one 1.5 s freeze
        now["t"] += step
        meter.tick(now["t"])
    assert meter.frozen_s == pytest.approx(1.5)  # 5, 30 and 90 ms late: the scheduler's
    meter._elapsed = 2.0
    assert meter.fraction == pytest.approx(0.75)
    meter._elapsed = 0.5
    assert meter.fraction is None  # too short to say


def test_the_freeze_meter_measures_in_a_child_process_while_the_harness_holds_the_gil(
) -> None:
    with hostload.FreezeMeter() as meter:
        end = time.monotonic() + 1.2
        while time.monotonic() < end:  # pure Python holding the GIL
            pass
    # How much was frozen is the host's business (no bound here: a busy host freezes us);
    # that the child measured the whole stretch and was reaped is the meter's.
    assert meter._elapsed is not None and meter._elapsed >= 1.0
    assert meter.fraction is not None and 0.0 <= meter.fraction <= 1.0
    assert meter._child is None
