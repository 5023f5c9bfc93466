"""The fault battery API: a workload's reference run, then its planned experiments, each
recorded as a history and judged by the pure checker (preflight.check.checker).

    result = run_battery(CheckOptions(workload="datagen", faults=("kill",), quiet=True))
    result.rows        # one typed, frozen BatteryRow per experiment
    result.row("kill-write-0")  # the full judged CheckRow (history, verdicts)

``preflight check`` (preflight.check.command) and the gate's fault experiments
(preflight.experiments.faults) both run batteries through :func:`run_battery`; a property
test keeps one :class:`Battery` and runs many drawn corruptions against its reference.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from preflight.check import checker, registry
from preflight.check.drive.reference import run_reference
from preflight.check.drive.runner import Bounds, DriveContext
from preflight.check.drive.schedule import FaultExperiment
from preflight.check.history import FaultHistory, Reference
from preflight.check.interrupt import Interrupted, stop_on_signals
from preflight.check.kind import InjectContext, PlanContext
from preflight.check.kinds import corrupt
from preflight.check.live import Live
from preflight.check.options import CheckOptions
from preflight.check.report import (
    BatteryRow,
    CheckReport,
    CheckRow,
    replay_command,
    to_html,
    to_markdown,
)
from preflight.host.watch import HostWatch
from preflight.workload import WorkloadSpec, load_spec, prepare

REFERENCE_TIMEOUT_S = 3600.0  # without spec.timeout_s; small tiers take seconds
ATTEMPT_TIMEOUT_FLOOR_S = 30.0
ATTEMPT_TIMEOUT_FACTOR = 5.0  # a faulted or resumed attempt may take 5x the reference
TERM_GRACE_FLOOR_S, TERM_GRACE_CEIL_S = 10.0, 120.0
REPORTS_DIR = Path("reports")


@dataclass(frozen=True)
class BatteryResult:
    """A finished (or stopped) battery: its report and the files it was written to."""

    report: CheckReport
    paths: tuple[Path, ...] = ()

    @property
    def passed(self) -> bool:
        return self.report.passed

    @property
    def rows(self) -> tuple[BatteryRow, ...]:
        """One typed summary per experiment, in the order they ran."""
        return tuple(r.summary() for r in self.report.rows)

    @property
    def ckpt_interval(self) -> int | None:
        """The reference run's checkpoint interval (None: no reference, or unknown)."""
        reference = self.report.reference
        return None if reference is None else reference.ckpt_interval

    @property
    def errors(self) -> tuple[str, ...]:
        return self.report.errors

    @property
    def wall_s(self) -> float:
        return self.report.wall_s

    def row(self, experiment_id: str) -> CheckRow:
        return next(r for r in self.report.rows if r.experiment.id == experiment_id)


def _say(opts: CheckOptions, text: str) -> None:
    if not opts.quiet:
        print(text, flush=True)


def experiment_bounds(spec: WorkloadSpec, reference: Reference, opts: CheckOptions) -> Bounds:
    """Every attempt's time bound follows from the reference run unless given explicitly."""
    timeout_s = opts.attempt_timeout_s or spec.timeout_s
    if timeout_s is None:
        timeout_s = max(ATTEMPT_TIMEOUT_FLOOR_S, ATTEMPT_TIMEOUT_FACTOR * reference.duration_s)
    grace_s = min(TERM_GRACE_CEIL_S, max(TERM_GRACE_FLOOR_S, reference.duration_s))
    return Bounds(
        attempt_timeout_s=timeout_s,
        restarts_max=opts.restarts_max,
        term_grace_s=grace_s,
        aux_timeout_s=max(ATTEMPT_TIMEOUT_FLOOR_S, timeout_s),
    )


def plan_all(spec: WorkloadSpec, reference: Reference, opts: CheckOptions) -> list[FaultExperiment]:
    return registry.plan(opts.faults, PlanContext(spec, reference, opts.seed))


def sigterm_mode(spec: WorkloadSpec, opts: CheckOptions) -> str:
    """The stop behaviour to judge: the option, else the spec's ``sigterm`` key."""
    return opts.sigterm or spec.sigterm


