"""Stability: one long run of the job, sampled fast, judged by the leak (memory, open files),
throughput and stall detectors of preflight.analysis. Memory and file leaks are judged per unit
of work; throughput and stalls are wall-clock facts, so an alarm stands only when a second
run reproduces it, and an alarm raised while the host took the CPU is inconclusive."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from preflight.analysis import leak_verdict, stall_verdict, throughput_verdict
from preflight.analysis.confirm import below_bound, confirm
from preflight.analysis.leak import LeakVerdict
from preflight.analysis.throughput import StallVerdict, ThroughputVerdict
from preflight.experiments.base import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    Context,
    Finding,
    Measurement,
    save_evidence,
    tail,
)
from preflight.host.rule import disturbed, excused, host_text
from preflight.host.watch import HostFigures, watching_frozen
from preflight.run.handles import WorkloadHandle
from preflight.run.sampler import Sample
from preflight.spec.parse import SpecError, WorkloadSpec

TIMING = ("throughput", "stall")
# The sample fields the readiness report plots (preflight.reports.evidence_plots).
EVIDENCE_FIELDS = ("t_s", "progress_done", "uss_bytes", "rss_bytes", "open_files")
# One run's detector verdicts by name: memory, open_files (leak), throughput, stall.
Verdicts = Mapping[str, LeakVerdict | ThroughputVerdict | StallVerdict]


@dataclass(frozen=True)
class StabilityObservation:
    """The detectors' verdicts of one settled run, and what the host did during it."""

    returncode: int | None
    verdicts: Verdicts
    steal: float | None
    frozen: float | None
    runs: int
    stderr_tail: str
    neighbours: float | None = None  # other processes' share of the machine


def _measurements(verdicts: Verdicts) -> tuple[Measurement, ...]:
    memory, files, speed, stall = (verdicts[k] for k in ("memory", "open_files", "throughput",
                                                         "stall"))
    found: list[Measurement] = []
    if memory.conclusive:
        found.append(Measurement("leak_bytes_per_unit", memory.per_unit, "B/unit"))
    if files.conclusive:
        found.append(Measurement("fd_leak_per_unit", files.per_unit, "fds/unit"))
    if speed.conclusive:
        found.append(Measurement("throughput_ratio", speed.ratio_last_first, "ratio"))
    found.append(Measurement("stall_s_max", stall.longest_stall_s, "s"))
    return tuple(found)


def evidence_doc(samples: Sequence[Sample], verdicts: Verdicts, *, workload: str,
                 tier: str, run: int, attempt: int, total: int | None,
                 bounds: Mapping[str, float]) -> dict[str, Any]:
    """One run's evidence: its samples as columns and its detectors' verdicts (pure), so
    the report can draw the fit and the rates the verdicts were judged on."""
    columns = {name: [getattr(s, name) for s in samples] for name in EVIDENCE_FIELDS}
    return {"experiment": "stability", "workload": workload, "tier": tier, "run": run,
            "attempt": attempt, "total": total, "bounds": dict(bounds),
            "verdicts": {k: v.to_json() for k, v in verdicts.items()}, "samples": columns}


def judge_stability(obs: StabilityObservation) -> Finding:
    """Pass when every detector passes; a failing timing detector on a disturbed host is
    inconclusive; an undecided detector (too few points) is inconclusive too (pure)."""
    host = host_text(obs.steal, obs.frozen, obs.neighbours)
    if obs.returncode != 0:
        return Finding("stability", FAIL, (), f"the run failed (exit {obs.returncode}): "
                       f"{obs.stderr_tail}", host)
    failing = {k: v for k, v in obs.verdicts.items() if not v.ok}
    found = _measurements(obs.verdicts)
    hard = {k: v for k, v in failing.items() if k not in TIMING}
    timing = {k: v for k, v in failing.items() if k in TIMING}
    near = all(excused(v) for v in timing.values())
    if hard or (timing and not (near and disturbed(obs.steal, obs.frozen, obs.neighbours))):
        reasons = "; ".join(f"{k}: {v.reason}" for k, v in {**hard, **timing}.items())
        return Finding("stability", FAIL, found, reasons, host)
    if timing:
        reasons = "; ".join(f"{k}: {v.reason}" for k, v in timing.items())
        return Finding("stability", INCONCLUSIVE, found,
                       f"measured while the machine was taken ({host}): {reasons}", host)
    undecided = [k for k, v in obs.verdicts.items() if not getattr(v, "conclusive", True)]
    if undecided:
        return Finding("stability", INCONCLUSIVE, found,
                       f"too few points to judge {', '.join(undecided)} ({host})", host)
    return Finding("stability", PASS, found, "", host)


