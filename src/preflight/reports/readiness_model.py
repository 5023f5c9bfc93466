"""The readiness report's one model: a frozen dataclass tree built purely from the verdict,
the gate's report entries and its meta. The JSON, Markdown and HTML renderings all read it,
so they cannot disagree (preflight.reports.readiness writes them; readiness_html renders HTML).

Evidence plots are inputs too, as a mapping from plot key to the PNG's path relative to the
report: ``"<nodeid>#<figure>"`` for an experiment's own figure (figure_for) and
``"requirement:<id>:<tier>"`` for a requirement drawn from its measured values alone."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from preflight.evidence import Evidence, RequirementResult, Row, Status, Verdict, label, rows_of
from preflight.requirements import metric_of

SECURITY_PREFIX = "security."
BAD_INPUT_FIELDS = {"inputs": 0, "refused": 1, "parser_crashes": 2}
# Failures first, then what could not be judged, then what does not apply, then passes.
ORDER = {Status.FAILED: 0, Status.INCONCLUSIVE: 1, Status.NOT_APPLICABLE: 2, Status.PASSED: 3}
SHOWN = (Status.FAILED, Status.INCONCLUSIVE)  # the statuses whose rows say why and replay
# A pytest failure's longrepr is a whole traceback: its tail names the assertion.
REASON_CHARS_MAX = 1500
# Which experiment figure shows a metric's evidence (preflight.reports.evidence_plots draws them).
FIGURES = {
    "leak_bytes_per_unit": "memory",
    "fd_leak_per_unit": "open_files",
    "throughput_ratio": "throughput",
    "stall_s_max": "stall",
    "exact": "timeline",
    "lost_work_intervals": "timeline",
    "silent_corruptions": "timeline",
}
FIGURE_ORDER = ("memory", "open_files", "throughput", "stall", "timeline")
RUN_KEYS = ("run_id", "scale", "spec", "git_commit", "code_hash", "config_hash")


@dataclass(frozen=True)
class BadInputRow:
    """One parser's fuzz tally: inputs tried, how many were refused, crashes (must be 0)."""

    parser: str
    inputs: int
    refused: int
    crashes: int


@dataclass(frozen=True)
class Plot:
    path: str  # the PNG, relative to the report
    caption: str


@dataclass(frozen=True)
class Failure:
    """A failed or inconclusive experiment or test: why, and the one command that replays it."""

    nodeid: str
    status: str  # the entry's outcome as recorded (a pytest "error" stays "error")
    label: str
    reason: str
    replay: str
    host: str = ""
    plots: tuple[Plot, ...] = ()


@dataclass(frozen=True)
class RequirementRow:
    id: str
    description: str
    tier: str | None
    comparator: str
    threshold: float
    unit: str
    measured: float | None
    status: Status
    label: str
    evidence: str  # the tests or experiments that measured it, named
    note: str
    plot: Plot | None  # None only when nothing measured it
    failures: tuple[Failure, ...]  # what made it fail or inconclusive


@dataclass(frozen=True)
class ExperimentRow:
    nodeid: str
    workload: str
    experiment: str
    status: Status
    label: str
    reason: str
    host: str
    replay: str  # only for failed and inconclusive ones
    wall_s: float | None
    plots: tuple[Plot, ...]


@dataclass(frozen=True)
class WorkloadRow:
    name: str
    spec: str
    sizes: tuple[tuple[str, str], ...]
    host: str  # the host's CPU steal while the timing experiments measured
    run: tuple[str, ...]
    not_applicable: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    scale: str
    spec: str
    git_commit: str
    code_hash: str
    config_hash: str
    other: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ReadinessModel:
    ready: bool
    status: str  # READY | NOT READY
    run: RunInfo
    workloads: tuple[WorkloadRow, ...]
    tests_total: int
    tests_failed: int
    requirements: tuple[RequirementRow, ...]
    failures: tuple[Failure, ...]  # every failed or inconclusive experiment and test
    # Those no failed or inconclusive requirement explains (a battery row that broke an
    # invariant no threshold covers, a project test without measurements).
    other_failures: tuple[Failure, ...]
    experiments: tuple[ExperimentRow, ...]
    bad_inputs: tuple[BadInputRow, ...]
    notes: tuple[str, ...]
    other_plots: tuple[Plot, ...] = ()
    # The raw inputs, kept so readiness.json stays what its readers already parse.
    verdict: Verdict | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def bad_inputs_rows(report: Mapping[str, Any]) -> list[BadInputRow]:
    """Sum the ``security.<parser>.{inputs,refused,parser_crashes}`` measurements of a
    session report per parser (pure; tests may record one parser several times)."""
    totals: dict[str, list[int]] = {}
    for row in rows_of(report.get("tests", [])):
        for item in row.measurements:
            name, value = item.name, item.value
            if not name.startswith(SECURITY_PREFIX) or value is None or isinstance(value, bool):
                continue
            parser, _, kind = name[len(SECURITY_PREFIX):].rpartition(".")
            if parser and kind in BAD_INPUT_FIELDS:
                totals.setdefault(parser, [0, 0, 0])[BAD_INPUT_FIELDS[kind]] += int(value)
    return [BadInputRow(p, *totals[p]) for p in sorted(totals)]


def fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def requirement_key(result: RequirementResult) -> str:
    return f"requirement:{result.id}:{result.tier or ''}"


def _meets(value: float, comparator: str, threshold: float) -> bool:
    return value <= threshold if comparator == "<=" else value >= threshold


def worst_evidence(result: RequirementResult) -> Evidence | None:
    """The evidence item the requirement's measured value came from (conclusive first)."""
    matching = [e for e in result.evidence if e.value == result.measured]
    matching.sort(key=lambda e: e.inconclusive)
    return matching[0] if matching else None


def figure_key(result: RequirementResult) -> str | None:
    """The plot key of the experiment figure that shows a requirement's worst evidence."""
    worst = worst_evidence(result)
    figure = FIGURES.get(metric_of(result.id))
    return None if worst is None or figure is None else f"{worst.nodeid}#{figure}"


def needs_generic_plot(result: RequirementResult, plots: Mapping[str, str]) -> bool:
    """Evidence but no experiment figure for it: draw its measured values against the
    threshold instead (every requirement with evidence gets a plot)."""
    key = figure_key(result)
    return bool(result.evidence) and (key is None or key not in plots)


def _pytest_replay(nodeid: str, tier: str | None) -> str:
    return shlex.join(["python", "-m", "pytest", nodeid, *(["--scale", tier] if tier else [])])


def replay_for(row: Row) -> str:
    """An experiment's own replay command; for a project's pytest test, pytest on its id."""
    return row.replay or _pytest_replay(row.nodeid, row.tier)


def reason_for(row: Row) -> str:
    why = row.reason
    if not why and row.longrepr:
        why = row.longrepr[-REASON_CHARS_MAX:]
    if row.injected is False and row.status is not Status.NOT_APPLICABLE:
        why += " [fault not injected]"
    return why.strip() or "(no reason recorded)"


def _caption(key: str) -> str:
    subject, _, figure = key.partition("#")
    return f"{subject}: {figure.replace('_', ' ')}" if figure else subject


def plots_of(nodeid: str, plots: Mapping[str, str]) -> tuple[Plot, ...]:
    keys = [f"{nodeid}#{figure}" for figure in FIGURE_ORDER]
    return tuple(Plot(plots[k], _caption(k)) for k in keys if k in plots)


def failure_of(row: Row, plots: Mapping[str, str]) -> Failure:
    return Failure(row.nodeid, row.outcome, label(row.status), reason_for(row), replay_for(row),
                   row.host, plots_of(row.nodeid, plots))


def _requirement_failures(result: RequirementResult, by_id: Mapping[str, Row],
                          rows: Sequence[Row], plots: Mapping[str, str]
                          ) -> tuple[Failure, ...]:
    """The experiments behind a failed or inconclusive requirement: those whose evidence
    misses the threshold or, without evidence, those that owed the measurement."""
    if result.status not in SHOWN:
        return ()
    if result.evidence:
        ids = [e.nodeid for e in result.evidence
               if not _meets(e.value, result.comparator, result.threshold)]
    else:
        metric = metric_of(result.id)
        ids = [row.nodeid for row in rows if metric in row.metrics]
    unique = list(dict.fromkeys(i for i in ids if i in by_id))
    return tuple(failure_of(by_id[i], plots) for i in unique)


def _evidence_text(result: RequirementResult, limit: int = 3) -> str:
    if not result.evidence:
        return result.note or "none"
    names = sorted({e.nodeid for e in result.evidence})
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _plot_for(result: RequirementResult, plots: Mapping[str, str]) -> Plot | None:
    key = figure_key(result)
    if key is not None and key in plots:
        return Plot(plots[key], f"{_caption(key)} (worst evidence of {result.id})")
    generic = requirement_key(result)
    if generic in plots:
        return Plot(plots[generic], f"{result.id}: every measured value against the threshold")
    return None


