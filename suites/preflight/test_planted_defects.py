"""The harness proves itself: each planted defect is flagged by its detector and by no other,
the clean job passes every detector, and twenty clean runs raise no false alarm.

The jobs (fixtures/*.py) run for real, as subprocesses under Run and the sampler, at the
small tier; the verdicts come from the same pure detectors the readiness experiments use.
The defects are far beyond any host noise (1 MiB per unit, a file per unit, a tenfold
slowdown, a 4 s stall against a 1 s limit), so the proof is made once, on the machine as it
is, and never skipped: on a host that steals most of the CPU each is still caught. A clean
job may come out inconclusive there (a wall-clock alarm while the host took the CPU, read
by the gate's own rule), never failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from preflight.analysis import leak_verdict, settings_for, stall_verdict, throughput_verdict
from preflight.analysis.confirm import confirm
from preflight.reports.session import Recorder
from preflight.workload import Run, WorkloadSpec, load_specs
from suites.preflight.helpers import (
    FIXTURE_SAMPLE_INTERVAL_S,
    FIXTURE_SPECS,
    TIMING_DETECTORS,
    HostSeen,
    standing_status,
    watching_host,
)

RUN_TIMEOUT_S = 120.0  # the longest job is ~8 s of work; a starved host may triple it
PRODUCTION_UNITS = 30000
SMALL = settings_for("small")
MIB = 1 << 20
CLEAN_RUNS = 20
# Long enough for every detector to reach a conclusive verdict at this sample interval.
CLEAN_PARAMS = {"units": 80, "unit_ms": 25}
CLEAN_SAMPLE_INTERVAL_S = 0.04
CONCLUSIVE_MIN = 15  # of CLEAN_RUNS, per detector
DETECTORS = ("memory", "open_files", "threads", "throughput", "stall")
PLANTED_STALL_S = 4.0  # fixtures/workloads.toml, stall's --stall-s (watched seconds)
# Freezes of 0.1-0.25 s: the job does not count them (_job.FROZEN_S), the harness's watched
# clock does (preflight.analysis.throughput.UNOBSERVED_MIN_S).
STALL_SEEN_EXTRA_S = 1.0

# Which detectors each planted job must trip; every other detector must not fail it.
EXPECTED_FAILURES = {
    "clean": set(),
    "leaky": {"memory"},
    "fd_leak": {"open_files"},
    "slowing": {"throughput"},
    "stall": {"stall"},
}
# The slowing job runs twice: the gate's stability experiment re-runs a job whose only
# alarms are wall-clock ones, and a real slowdown must survive that confirming run.
CONFIRMING = "slowing-again"


@dataclass
class Batch:
    runs: dict[str, Run]  # by label
    host: HostSeen  # what the host did while they ran


def verdicts(run: Run) -> dict[str, Any]:
    """Every detector's verdict on one finished run."""
    progress = run.progress()
    total = progress[1] if progress else None
    samples = run.samples
    return {
        "memory": leak_verdict(samples, metric="uss_bytes", units_production=PRODUCTION_UNITS),
        "open_files": leak_verdict(samples, metric="open_files"),
        "threads": leak_verdict(samples, metric="threads"),
        "throughput": throughput_verdict(samples),
        "stall": stall_verdict(samples, total=total),
    }


def run_batch(jobs: list[tuple[str, WorkloadSpec, dict[str, int]]], base: Path,
              interval_s: float) -> Batch:
    """Start every job at once (they mostly sleep), then wait for each, bounded; the host
    is watched over the whole batch."""
    runs = {label: Run(spec, base / label, params, sample_interval_s=interval_s)
            for label, spec, params in jobs}
    with watching_host() as host:
        try:
            for run in runs.values():
                run.start()
            for run in runs.values():
                run.wait(RUN_TIMEOUT_S)
        finally:
            for run in runs.values():
                run.close()
    for run in runs.values():
        assert run.returncode == 0 and not run.timed_out, run.describe()
    return Batch(runs, host)


def mismatches(job: str, found: dict[str, Any], host: HostSeen) -> list[str]:
    """How one job's verdicts differ from what was planted (pure): each expected detector
    flags it conclusively, whatever the host did; no other detector's alarm stands."""
    wrong: list[str] = []
    for name, verdict in found.items():
        status = standing_status(name, verdict.ok, verdict.conclusive, host)
        if name in EXPECTED_FAILURES[job]:
            if verdict.ok or not verdict.conclusive:
                wrong.append(f"{job}: {name} missed the planted defect: {verdict.reason}")
        elif status == "failed":
            wrong.append(f"{job}: {name} raised a false alarm: {verdict.reason}")
    return wrong


