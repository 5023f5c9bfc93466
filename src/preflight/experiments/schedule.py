"""Run the readiness experiments of the gate: the cheap ones side by side (a thread each,
up to the CPU count: they spend their time waiting on the job's subprocesses), then the
wall-clock ones alone, so that no neighbour's load reads as the job's slowdown. An
inconclusive timing result is made again when the policy says so (bounded). Every
experiment becomes one entry of the gate's report, shaped like a session report's test."""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from preflight.evidence import Measurement, Row
from preflight.experiments.base import (
    FAIL,
    INCONCLUSIVE,
    NOT_APPLICABLE,
    Context,
    Experiment,
    Finding,
    replay_command,
)
from preflight.host import load as hostload
from preflight.spec.parse import WorkloadSpec

HEARTBEAT_S = 10.0
# Without a previous run's durations, the relative cost of an experiment by its name: the
# crash-point battery restarts the job at every fault point, corruption at every damage.
DEFAULT_COST = {"faults.crashpoints": 10.0, "faults.corrupt": 5.0, "faults.kill": 4.0,
                "faults.memory": 3.0, "faults.powerloss": 6.0, "faults.rank": 4.0}


@dataclass(frozen=True)
class Planned:
    spec: WorkloadSpec
    experiment: Experiment
    not_applicable: str | None  # the reason, when the spec does not give its inputs

    @property
    def label(self) -> str:
        return f"{self.spec.name}::{self.experiment.name}"


def plan(specs: Sequence[WorkloadSpec], only: Sequence[str] = ()) -> list[Planned]:
    """Every (workload, experiment) pair in run order; ``only`` keeps the named experiments
    (pure over the specs)."""
    from preflight.experiments import for_spec

    out = []
    for spec in specs:
        for exp in for_spec(spec):
            if only and exp.name not in only and exp.name.split(".")[0] not in only:
                continue
            out.append(Planned(spec, exp, exp.applicable(spec)))
    return out


@dataclass(frozen=True)
class Costs:
    """What each applicable experiment is expected to take, by label: seconds a previous gate
    recorded (``in_seconds``), else DEFAULT_COST's relative units, which the finished
    experiments convert to seconds. ``alone``: the wall-clock ones, run one at a time."""

    by_label: Mapping[str, float]
    alone: frozenset[str] = frozenset()
    in_seconds: bool = False
    workers: int = 1


def eta_s(costs: Costs, finished: Mapping[str, float], running: Mapping[str, float]
          ) -> float | None:
    """Seconds left (pure): what is left of each unfinished experiment's cost, scaled by how
    the finished ones compared with theirs (a machine 3x slower than the previous gate's
    stays 3x slower), the side-by-side share spread over the workers, then the lone ones.
    None while nothing converts the units to seconds. A mean per finished experiment
    misleads here: the longest run first, so after one the mean is the longest."""
    done_cost = sum(costs.by_label.get(label, 0.0) for label in finished)
    if finished and done_cost > 0:
        scale = sum(finished.values()) / done_cost
    elif costs.in_seconds:
        scale = 1.0
    else:
        return None
    left = {label: max(0.0, cost * scale - running.get(label, 0.0))
            for label, cost in costs.by_label.items() if label not in finished}
    side = [s for label, s in left.items() if label not in costs.alone]
    alone = sum(s for label, s in left.items() if label in costs.alone)
    return max(max(side, default=0.0), sum(side) / max(1, costs.workers)) + alone


class GateProgress:
    """Live progress: the current experiments, done/total and an ETA, printed as each one
    starts and ends and at least every HEARTBEAT_S (plain lines: CI logs are not TTYs)."""

    def __init__(self, total: int, out: TextIO | None, clock: Callable[[], float] = time.monotonic,
                 costs: Costs | None = None) -> None:
        self.total, self.out, self.clock = total, out, clock
        self.costs = costs or Costs({})
        self.done = 0
        self.running: dict[str, float] = {}
        self.finished: dict[str, float] = {}  # label -> wall seconds, of those that ran
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def eta_s(self) -> float | None:
        now = self.clock()
        return eta_s(self.costs, self.finished,
                     {label: now - t for label, t in self.running.items()})

    def line(self) -> str:
        eta = self.eta_s()
        now = self.clock()
        current = ", ".join(f"{k} ({now - t:.0f} s)" for k, t in self.running.items()) or "-"
        eta_text = "ETA ?" if eta is None else f"ETA {eta:.0f} s"
        return f"[{self.done}/{self.total}] {eta_text}; running: {current}"

    def say(self, text: str) -> None:
        if self.out is not None:
            print(f"preflight gate: {text}", file=self.out, flush=True)

    def begin(self, label: str) -> None:
        with self._lock:
            self.running[label] = self.clock()
            self.say(self.line())

    def end(self, label: str, status: str) -> None:
        with self._lock:
            began = self.running.pop(label, None)
            if began is not None:
                self.finished[label] = self.clock() - began
            self.done += 1
            self.say(f"{label}: {status}. {self.line()}")

    def __enter__(self) -> GateProgress:
        if self.out is not None:
            self._thread = threading.Thread(target=self._beat, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=HEARTBEAT_S)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with self._lock:
                self.say(self.line())