def requirement_rows(verdict: Verdict, rows: Sequence[Row],
                     plots: Mapping[str, str]) -> tuple[RequirementRow, ...]:
    by_id = {row.nodeid: row for row in rows}
    out = []
    for r in verdict.results:
        status = r.status or (Status.PASSED if r.ok else Status.FAILED)
        out.append(RequirementRow(r.id, r.description, r.tier, r.comparator, r.threshold,
                                  r.unit, r.measured, status, label(status), _evidence_text(r),
                                  r.note, _plot_for(r, plots),
                                  _requirement_failures(r, by_id, rows, plots)))
    return tuple(out)


def experiment_rows(rows: Sequence[Row], plots: Mapping[str, str]
                    ) -> tuple[ExperimentRow, ...]:
    """One row per gate experiment, failures first (pure; suite tests are not rows)."""
    out = []
    for row in sorted(rows, key=lambda row: ORDER[row.status]):
        if row.experiment is None:
            continue
        shown = row.status in SHOWN
        out.append(ExperimentRow(
            row.nodeid, str(row.workload), row.experiment, row.status, label(row.status),
            reason_for(row) if row.status is not Status.PASSED else "", row.host,
            replay_for(row) if shown else "", row.wall_s, plots_of(row.nodeid, plots)))
    return tuple(out)


def failures(rows: Sequence[Row], plots: Mapping[str, str]) -> tuple[Failure, ...]:
    bad = sorted((row for row in rows if row.status in SHOWN), key=lambda row: ORDER[row.status])
    return tuple(failure_of(row, plots) for row in bad)


def _host_text(name: str, rows: Sequence[Row]) -> str:
    seen = [f"{row.experiment}: {row.host}" for row in rows if row.workload == name and row.host]
    return "; ".join(seen) or "not measured (no timing experiment ran)"


def workload_rows(meta: Mapping[str, Any], rows: Sequence[Row]) -> tuple[WorkloadRow, ...]:
    out = []
    for name, info in (meta.get("workloads") or {}).items():
        sizes = tuple((str(k), str(v)) for k, v in (info.get("sizes") or {}).items())
        skipped = tuple((str(k), str(v)) for k, v in (info.get("not_applicable") or {}).items())
        out.append(WorkloadRow(str(name), str(info.get("spec", "")), sizes,
                               _host_text(str(name), rows),
                               tuple(str(e) for e in info.get("run", ())), skipped))
    return tuple(out)


def run_info(meta: Mapping[str, Any]) -> RunInfo:
    def text(key: str) -> str:
        value = meta.get(key)
        return "unknown" if value is None or value == "" else str(value)

    other = tuple((str(k), str(v)) for k, v in meta.items()
                  if k not in RUN_KEYS and k != "workloads")
    return RunInfo(*(text(k) for k in RUN_KEYS), other=other)


def build_model(verdict: Verdict, tests: Sequence[Row | Mapping[str, Any]],
                meta: Mapping[str, Any], plots: Mapping[str, str] | None = None,
                bad_inputs: Sequence[BadInputRow] = (),
                other_plots: Sequence[str] = ()) -> ReadinessModel:
    """The readiness report's model (pure): ``tests`` the report's entries (Rows, or their
    JSON, converted here); ``plots`` maps plot keys to drawn PNGs."""
    rows, drawn = rows_of(tests), dict(plots or {})
    requirements = requirement_rows(verdict, rows, drawn)
    every = failures(rows, drawn) or tuple(
        Failure(n, Status.FAILED.value, label(Status.FAILED), "(no reason recorded)",
                _pytest_replay(n, None))
        for n in verdict.tests_failed)
    explained = {f.nodeid for r in requirements for f in r.failures}
    return ReadinessModel(
        ready=verdict.ready, status="READY" if verdict.ready else "NOT READY",
        run=run_info(meta), workloads=workload_rows(meta, rows),
        tests_total=verdict.tests_total, tests_failed=len(verdict.tests_failed),
        requirements=requirements, failures=every,
        other_failures=tuple(f for f in every if f.nodeid not in explained),
        experiments=experiment_rows(rows, drawn), bad_inputs=tuple(bad_inputs),
        notes=verdict.notes, other_plots=tuple(Plot(p, p) for p in other_plots),
        verdict=verdict, meta=dict(meta))
