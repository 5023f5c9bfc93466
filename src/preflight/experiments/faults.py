"""Fault batteries as readiness experiments: one per fault kind, each the same battery as
``preflight check WORKLOAD --faults KIND`` (preflight.check.battery.run_battery), recorded as
measurements the gate judges (exact resume, lost work per kill, silent corruptions) from its
typed rows. An experiment whose fault was never injected (every row skipped) is
inconclusive, not a pass."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from preflight.check.report import BatteryRow
from preflight.experiments.base import (
    FAIL,
    INCONCLUSIVE,
    NOT_APPLICABLE,
    PASS,
    Context,
    Finding,
    Measurement,
)
from preflight.spec.parse import WorkloadSpec

FAILURES_SHOWN = 3


@dataclass(frozen=True)
class BatteryObservation:
    kind: str
    rows: tuple[BatteryRow, ...]
    interval: int | None
    errors: tuple[str, ...]
    wall_s: float


def judge_battery(obs: BatteryObservation) -> Finding:
    name = f"faults.{obs.kind}"
    if obs.errors:
        return Finding(name, FAIL, (), "; ".join(obs.errors), injected=False)
    if not obs.rows:
        return Finding(name, NOT_APPLICABLE, (), f"no {obs.kind} experiment applies to this job")
    ran = [r for r in obs.rows if r.status != "SKIP"]
    found = [Measurement(f"{obs.kind}.experiments", len(obs.rows), "count"),
             Measurement(f"{obs.kind}.failed", sum(r.status != "PASS" and r.status != "SKIP"
                                                   for r in obs.rows), "count"),
             Measurement(f"{obs.kind}.not_injected", len(obs.rows) - len(ran), "count"),
             Measurement(f"{obs.kind}.wall_s", round(obs.wall_s, 2), "s")]
    exact = [r.exact for r in ran if r.exact is not None]
    if exact:
        found.append(Measurement(f"{obs.kind}.exact", all(exact), "bool"))
    losses = [lost for r in ran for lost in r.lost]
    if losses and obs.interval:
        found.append(Measurement(f"{obs.kind}.lost_work_intervals",
                                 max(losses) / obs.interval, "intervals"))
    if obs.kind == "corrupt":
        found.append(Measurement("silent_corruptions",
                                 sum(r.status == "SILENT-CORRUPTION" for r in ran), "count"))
    failed = [r for r in ran if r.status != "PASS"]
    if failed:
        reason = "; ".join(f"{r.id}: {r.status} ({r.detail}) — replay: {r.replay}"
                           for r in failed[:FAILURES_SHOWN])
        more = len(failed) - FAILURES_SHOWN
        return Finding(name, FAIL, tuple(found), reason + (f"; +{more} more" if more > 0 else ""),
                       injected=len(ran) == len(obs.rows))
    if not ran:
        return Finding(name, INCONCLUSIVE, tuple(found),
                       f"no {obs.kind} fault was injected ({len(obs.rows)} experiment(s) "
                       "skipped)", injected=False)
    return Finding(name, PASS, tuple(found), "", injected=len(ran) == len(obs.rows))


class FaultBattery:
    timing, metrics = False, ()

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.name = f"faults.{kind}"
        if kind == "kill":
            self.metrics = ("exact", "lost_work_intervals")
        elif kind == "corrupt":
            self.metrics = ("silent_corruptions",)

    def applicable(self, spec: WorkloadSpec) -> str | None:
        if self.kind not in spec.readiness.faults:
            return f"{self.kind} is not in readiness.faults"
        if self.kind == "rank" and not spec.launcher:
            return "rank kills need a launcher (the spec has none)"
        if spec.fingerprint is None:
            return "the spec has no fingerprint command: resume cannot be judged"
        return None

    def execute(self, ctx: Context) -> Finding:
        from preflight.check.battery import run_battery
        from preflight.check.options import CheckOptions

        interval = None
        param = ctx.spec.readiness.checkpoint_param
        if param is not None:
            interval = int(ctx.spec.params(ctx.tier)[param]) or None
        work_root = ctx.base_dir / f"work-{self.kind}"
        work_root.mkdir(parents=True, exist_ok=True)
        result = run_battery(CheckOptions(
            workload=ctx.spec.name, spec_file=str(ctx.spec.source), scale=ctx.tier,
            faults=(self.kind,), seed=ctx.seed,
            report_dir=str(ctx.base_dir / f"check-{ctx.spec.name}-{self.kind}"),
            ckpt_interval=interval, work_root=str(work_root),
            quiet=True))
        if interval is None:
            interval = result.ckpt_interval
        finding = judge_battery(BatteryObservation(
            self.kind, result.rows, interval, result.errors, result.wall_s))
        # The check report's JSON holds every row's history: the report's timeline plot.
        return replace(finding, artifacts=evidence_paths(result.paths, ctx.base_dir))


def evidence_paths(paths: Sequence[Path], base_dir: Path) -> tuple[str, ...]:
    """The JSON among a check's written reports, relative to the experiment's base_dir
    (pure)."""
    return tuple(str(Path(p).relative_to(base_dir)) for p in paths
                 if Path(p).suffix == ".json" and Path(p).is_relative_to(base_dir))
