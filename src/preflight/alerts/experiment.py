"""A detection experiment: run a workload with one planted condition (or none), watch its
metrics, and measure how long the alert took. Record first, judge after (Jepsen): the
run, the snapshots and the injection time are recorded; `Detection.ok` is pure.

Convention for the workload spec: the job writes its metrics textfile to
`{workdir}.metrics.prom` and its JSON log to `{workdir}.log.jsonl` (siblings of the
workdir, which the job owns). The experiment sets PREFLIGHT_FAULTS (the plant's fault
points) and PREFLIGHT_FAULTS_TRACE (`{workdir}.faults.trace`) in the job's environment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from preflight.alerts.evaluate import Alert
from preflight.alerts.latency import (
    Injection,
    detection_latency_s,
    injection_from_log,
    read_log_records,
)
from preflight.alerts.rules import Thresholds
from preflight.alerts.watch import FileSource, TraceWatch, Watcher, WatchResult
from preflight.durable.faults import ENV_FAULTS as FAULTS_ENV
from preflight.durable.faults import ENV_TRACE as TRACE_ENV
from preflight.host import load as hostload
from preflight.workload import Run, WorkloadSpec

METRICS_SUFFIX = ".metrics.prom"
LOG_SUFFIX = ".log.jsonl"
TRACE_SUFFIX = ".faults.trace"


def sidecar(workdir: Path, suffix: str) -> Path:
    return Path(str(Path(workdir).absolute()) + suffix)


@dataclass(frozen=True)
class Plant:
    """One condition to inject. `expect` is the rule that must fire (None: a clean run,
    where nothing may). The injection time comes from the job's log (`log_fault`) or from
    the `trace_nth` hit of the fault point `trace_point`."""

    name: str
    expect: str | None
    params: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    faults: str | None = None  # PREFLIGHT_FAULTS for the job
    log_fault: str | None = None
    trace_point: str | None = None
    trace_nth: int = 1

    def __post_init__(self) -> None:
        if self.expect is not None and (self.log_fault is None) == (self.trace_point is None):
            raise ValueError(f"plant {self.name!r}: give exactly one of log_fault, trace_point")


@dataclass(frozen=True)
class Detection:
    plant: Plant
    fired: Mapping[str, Alert]
    injection: Injection | None
    latency_s: float | None
    watched_s: float
    snapshots: int
    errors: tuple[str, ...]
    returncode: int | None
    run: str

    @property
    def unexpected(self) -> list[str]:
        return sorted(set(self.fired) - {self.plant.expect})

    @property
    def ok(self) -> bool:
        """The expected rule fired after the injection and nothing else fired (a clean
        run: nothing fired), on a complete record of a job that exited 0."""
        if self.errors or self.returncode != 0 or self.unexpected:
            return False
        if self.plant.expect is None:
            return True
        return self.latency_s is not None and self.latency_s >= 0

    @property
    def reason(self) -> str:
        if self.errors:
            return f"incomplete record: {'; '.join(self.errors)}"
        if self.returncode != 0:
            return f"the job did not exit 0: {self.run}"
        if self.unexpected:
            return f"unexpected alert(s) {self.unexpected} on plant {self.plant.name!r}"
        if self.plant.expect is None:
            return f"no alert in {self.watched_s:.1f} s of a clean run"
        if self.injection is None:
            return f"no injection time recorded for {self.plant.name!r}"
        if self.latency_s is None:
            return f"{self.plant.expect} did not fire within {self.watched_s:.1f} s"
        if self.latency_s < 0:
            return f"{self.plant.expect} fired {-self.latency_s:.2f} s before the injection"
        return f"{self.plant.expect} fired {self.latency_s:.2f} s after the injection"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "alert_detection",
            "conclusive": not self.errors,
            "reason": self.reason,
            "plant": self.plant.name,
            "expect": self.plant.expect,
            "ok": self.ok,
            "fired": {k: a.to_json() for k, a in sorted(self.fired.items())},
            "unexpected": self.unexpected,
            "injection": self.injection.to_json() if self.injection else None,
            "latency_s": self.latency_s,
            "watched_s": self.watched_s,
            "snapshots": self.snapshots,
            "errors": list(self.errors),
            "returncode": self.returncode,
            "run": self.run,
        }


def judge(plant: Plant, result: WatchResult, injection: Injection | None, run: Run) -> Detection:
    """Turn one recorded experiment into a Detection (pure over the recorded data)."""
    alert = result.fired.get(plant.expect) if plant.expect else None
    return Detection(
        plant=plant,
        fired=MappingProxyType(dict(result.fired)),
        injection=injection,
        latency_s=detection_latency_s(injection, alert),
        watched_s=result.watched_s,
        snapshots=len(result.history),
        errors=result.errors,
        returncode=run.returncode,
        run=run.describe(),
    )


class AlertExperiment:
    """One plant on one workload: start() launches the watcher then the job; finish()
    waits (bounded), stops both and judges."""

    def __init__(
        self,
        spec: WorkloadSpec,
        params: Mapping[str, object],
        plant: Plant,
        workdir: Path,
        thresholds: Thresholds,
        *,
        poll_s: float = 0.1,
        sample_interval_s: float = 0.2,
    ) -> None:
        self.plant = plant
        self.workdir = Path(workdir).absolute()
        self.metrics_path = sidecar(self.workdir, METRICS_SUFFIX)
        self.log_path = sidecar(self.workdir, LOG_SUFFIX)
        self.trace_path = sidecar(self.workdir, TRACE_SUFFIX)
        traces = []
        self.trace: TraceWatch | None = None
        if plant.trace_point is not None:
            self.trace = TraceWatch(self.trace_path, plant.trace_point, plant.trace_nth)
            traces.append(self.trace)
        env = {TRACE_ENV: str(self.trace_path)}
        if plant.faults is not None:
            env[FAULTS_ENV] = plant.faults
        self.run = Run(
            spec,
            self.workdir,
            {**params, **plant.params},
            env=env,
            sample_interval_s=sample_interval_s,
        )
        self.watcher = Watcher(
            FileSource(self.metrics_path), thresholds, poll_s=poll_s, traces=traces
        )

    def start(self) -> AlertExperiment:
        self.watcher.start()
        self.run.start()
        return self

    def finish(self, timeout_s: float) -> Detection:
        try:
            self.run.wait(timeout_s)
        finally:
            self.run.close()
            result = self.watcher.stop()
        return judge(self.plant, result, self._injection(), self.run)

    def _injection(self) -> Injection | None:
        if self.plant.log_fault is not None:
            return injection_from_log(read_log_records(self.log_path), self.plant.log_fault)
        trace = self.trace
        if trace is None or trace.injected_at_s is None:
            return None
        how = f"trace:{trace.point}@{trace.nth}"
        return Injection(trace.injected_at_s, how, trace.uncertainty_s or 0.0)


def run_experiments(
    spec: WorkloadSpec,
    params: Mapping[str, object],
    plants: Sequence[Plant],
    base_dir: Path,
    thresholds: Thresholds,
    *,
    timeout_s: float,
    poll_s: float = 0.1,
) -> list[Detection]:
    """Every plant at once (the jobs mostly sleep), each in its own workdir; bounded."""
    experiments = [
        AlertExperiment(spec, params, plant, base_dir / plant.name, thresholds, poll_s=poll_s)
        for plant in plants
    ]
    started: list[AlertExperiment] = []
    try:
        for experiment in experiments:
            started.append(experiment.start())
        return [experiment.finish(timeout_s) for experiment in started]
    finally:
        for experiment in started:
            experiment.run.close()
            experiment.watcher.stop()


@dataclass(frozen=True)
class AlertAttempt:
    """One round of experiments on a machine that gave a busy process ``cpu_share`` of a CPU
    when it began: every duration in the rules, the plants and the bounds was stretched by
    ``dilation`` (1 on a quiet machine), so a starved job keeps the margins a quiet one has."""

    detections: list[Detection]
    thresholds: Thresholds
    dilation: float
    cpu_share: float | None
    number: int = 1  # which try this was (a caller that tries again passes it)

    @property
    def ok(self) -> bool:
        return all(d.ok for d in self.detections)

    def latency_s(self, detection: Detection) -> float | None:
        """The detection latency at the profile's own thresholds: the measured one over the
        dilation (a stall alert fires ``stall_s`` after the last advance, and ``stall_s`` was
        stretched). On a quiet machine it is the measured latency."""
        if detection.latency_s is None:
            return None
        return detection.latency_s / self.dilation


DILATION_PROBE_S = 2.0  # spans a burst or two of the host's steal


def escalation(attempt: int) -> float:
    """The least stretch for the ``attempt``-th try (pure): 1, 2, 4, ... at most the cap."""
    assert attempt >= 1, attempt
    return min(hostload.DILATION_MAX, 2.0 ** (attempt - 1))


def run_dilated(
    spec: WorkloadSpec,
    params: Mapping[str, object],
    plants_for: Callable[[Thresholds], Sequence[Plant]],
    base_dir: Path,
    thresholds: Thresholds,
    *,
    timeout_s: float,
    attempt: int = 1,
    probe: Callable[[], float | None] = lambda: hostload.probe_cpu_share(DILATION_PROBE_S),
) -> AlertAttempt:
    """``run_experiments`` with every duration stretched by what the machine gives now: on a
    host taking 70% of the CPU a clean datagen needed 3.5 s to start, longer than the small
    profile's checkpoint age, and the clean run fired alerts that were the host's.

    Steal comes in bursts of whole seconds, so a short probe may land in a quiet moment; an
    ``attempt`` after the first (made only because the previous one failed on a starved
    machine) stretches at least 2x, then 4x."""
    share = probe()
    factor = max(hostload.dilation(share), escalation(attempt))
    stretched = thresholds.dilated(factor)
    detections = run_experiments(
        spec, params, plants_for(stretched), base_dir, stretched, timeout_s=timeout_s * factor
    )
    return AlertAttempt(detections, stretched, factor, share, attempt)


def attempt_measurements(
    attempt: AlertAttempt, prefix: str, target_latency_s: float
) -> list[tuple[str, float, str, float | None, bool | None]]:
    """What a test records of an attempt (pure): (name, value, unit, threshold, ok) rows,
    the latency per fired plant against the target, the wall-clock latency beside it, and
    the machine's share and dilation."""
    rows: list[tuple[str, float, str, float | None, bool | None]] = []
    for detection in attempt.detections:
        rule = detection.plant.expect
        latency = attempt.latency_s(detection)
        if rule is None or latency is None or detection.latency_s is None:
            continue
        name = f"{prefix}.{rule}"
        rows.append((f"{name}.detection_latency_s", round(latency, 3), "s", target_latency_s,
                     latency <= target_latency_s))
        rows.append((f"{name}.wall_latency_s", round(detection.latency_s, 3), "s", None, None))
    rows.append((f"{prefix}.host_dilation", round(attempt.dilation, 3), "x", None, None))
    rows.append((f"{prefix}.attempt", attempt.number, "attempt", None, None))
    if attempt.cpu_share is not None:
        rows.append((f"{prefix}.host_cpu_share", round(attempt.cpu_share, 3), "fraction", None,
                     None))
    return rows


class RecorderLike(Protocol):
    """preflight.reports.session.Recorder, as far as recording an attempt needs it."""

    def __call__(self, name: str, value: object, *, unit: str = "",
                 threshold: float | None = None, ok: bool | None = None) -> None: ...

    def verdict(self, name: str, verdict: Any) -> None: ...


def record_attempt(
    record: RecorderLike, prefix: str, attempt: AlertAttempt, target_latency_s: float
) -> list[str]:
    """Record every detection's verdict and the attempt's measurements under ``prefix``;
    return one line per failed plant (empty when all passed)."""
    for detection in attempt.detections:
        record.verdict(f"{prefix}.{detection.plant.expect or 'clean'}", detection)
    for name, value, unit, threshold, ok in attempt_measurements(attempt, prefix,
                                                                 target_latency_s):
        record(name, value, unit=unit, threshold=threshold, ok=ok)
    return [f"{d.plant.name}: {d.reason}" for d in attempt.detections if not d.ok]