def measurement_errors(found: dict[str, dict[str, Any]]) -> list[str]:
    """The planted sizes come out as planted (pure): the detectors measure, not just flag."""
    errors: list[str] = []
    memory = found["leaky"]["memory"]
    # 1 MiB per unit plus the list slot and allocator rounding; a USS read that lags the
    # progress read (the sampler's CPU budget) spreads the interval, not the slope.
    if not 0.5 * MIB < memory.per_unit < 1.5 * MIB or memory.per_unit_low <= 0.25 * MIB:
        errors.append(f"leak per unit not ~1 MiB: {memory.reason}")
    if memory.projected_growth != pytest.approx(memory.per_unit * PRODUCTION_UNITS):
        errors.append(f"leak not projected to {PRODUCTION_UNITS} units: {memory.reason}")
    fds = found["fd_leak"]["open_files"]
    if fds.per_unit != pytest.approx(1.0, abs=0.05):
        errors.append(f"fd leak not 1 per unit: {fds.reason}")
    throughput = found["slowing"]["throughput"]
    if not throughput.ratio_last_first < 0.5:  # planted ~0.2; the limit is 0.8
        errors.append(f"tenfold slowdown read as {throughput.reason}")
    stall = found["stall"]["stall"]
    # The job stalls 4 watched seconds at 40% of its 150 units; sampling can only shorten
    # what is seen, short freezes lengthen it a little.
    seen = stall.longest_stall_s
    if stall.stalled_at_done != 60 or not 0.75 * PLANTED_STALL_S < seen <= (
            PLANTED_STALL_S + STALL_SEEN_EXTRA_S):
        errors.append(f"stall not at 60 units or not the {PLANTED_STALL_S:g} s planted: "
                      f"{stall.reason}")
    return errors


def _record(record: Recorder, name: str, run: Run, found: dict[str, Any]) -> None:
    record.run(name, run)
    for detector, verdict in found.items():
        record.verdict(f"{name}.{detector}", verdict)


@pytest.mark.long  # drives real jobs for seconds: make test-long (CI runs it)
@pytest.mark.timeout(300)
def test_each_planted_defect_is_caught_by_its_detector_and_no_other(
    tmp_path: Path, preflight_record: Recorder
) -> None:
    """One batch, judged whole: split over tests, xdist could run it once per worker."""
    specs = load_specs(FIXTURE_SPECS)
    jobs = [(name, specs[name], specs[name].params("small")) for name in EXPECTED_FAILURES]
    jobs.append((CONFIRMING, specs["slowing"], specs["slowing"].params("small")))
    batch = run_batch(jobs, tmp_path, FIXTURE_SAMPLE_INTERVAL_S)
    found = {label: verdicts(run) for label, run in batch.runs.items()}
    for label, run in batch.runs.items():
        _record(preflight_record, label, run, found[label])
    wrong = [m for job in EXPECTED_FAILURES for m in mismatches(job, found[job], batch.host)]
    wrong += measurement_errors(found)
    standing = confirm(found["slowing"], found[CONFIRMING])
    if "; reproduced" not in standing["throughput"].reason:
        wrong.append(f"the slowdown did not survive its confirming run: "
                     f"{standing['throughput'].reason}")
    assert not wrong, "\n".join([*wrong, f"host: {batch.host}"])


@pytest.mark.long  # drives real jobs for seconds: make test-long (CI runs it)
@pytest.mark.timeout(300)
def test_no_false_alarms_over_20_clean_runs(tmp_path: Path, preflight_record: Recorder) -> None:
    spec = load_specs(FIXTURE_SPECS)["clean"]
    jobs = [(f"clean-{n}", spec, CLEAN_PARAMS) for n in range(CLEAN_RUNS)]
    batch = run_batch(jobs, tmp_path, CLEAN_SAMPLE_INTERVAL_S)
    alarms: list[str] = []
    judged = dict.fromkeys(DETECTORS, 0)
    for label, run in batch.runs.items():
        for name, verdict in verdicts(run).items():
            status = standing_status(name, verdict.ok, verdict.conclusive, batch.host)
            judged[name] += status == "passed"
            if status == "failed":
                alarms.append(f"{label} {name}: {verdict.reason}")
    preflight_record("clean_runs", len(batch.runs), unit="runs")
    preflight_record("false_alarms", len(alarms), unit="verdicts", threshold=0, ok=not alarms)
    assert not alarms, "\n".join([*alarms, f"host: {batch.host}"])
    # An inconclusive verdict passes trivially, so most runs must really have been judged.
    # Memory and open files are judged against units of work: the host cannot take that
    # away. The wall-clock detectors may be inconclusive while the host took the CPU.
    short = {name: count for name, count in judged.items() if count < CONCLUSIVE_MIN
             and not (name in TIMING_DETECTORS and batch.host.disturbed)}
    assert not short, f"judged in fewer than {CONCLUSIVE_MIN} runs: {short}; host: {batch.host}"


def test_a_wall_clock_alarm_under_a_disturbed_host_is_inconclusive_never_a_pass() -> None:
    quiet, stolen, frozen = HostSeen(0.02, 0.0), HostSeen(0.7, None), HostSeen(None, 0.6)
    assert standing_status("throughput", False, True, quiet) == "failed"
    assert standing_status("stall", False, True, stolen) == "inconclusive"
    assert standing_status("throughput", False, True, frozen) == "inconclusive"
    assert standing_status("memory", False, True, stolen) == "failed"  # judged per unit
    assert standing_status("memory", True, False, quiet) == "inconclusive"  # too few points
    assert standing_status("stall", True, True, stolen) == "passed"
    assert str(frozen) == "steal unknown, harness frozen 60%"