def _run_one(
    ctx: InjectContext, exp: FaultExperiment, opts: CheckOptions, sigterm: str
) -> CheckRow:
    try:
        # The harness frozen over the experiment: the kind's history records it when built.
        with HostWatch() as watch:
            history = registry.inject(replace(ctx, run=replace(ctx.run, host=watch)), exp)
        verdicts = tuple(checker.check(history, ctx.reference, opts.restarts_max, sigterm=sigterm))
    except Exception as exc:  # noqa: BLE001 - any harness error becomes a failed verdict
        # The harness itself failed here: a failed verdict, never a silent pass.
        history = FaultHistory(exp.id, exp.kind, opts.seed, exp.schedule, notes=(_tb(exc),))
        detail = f"harness error: {type(exc).__name__}: {exc}"
        verdicts = (checker.CheckVerdict("experiment", checker.FAIL, detail),)
    return CheckRow(exp, history, verdicts, replay_command(opts.meta(), exp.kind, exp.id))


def _tb(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))[-2000:]


def _print_row(opts: CheckOptions, row: CheckRow) -> None:
    _say(opts, f"{row.status:<17} {row.experiment.id}  ({row.history.duration_s:.1f} s)")
    if row.failed:
        for verdict in row.verdicts:
            if verdict.failed:
                _say(opts, f"    {verdict.name}: {verdict.detail}")
        _say(opts, f"    replay: {row.replay}")


class Battery:
    """A workload's reference run plus the machinery to run experiments against it.

    :func:`run_battery` runs one planned battery through it; a property test keeps one
    Battery and runs many hypothesis-drawn corruptions against the same reference.
    Always close it (or use it as a context manager): it owns a scratch directory."""

    def __init__(self, opts: CheckOptions) -> None:
        self.opts = opts
        self.started_s = time.monotonic()
        self.spec = load_spec(opts.workload, opts.spec_file)
        self.params: dict[str, object] = dict(self.spec.params(opts.scale))
        self.root = Path(
            tempfile.mkdtemp(prefix=f"preflight-check-{self.spec.name}-", dir=opts.work_root)
        )
        self.meta = {**opts.meta(), "started": datetime.now(UTC).isoformat(timespec="seconds")}
        self.reference: Reference | None = None
        self.error = ""
        self.ctx = DriveContext(self.spec, self.params, self.root)
        self.sigterm = sigterm_mode(self.spec, opts)

    def __enter__(self) -> Battery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self.opts.keep:
            remove_tree(self.root)

    def start(self) -> Reference:
        """Prepare shared inputs, then the uninterrupted reference run (once)."""
        if self.reference is not None:
            return self.reference
        spec, opts = self.spec, self.opts
        ref_timeout_s = opts.attempt_timeout_s or spec.timeout_s or REFERENCE_TIMEOUT_S
        self.ctx = replace(self.ctx, bounds=Bounds(attempt_timeout_s=ref_timeout_s))
        if spec.prepare is not None:
            # Inputs every run shares (e.g. the trainer's dataset): made once, never faulted.
            _say(opts, f"preflight check {spec.name}: prepare")
            prepared = prepare(spec, self.params, self.root / "prepared", ref_timeout_s)
            self.params["prepared"] = str(prepared)
            self.ctx = replace(self.ctx, params=dict(self.params))
        _say(opts, f"preflight check {spec.name}: reference run (scale {opts.scale})")
        reference, _ = run_reference(self.ctx, opts.ckpt_interval)
        self.reference = reference
        if reference.rc != 0 or reference.fingerprint is None and spec.fingerprint is not None:
            self.error = (
                f"the uninterrupted reference run failed (exit {reference.rc}): "
                f"{reference.stderr_tail.strip()[-500:]}"
            )
        self.ctx = replace(self.ctx, bounds=experiment_bounds(spec, reference, opts))
        return reference

    def plan(self) -> list[FaultExperiment]:
        """The battery for the options' fault kinds and seed (filtered by --only)."""
        experiments = plan_all(self.spec, self.start(), self.opts)
        if not self.opts.only:
            return experiments
        known = {e.id for e in experiments}
        unknown = [i for i in self.opts.only if i not in known]
        if unknown:
            raise ValueError(
                f"unknown experiment id(s) {unknown}; known: {', '.join(sorted(known))}"
            )
        return [e for e in experiments if e.id in self.opts.only]

    def run_ids(self, ids: Sequence[str]) -> list[CheckRow]:
        """Run planned experiments by id (any fault kind), in the given order."""
        planned = {
            e.id: e
            for e in plan_all(self.spec, self.start(), replace(self.opts, faults=registry.names()))
        }
        unknown = [i for i in ids if i not in planned]
        if unknown:
            raise ValueError(f"unknown experiment id(s) {unknown}; known: {sorted(planned)}")
        return [self.run(planned[i]) for i in ids]

    def run(self, exp: FaultExperiment) -> CheckRow:
        reference = self.start()
        inject = InjectContext(self.ctx, reference, self.opts.seed)
        return _run_one(inject, exp, self.opts, self.sigterm)

    def corruption(self, spec: corrupt.CorruptionSpec, stop_fraction: float = 0.5) -> CheckRow:
        """One corruption experiment with a given (e.g. hypothesis-drawn) corruption."""
        reference = self.start()
        if reference.total:
            stop: dict[str, object] = {"at_done": max(1, int(reference.total * stop_fraction))}
        else:
            stop = {"at_s": round(reference.duration_s * stop_fraction, 3)}
        schedule = {"corruption": asdict(spec), "stop": stop}
        row = self.run(FaultExperiment(f"corrupt-{spec.kind}-drawn", "corrupt", schedule))
        # Not in the CLI's seeded plan: the drawn value itself is the reproducer.
        return replace(row, replay=f"hypothesis example {spec!r} (stop at {stop})")

    def report(self, rows: Sequence[CheckRow], errors: Sequence[str] = ()) -> CheckReport:
        errors = (*((self.error,) if self.error else ()), *errors)
        wall_s = time.monotonic() - self.started_s
        meta = {**self.meta, "sigterm": self.sigterm}
        return CheckReport(self.spec.name, meta, self.reference, tuple(rows), wall_s, errors)