class Stability:
    name, timing = "stability", True
    metrics = ("leak_bytes_per_unit", "fd_leak_per_unit", "throughput_ratio", "stall_s_max")

    def applicable(self, spec: WorkloadSpec) -> str | None:
        if spec.progress is None and spec.progress_regex is None:
            return "the spec publishes no progress: leaks and throughput are judged per unit"
        return None

    def _params(
        self, ctx: Context, handle: WorkloadHandle
    ) -> tuple[dict[str, object], int | None, int | None]:
        readiness = ctx.spec.readiness
        params = handle.params()
        total = production = None
        if readiness.total_param is not None:
            total = int(params[readiness.total_param]) * readiness.stability_scale
            params[readiness.total_param] = total
            try:
                production = int(ctx.spec.params("production")[readiness.total_param])
            except (SpecError, KeyError):
                production = None
        params.update(readiness.stability_params)
        return params, total, production

    def _once(self, ctx: Context, number: int
              ) -> tuple[Verdicts, int | None, HostFigures, str, str]:
        handle = ctx.handle(f"{self.name}{number}", ctx.spec.readiness.stability_sample_s)
        params, total, production = self._params(ctx, handle)
        tier = ctx.tier
        with watching_frozen():
            run = handle.run(params)
        speed = throughput_verdict(run.samples, tier=tier)
        ratio_min = ctx.bounds.get("min_throughput_ratio")
        if speed.conclusive and ratio_min is not None:
            speed = below_bound(speed, speed.ratio_last_first, ratio_min, "throughput ratio")
        verdicts = {
            "memory": leak_verdict(run.samples, metric="uss_bytes", tier=tier,
                                   units_production=production),
            "open_files": leak_verdict(run.samples, metric="open_files", tier=tier),
            "throughput": speed,
            "stall": stall_verdict(run.samples, tier=tier, total=total),
        }
        evidence = save_evidence(ctx, f"{ctx.spec.name}-stability-a{ctx.attempt}-r{number}.json",
                                 evidence_doc(run.samples, verdicts, workload=ctx.spec.name,
                                              tier=tier, run=number, attempt=ctx.attempt,
                                              total=total, bounds=ctx.bounds))
        return verdicts, run.returncode, run.host, tail(run), evidence

    def execute(self, ctx: Context) -> Finding:
        verdicts, rc, host, err, evidence = self._once(ctx, 1)
        steal, frozen, neighbours = host.steal, host.frozen, host.neighbours
        runs, artifacts = 1, [evidence]
        alarmed = any(not verdicts[k].ok for k in TIMING)
        if rc == 0 and alarmed:  # a wall-clock alarm stands only if another run reproduces it
            again, rc2, host2, err, evidence = self._once(ctx, 2)
            verdicts, rc, runs = confirm(verdicts, again), rc2, 2
            steal, frozen = max(steal or 0, host2.steal or 0), max(frozen or 0, host2.frozen or 0)
            neighbours = max(neighbours or 0, host2.neighbours or 0)
            artifacts.append(evidence)
        finding = judge_stability(StabilityObservation(rc, verdicts, steal, frozen, runs, err,
                                                       neighbours))
        return replace(finding, artifacts=tuple(artifacts))
