"""The readiness experiments' pure judges and the gate verdict's statuses, on recorded or
synthetic observations: no job runs, no clock."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from preflight.check.report import BatteryRow
from preflight.experiments.accounting import (
    AccountingError,
    AccountingObservation,
    judge_accounting,
    lost_and_duplicated,
    parse_items,
)
from preflight.experiments.base import FAIL, INCONCLUSIVE, NOT_APPLICABLE, PASS, timing_status
from preflight.experiments.faults import BatteryObservation, judge_battery
from preflight.experiments.lifecycle import (
    CompletionObservation,
    DriftObservation,
    judge_completion,
    judge_drift,
)
from preflight.experiments.overhead import OverheadObservation, judge_overhead
from preflight.experiments.stability import StabilityObservation, judge_stability
from preflight.gate.policy import policy_from_table
from preflight.gate.verdict import validate_ready_for_production


def completion(**changes) -> CompletionObservation:
    base = dict(returncode=0, timed_out=False, progress=(96, 96), published_monotone=True,
                checkpoint_files=3, checkpoints_declared=True, verify_rc=0, wall_s=1.0,
                stderr_tail="")
    return CompletionObservation(**{**base, **changes})


def test_completion_needs_exit_0_full_progress_checkpoints_and_valid_output() -> None:
    assert judge_completion(completion()).status == PASS
    early = judge_completion(completion(progress=(41, 96)))
    assert early.status == FAIL and "41/96" in early.reason
    assert "exit 1" in judge_completion(completion(returncode=1)).reason
    assert "checkpoints" in judge_completion(completion(checkpoint_files=0)).reason
    assert "verify exited 3" in judge_completion(completion(verify_rc=3)).reason
    assert judge_completion(completion(progress=(41, 0))).status == PASS  # total unknown


def test_drift_must_be_refused_and_leave_the_output_as_it_was() -> None:
    ok = DriftObservation(0, 2, "seed", 0, "abc", "abc", "")
    assert judge_drift(ok).status == PASS
    accepted = judge_drift(DriftObservation(0, 0, "seed", 0, "abc", "abc", ""))
    assert accepted.status == FAIL and "seed" in accepted.reason
    changed = judge_drift(DriftObservation(0, 2, "seed", 0, "abc", "xyz", ""))
    assert changed.status == FAIL and "fingerprint" in changed.reason


def test_items_accounting_counts_lost_and_duplicated() -> None:
    assert lost_and_duplicated(5, [0, 1, 1, 3, 4, 9]) == (1, 2)
    assert parse_items('{"total": 3, "items": [0, 1, 2]}') == (3, [0, 1, 2])
    for bad in ("nope", '{"total": -1, "items": []}', '{"total": 2, "items": [true]}'):
        with pytest.raises(AccountingError):
            parse_items(bad)
    clean = judge_accounting(AccountingObservation(True, 0, 3, (0, 1, 2), 0, ""))
    assert clean.status == PASS
    lossy = judge_accounting(AccountingObservation(True, 0, 3, (0, 0), 0, ""))
    assert lossy.status == FAIL and "2 item(s) lost and 1 committed twice" in lossy.reason


def verdict(ok: bool, conclusive: bool = True, ratio: float = 0.7, **extra) -> SimpleNamespace:
    """A detector verdict as the judges read it; failing ones are near misses by default."""
    fields = dict(ok=ok, conclusive=conclusive, reason="" if ok else "planted", per_unit=0.0,
                  ratio_last_first=ratio, longest_stall_s=0.1, stall_s=1.0,
                  degradation_max=0.2, kind="throughput", **extra)
    return SimpleNamespace(**fields, to_json=lambda: fields)


def stability(steal: float | None, **bad) -> StabilityObservation:
    verdicts = {k: verdict(k not in bad) for k in ("memory", "open_files", "throughput",
                                                   "stall")}
    return StabilityObservation(0, verdicts, steal, None, 1, "")


def test_a_timing_alarm_on_a_disturbed_host_is_inconclusive_a_leak_is_not() -> None:
    assert judge_stability(stability(0.02)).status == PASS
    assert judge_stability(stability(0.02, throughput=1)).status == FAIL
    stolen = judge_stability(stability(0.70, throughput=1))
    assert stolen.status == INCONCLUSIVE and "steal 70%" in stolen.reason
    assert judge_stability(stability(0.70, memory=1)).status == FAIL


def test_checkpoint_overhead_over_its_bound_fails_unless_the_host_took_the_cpu() -> None:
    quiet = OverheadObservation((1.3,), (1.0,), 0.0, 0.01, 0.0, 0.1)
    assert judge_overhead(quiet).status == FAIL
    stolen = OverheadObservation((1.3,), (1.0,), 0.0, 0.6, 0.0, 0.1)
    assert judge_overhead(stolen).status == INCONCLUSIVE
    within = OverheadObservation((1.05,), (1.0,), 0.0, 0.01, 0.0, 0.1)
    assert judge_overhead(within).status == PASS
    assert timing_status(False, 0.9, 0.9) == PASS


def row(status: str, exact: bool | None = True, lost: tuple[int, ...] = (3,)) -> BatteryRow:
    return BatteryRow(f"kill-{status}", status, "exact: differs", "preflight check x", lost,
                      exact)


def test_a_battery_whose_faults_were_never_injected_is_not_a_pass() -> None:
    skipped = judge_battery(BatteryObservation("kill", (row("SKIP", None, ()),), 10, (), 1.0))
    assert skipped.status == INCONCLUSIVE and skipped.injected is False
    passed = judge_battery(BatteryObservation("kill", (row("PASS"),), 10, (), 1.0))
    assert passed.status == PASS and passed.injected is True
    values = {m.name: m.value for m in passed.measurements}
    assert values["kill.exact"] is True and values["kill.lost_work_intervals"] == 0.3
    failed = judge_battery(BatteryObservation("kill", (row("FAIL", False),), 10, (), 1.0))
    assert failed.status == FAIL and "replay: preflight check x" in failed.reason
    none = judge_battery(BatteryObservation("rank", (), None, (), 0.0))
    assert none.status == NOT_APPLICABLE


def gate_report(*tests) -> dict:
    return {"experiments": True, "tests": list(tests)}


def entry(outcome: str, metrics=(), values=()) -> dict:
    return {"nodeid": f"job::{outcome}", "outcome": outcome, "tier": "small",
            "metrics": list(metrics),
            "measurements": [{"name": f"job.{n}", "value": v,
                              "inconclusive": outcome == "inconclusive"} for n, v in values]}


def test_gate_statuses_pass_fail_inconclusive_and_not_applicable() -> None:
    policy = policy_from_table({}, "<test>", "small")
    report = gate_report(
        entry("passed", ["leak_bytes_per_unit"], [("leak_bytes_per_unit", 10.0)]),
        entry("inconclusive", ["throughput_ratio"], [("throughput_ratio", 0.2)]),
    )
    found = validate_ready_for_production(report, policy)
    status = {r.id: r.status for r in found.results}
    assert status["max_leak_bytes_per_unit"] == "passed"
    assert status["min_throughput_ratio"] == "inconclusive"
    assert status["max_parser_crashes"] == "not_applicable"
    assert found.ready and found.tests_inconclusive == ("job::inconclusive",)
    strict = policy_from_table({"on_inconclusive": "fail"}, "<test>", "small")
    assert not validate_ready_for_production(report, strict).ready


def test_a_metric_an_applicable_experiment_owed_and_did_not_give_fails() -> None:
    policy = policy_from_table({}, "<test>", "small")
    report = gate_report(entry("failed", ["exact"]))
    found = validate_ready_for_production(report, policy)
    exact = next(r for r in found.results if r.id == "min_exact_resume")
    assert exact.status == "failed" and not found.ready


def test_policy_options_are_validated() -> None:
    from preflight.durable import BadInputError

    for table in ({"on_inconclusive": "maybe"}, {"inconclusive_reruns": 99},
                  {"suites": "suites/x"}):
        with pytest.raises(BadInputError):
            policy_from_table(table, "<test>")


def test_a_tenfold_slowdown_is_never_excused_by_the_host() -> None:
    verdicts = {k: verdict(k != "throughput", ratio=0.1) for k in ("memory", "open_files",
                                                                   "throughput", "stall")}
    found = judge_stability(StabilityObservation(0, verdicts, 0.7, None, 1, ""))
    assert found.status == FAIL


def test_neighbours_share_is_busy_time_less_the_jobs_own() -> None:
    from preflight.host.load import Jiffies, neighbour_share, parse_jiffies

    before = parse_jiffies("cpu  100 0 100 700 50 0 0 50 0 0\ncpu0 1 2 3 4 5 6 7 8\n")
    assert before == Jiffies(1000, 700, 50, 50)
    after = Jiffies(2000, 1100, 100, 100)  # 1000 jiffies: 400 idle, 50 iowait, 50 steal
    assert neighbour_share(before, after, job_cpu_s=1.0, ticks_per_s=100) == 0.4
    assert neighbour_share(None, after, 1.0) is None


def test_a_timing_failure_beside_busy_neighbours_is_inconclusive() -> None:
    obs = StabilityObservation(0, stability(0.0, throughput=1).verdicts, 0.0, 0.0, 1, "", 0.8)
    found = judge_stability(obs)
    assert found.status == INCONCLUSIVE and "other processes 80%" in found.reason


def test_a_job_that_leaves_processes_behind_did_not_complete_cleanly() -> None:
    found = judge_completion(completion(leftovers=("pid 7 ['sleep', '99']",)))
    assert found.status == FAIL and "outside its process group" in found.reason


def test_the_longest_experiments_start_first() -> None:
    from preflight.experiments.faults import FaultBattery
    from preflight.experiments.lifecycle import Completion
    from preflight.experiments.schedule import Planned, longest_first

    spec = SimpleNamespace(name="job")
    items = [(0, Planned(spec, Completion(), None)),  # type: ignore[arg-type]
             (1, Planned(spec, FaultBattery("kill"), None)),  # type: ignore[arg-type]
             (2, Planned(spec, FaultBattery("crashpoints"), None))]  # type: ignore[arg-type]
    assert [i for i, _ in longest_first(items, {})] == [2, 1, 0]
    seen = {"job::faults.kill": 90.0, "job::faults.crashpoints": 20.0}
    assert [i for i, _ in longest_first(items, seen)] == [1, 2, 0]


def test_the_eta_before_any_result_comes_from_the_previous_gate() -> None:
    from preflight.experiments.schedule import Costs, GateProgress

    now = [100.0]
    costs = Costs({"a": 120.0, "b": 60.0, "c": 30.0}, frozenset({"c"}), True, workers=2)
    progress = GateProgress(3, None, clock=lambda: now[0], costs=costs)
    progress.begin("a")
    progress.begin("b")
    now[0] = 160.0
    # a has 60 s left, b none; side by side that is the longest (60), then c alone (30).
    assert progress.eta_s() == 90.0
    assert GateProgress(4, None, clock=lambda: 0.0).eta_s() is None


def test_the_eta_scales_what_is_left_by_how_slow_the_finished_ran() -> None:
    from preflight.experiments.schedule import Costs, eta_s

    # The longest ran first and took 3x its previous time: the rest will too. A mean per
    # finished experiment would say 23 x 450 s; what is left is 3 x (10 x 20) / 2.
    by_label = {"long": 150.0, **{f"s{i}": 20.0 for i in range(10)}}
    costs = Costs(by_label, frozenset(), True, workers=2)
    assert eta_s(costs, {"long": 450.0}, {}) == 300.0
    # In relative units nothing says seconds until one finishes.
    units = Costs({"x": 10.0, "y": 1.0, "z": 1.0}, frozenset({"z"}), False, workers=2)
    assert eta_s(units, {}, {"x": 5.0}) is None
    assert eta_s(units, {"x": 50.0}, {"y": 2.0}) == 3.0 + 5.0  # 5 s per unit


def test_costs_are_seconds_only_when_the_previous_gate_timed_every_experiment() -> None:
    from preflight.experiments.faults import FaultBattery
    from preflight.experiments.lifecycle import Completion
    from preflight.experiments.schedule import Planned, costs_for

    spec = SimpleNamespace(name="job")
    side = [Planned(spec, FaultBattery("kill"), None),  # type: ignore[arg-type]
            Planned(spec, Completion(), "no total")]  # type: ignore[arg-type]
    alone: list[Planned] = []
    timed = costs_for(side, alone, {"job::faults.kill": 42.0}, workers=2)
    assert timed.in_seconds and timed.by_label == {"job::faults.kill": 42.0}
    untimed = costs_for(side, alone, {}, workers=2)
    assert not untimed.in_seconds and untimed.by_label == {"job::faults.kill": 4.0}
