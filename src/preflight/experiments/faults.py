"""Fault batteries as readiness experiments: one per fault kind, each the same battery as
``preflight check WORKLOAD --faults KIND`` (preflight.check.command), recorded as measurements the
gate judges (exact resume, lost work per kill, silent corruptions). An experiment whose
fault was never injected (every row skipped) is inconclusive, not a pass."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

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
class RowSummary:
    id: str
    status: str  # PASS | FAIL | SILENT-CORRUPTION | SKIP (preflight.check.report.Row)
    detail: str  # the failed verdicts, named
    replay: str
    lost: tuple[int, ...]  # units lost per fault, for rows without corruption
    exact: bool | None  # None: the row judged no exact resume


@dataclass(frozen=True)
class BatteryObservation:
    kind: str
    rows: tuple[RowSummary, ...]
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


def summarize(row: object) -> RowSummary:
    """The judged row of preflight.check.report as the battery's observation needs it."""
    from preflight.check.checker import PASS as CHECK_PASS
    from preflight.check.checker import SKIP as CHECK_SKIP
    from preflight.check.checker import lost_work_per_fault

    history, verdicts = row.history, row.verdicts  # type: ignore[attr-defined]
    exact = [v for v in verdicts if v.name == "exact" and v.status != CHECK_SKIP]
    lost = () if history.corruptions else tuple(
        lost for _, lost in lost_work_per_fault(history) if lost is not None)
    detail = ", ".join(f"{v.name}: {v.detail}" for v in verdicts if v.failed)
    return RowSummary(row.experiment.id, row.status, detail[:800],  # type: ignore[attr-defined]
                      row.replay, lost,  # type: ignore[attr-defined]
                      all(v.status == CHECK_PASS for v in exact) if exact else None)


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
        from preflight.check.command import CheckOptions, run_check

        interval = None
        param = ctx.spec.readiness.checkpoint_param
        if param is not None:
            interval = int(ctx.spec.params(ctx.tier)[param]) or None
        work_root = ctx.base_dir / f"work-{self.kind}"
        work_root.mkdir(parents=True, exist_ok=True)
        result = run_check(CheckOptions(
            workload=ctx.spec.name, spec_file=str(ctx.spec.source), scale=ctx.tier,
            faults=(self.kind,), seed=ctx.seed,
            report_dir=str(ctx.base_dir / f"check-{ctx.spec.name}-{self.kind}"),
            ckpt_interval=interval, work_root=str(work_root),
            quiet=True))
        report = result.report
        if interval is None and report.reference is not None:
            interval = report.reference.ckpt_interval
        finding = judge_battery(BatteryObservation(
            self.kind, tuple(summarize(r) for r in report.rows), interval,
            tuple(report.errors), report.wall_s))
        # The check report's JSON holds every row's history: the report's timeline plot.
        return replace(finding, artifacts=evidence_paths(result.paths, ctx.base_dir))


def evidence_paths(paths: list[Path], base_dir: Path) -> tuple[str, ...]:
    """The JSON among a check's written reports, relative to the experiment's base_dir
    (pure)."""
    return tuple(str(Path(p).relative_to(base_dir)) for p in paths
                 if Path(p).suffix == ".json" and Path(p).is_relative_to(base_dir))