def _execute(item: Planned, ctx: Context) -> Finding:
    try:
        return item.experiment.execute(ctx)
    except Exception as exc:  # noqa: BLE001 - an experiment that breaks is a failed one
        where = traceback.format_exception_only(exc)[-1].strip()
        return Finding(item.experiment.name, FAIL, (), f"the experiment raised {where}")


def _run_one(item: Planned, ctx: Context, reruns: int, progress: GateProgress) -> Row:
    if item.not_applicable is not None:
        finding = Finding(item.experiment.name, NOT_APPLICABLE, (), item.not_applicable)
        progress.end(item.label, NOT_APPLICABLE)
        return row_of(item, ctx, finding, 0.0, 0)
    progress.begin(item.label)
    started = time.monotonic()
    finding = _execute(item, ctx)
    attempts = 1
    while finding.status == INCONCLUSIVE and item.experiment.timing and attempts <= reruns:
        attempts += 1
        finding = _execute(item, replace(ctx, attempt=attempts))
    progress.end(item.label, finding.status)
    return row_of(item, ctx, finding, time.monotonic() - started, attempts)


def row_of(item: Planned, ctx: Context, finding: Finding, wall_s: float, attempts: int
           ) -> Row:
    """One experiment as a row of the gate's evidence (pure)."""
    inconclusive = finding.status == INCONCLUSIVE
    return Row(
        nodeid=item.label, outcome=finding.status.value, status=finding.status,
        measurements=tuple(Measurement(f"{item.spec.name}.{m.name}", m.value, m.unit,
                                       inconclusive) for m in finding.measurements),
        tier=ctx.tier, experiment=item.experiment.name, workload=item.spec.name,
        reason=finding.reason, host=finding.host, injected=finding.injected,
        wall_s=round(wall_s, 2), attempts=attempts, timing=item.experiment.timing,
        metrics=tuple(item.experiment.metrics),
        replay=replay_command(item.spec, ctx.tier, item.experiment.name),
        # Where the experiment's evidence files are now; the gate moves them out of its
        # scratch directory before deleting it (preflight.reports.evidence.keep_evidence).
        artifacts=tuple(str(ctx.base_dir / a) for a in finding.artifacts))


def longest_first(items: Sequence[tuple[int, Planned]], seen_s: Mapping[str, float]
                  ) -> list[tuple[int, Planned]]:
    """The side-by-side experiments, longest expected first (pure): a long battery started
    last would run alone at the end while the other workers idle. Expected: the duration a
    previous gate recorded for the same label, else DEFAULT_COST by name (in those units,
    so the known durations come first, measured ones ordered among themselves)."""
    def cost(pair: tuple[int, Planned]) -> tuple[float, float]:
        label, name = pair[1].label, pair[1].experiment.name
        return (seen_s.get(label, 0.0), DEFAULT_COST.get(name, 1.0))

    return sorted(items, key=cost, reverse=True)


def costs_for(side: Sequence[Planned], alone: Sequence[Planned],
              seen_s: Mapping[str, float], workers: int) -> Costs:
    """The expected cost of each applicable experiment (pure): the previous gate's seconds
    when it recorded every one, else DEFAULT_COST's units by name."""
    items = [it for it in (*side, *alone) if it.not_applicable is None]
    in_seconds = bool(items) and all(it.label in seen_s for it in items)
    by_label = {it.label: seen_s[it.label] if in_seconds
                else DEFAULT_COST.get(it.experiment.name, 1.0) for it in items}
    return Costs(by_label, frozenset(it.label for it in alone), in_seconds, max(1, workers))


def run_planned(items: Sequence[Planned], *, tier: str, base_dir: Path,
                bounds: Mapping[str, float], seed: int = 0, reruns: int = 0,
                out: TextIO | None = None, workers: int | None = None,
                seen_s: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """Run every planned experiment; returns their report entries (report.json's) in plan
    order. ``seen_s``: durations by label from an earlier gate, to start the longest first."""
    rows = run_rows(items, tier=tier, base_dir=base_dir, bounds=bounds, seed=seed,
                    reruns=reruns, out=out, workers=workers, seen_s=seen_s)
    return [row.to_json() for row in rows]


def run_rows(items: Sequence[Planned], *, tier: str, base_dir: Path,
             bounds: Mapping[str, float], seed: int = 0, reruns: int = 0,
             out: TextIO | None = None, workers: int | None = None,
             seen_s: Mapping[str, float] | None = None) -> list[Row]:
    """run_planned's experiments as typed Rows, for a caller that needs no JSON."""
    def ctx_for(item: Planned) -> Context:
        return Context(item.spec, tier, base_dir / item.spec.name, seed, bounds)

    results: dict[int, Row] = {}
    side = longest_first([(i, it) for i, it in enumerate(items) if not it.experiment.timing],
                         seen_s or {})
    alone = [(i, it) for i, it in enumerate(items) if it.experiment.timing]
    workers = workers or hostload.cpu_count()
    costs = costs_for([it for _, it in side], [it for _, it in alone], seen_s or {}, workers)
    with GateProgress(len(items), out, costs=costs) as progress:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {i: pool.submit(_run_one, it, ctx_for(it), 0, progress) for i, it in side}
            results.update({i: f.result() for i, f in futures.items()})
        for i, it in alone:
            results[i] = _run_one(it, ctx_for(it), reruns, progress)
    return [results[i] for i in range(len(items))]
