"""harness.hostload: the host's CPU steal from /proc/stat, and runs that carry it."""

from __future__ import annotations

import time
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


class NoFreezes(hostload.FreezeMeter):
    """A FreezeMeter that measured nothing frozen, without its child process."""

    def __enter__(self) -> hostload.FreezeMeter:
        self._elapsed = 2.0
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def test_a_measurement_is_made_again_only_while_it_failed_on_a_busy_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each reading advances 100 jiffies; the steal in it is scripted per attempt.
    steal_per_attempt = iter([70, 80, 0, 0, 0, 0, 0])
    clock = {"steal": 0, "total": 0, "reading": 0}

    def reading() -> CpuTimes:
        clock["reading"] += 1
        if clock["reading"] % 2 == 0:  # the reading after a measurement
            clock["steal"] += next(steal_per_attempt)
        clock["total"] += 100
        return CpuTimes(steal=clock["steal"], total=clock["total"])

    monkeypatch.setattr(hostload, "read_cpu_times", reading)
    monkeypatch.setattr(hostload, "FreezeMeter", NoFreezes)  # no child process per attempt
    made: list[int] = []
    def quiet() -> float:
        return 0.99

    result, shares = hostload.measure_settled(lambda n: made.append(n) or "fail", lambda r: False,
                                              probe=quiet)
    assert made == [1, 2, 3] and [d.steal for d in shares] == [0.7, 0.8, 0.0]  # bounded
    made.clear()
    result, shares = hostload.measure_settled(lambda n: made.append(n) or "fail", lambda r: False,
                                              probe=quiet)
    assert made == [1] and result == "fail"  # failed on a quiet host: the job's failure
    made.clear()
    result, shares = hostload.measure_settled(lambda n: made.append(n) or "fail", lambda r: False,
                                              probe=lambda: 0.3)
    assert made == [1, 2, 3]  # no steal, but the machine gave a third of a CPU: starved
    made.clear()
    monkeypatch.setattr(hostload, "read_cpu_times", lambda: None)  # no /proc/stat
    assert hostload.measure_settled(lambda n: made.append(n) or "ok", lambda r: True)[0] == "ok"
    assert made == [1]


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


def test_the_wait_for_cpu_ends_when_the_machine_is_quiet_or_the_budget_is_spent() -> None:
    now = {"t": 0.0}
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now["t"] += seconds

    def waiting(shares: list[float | None], budget_s: float) -> list[float | None]:
        readings = iter(shares)
        return hostload.wait_for_cpu(budget_s, lambda: next(readings), every_s=5.0,
                                     sleep=sleep, clock=lambda: now["t"])

    assert waiting([0.3, 0.4, 0.9, 0.2], budget_s=60.0) == [0.3, 0.4, 0.9]  # quiet: go
    assert slept == [5.0, 5.0]
    slept.clear()
    assert waiting([0.3] * 10, budget_s=12.0) == [0.3, 0.3, 0.3]  # bounded
    assert sum(slept) <= 12.0
    assert waiting([None, 0.9], budget_s=60.0) == [None]  # no figure: nothing to wait for



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


def test_a_failure_is_unmeasurable_only_when_every_attempt_was_disturbed() -> None:
    busy, frozen, quiet = (hostload.Disturbance(0.7, 0.0), hostload.Disturbance(None, 0.6),
                           hostload.Disturbance(0.02, 0.01))
    assert busy.disturbed and frozen.disturbed and not quiet.disturbed
    assert str(frozen) == "steal unknown, frozen 60%"
    reason = hostload.unmeasurable(False, [busy, frozen])
    assert reason is not None and "steal 70%, frozen 0%; steal unknown, frozen 60%" in reason
    assert hostload.unmeasurable(False, [busy, quiet]) is None  # a quiet attempt failed too
    assert hostload.unmeasurable(True, [busy]) is None
    assert hostload.unmeasurable(False, []) is None
    assert hostload.starved(busy, lambda: 1.0) and not hostload.starved(quiet, lambda: 1.0)
    assert hostload.starved(quiet, lambda: 0.3)