def run_battery(opts: CheckOptions) -> BatteryResult:
    """The whole battery; raises SpecError/ValueError on bad input (the CLI exits 2).

    The report is rewritten after every experiment, so a battery stopped by its bound (or a
    signal) leaves the rows it finished and says why it stopped; the scratch directory is
    removed on every way out (unless ``keep``)."""
    out_dir = _out_dir(opts)
    with stop_on_signals(), Battery(opts) as battery:
        rows: list[CheckRow] = []
        try:
            reference = battery.start()
            if battery.error:
                return _finish(opts, battery.report([]), out_dir)
            experiments = battery.plan()
            _say(
                opts,
                f"reference: {reference.duration_s:.2f} s, checkpoint interval "
                f"{reference.ckpt_interval} ({reference.ckpt_interval_source}); "
                f"{len(experiments)} experiments",
            )
            with Live(len(experiments), quiet=opts.quiet) as live:
                for exp in experiments:
                    live.begin(exp.id)
                    row = battery.run(exp)
                    live.end(row.history.duration_s)
                    _print_row(opts, row)
                    rows.append(row)
                    write_report(battery.report(rows, ("in progress",)), out_dir)
        except (Interrupted, KeyboardInterrupt) as exc:
            stopped = f"check stopped after {len(rows)} experiment(s): {exc or 'interrupted'}"
            _finish(opts, battery.report(rows, (stopped,)), out_dir)
            raise
        return _finish(opts, battery.report(rows), out_dir)


def remove_tree(root: Path, tries: int = 50, pause_s: float = 0.1) -> None:
    """rmtree until ``root`` is gone (bounded): a job killed by an interrupted experiment
    may still be writing a file or two into it while its group dies."""
    for _ in range(tries):
        shutil.rmtree(root, ignore_errors=True)
        if not root.exists():
            return
        time.sleep(pause_s)


def _out_dir(opts: CheckOptions) -> Path:
    if opts.report_dir:
        return Path(opts.report_dir)
    return default_report_dir(opts.workload, opts.seed)


def default_report_dir(workload: str, seed: int) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return REPORTS_DIR / f"{stamp}-check-{workload}-s{seed}"


def write_report(report: CheckReport, out_dir: Path) -> list[Path]:
    # durable is the harness's only dependency, for exactly this: crash-safe report writes.
    from preflight.durable.atomic import atomic_write

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"check-{report.workload}"
    paths = [stem.with_suffix(".json"), stem.with_suffix(".md"), stem.with_suffix(".html")]
    atomic_write(paths[0], report.to_json())
    atomic_write(paths[1], to_markdown(report))
    atomic_write(paths[2], to_html(report))
    return paths


def _finish(opts: CheckOptions, report: CheckReport, out_dir: Path) -> BatteryResult:
    paths = write_report(report, out_dir)
    failed = sum(r.failed for r in report.rows)
    for error in report.errors:
        _say(opts, f"ERROR: {error}")
    verdict = "PASS" if report.passed else "FAIL"
    _say(
        opts,
        f"{verdict}: {len(report.rows)} experiments, {failed} failed, "
        f"wall {report.wall_s:.1f} s; report {paths[1]}",
    )
    only = ",".join(opts.only) or None
    _say(opts, f"replay: {replay_command(opts.meta(), ','.join(opts.faults), only)}")
    return BatteryResult(report, tuple(paths))
