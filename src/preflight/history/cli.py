"""`preflight report` over reports/history.sqlite: --trend, --compare, baselines, --fail-on.

Thin I/O around src/preflight/history/compare.py (the rules) and src/preflight/history/trend.py
(the plots):
read a bounded snapshot of the history, let the pure functions decide, print, exit.
Exit codes: 0 ok; 1 a --fail-on threshold was exceeded or --trend flagged a regression;
2 bad input (a malformed --fail-on, an unknown run, no or an unusable history), named
on stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from preflight.durable.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    BadInputError,
    DurableError,
)
from preflight.history import compare as cmp
from preflight.history.store import HISTORY_ROWS_MAX, History, ResultRow
from preflight.history.trend import PLOT_RUNS_MAX, build_series, write_trend

HISTORY_FILE = "history.sqlite"


@dataclass(frozen=True)
class HistoryRequest:
    kind: str | None = None
    trend: bool = False
    compare: tuple[str, str] | None = None
    baseline: str | None = None  # --baseline RUN: this call only
    set_baseline: str | None = None
    fail_on: Sequence[str] = field(default_factory=tuple)

    @property
    def compares(self) -> bool:
        """--baseline or --fail-on alone compare the baseline with the latest result."""
        return bool(self.compare or self.baseline or self.fail_on)


def history_main(reports: Path, request: HistoryRequest) -> int:
    try:
        return _run(reports, request)
    except DurableError as exc:  # bad input, or a history file that is not a usable database
        print(f"preflight report: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _run(reports: Path, request: HistoryRequest) -> int:
    # Parse every expression before reading anything: a typo is exit 2 whatever the data.
    thresholds = cmp.parse_fail_ons(list(request.fail_on))
    for spec in (*(request.compare or ()), request.baseline, request.set_baseline):
        if spec is not None:
            cmp.check_run_spec(spec)
    if request.baseline in (cmp.LATEST, cmp.BASELINE):
        raise BadInputError(f"--baseline must name a run id, not {request.baseline!r}")
    path = reports / HISTORY_FILE
    if not path.is_file():
        raise BadInputError(f"{path} does not exist; run a gate or soak first")
    with History(path) as history:
        if request.set_baseline is not None:
            _set_baseline(history, request)
        code = EXIT_OK
        if request.trend:
            code = max(code, _trend(history, reports, request))
        if request.compares:
            code = max(code, _compare(history, request, thresholds))
    return code


def _snapshot(history: History) -> cmp.HistorySnapshot:
    return cmp.HistorySnapshot(tuple(history.results(None, HISTORY_ROWS_MAX)), history.baselines())


def _describe(chosen: cmp.Chosen) -> str:
    row = chosen.row
    return f"{row.kind} {row.run_id} ({chosen.why}, scale {row.scale}, code {row.code_hash[:12]})"


def _set_baseline(history: History, request: HistoryRequest) -> None:
    assert request.set_baseline is not None
    chosen = cmp.resolve(request.set_baseline, _snapshot(history), request.kind)
    row = history.set_baseline(chosen.row.id)
    print(f"baseline for {row.kind} results: {row.run_id}")


def _compare(history: History, request: HistoryRequest, thresholds: list[cmp.Threshold]) -> int:
    spec_a, spec_b = request.compare or (cmp.BASELINE, cmp.LATEST)
    a, b = cmp.resolve_pair(spec_a, spec_b, _snapshot(history), request.kind, request.baseline)
    changes = cmp.compare_values(history.metric_values(a.row.id), history.metric_values(b.row.id))
    breaches = cmp.check_thresholds(thresholds, changes)  # raises before any table is printed
    print(f"A: {_describe(a)}\nB: {_describe(b)}")
    for change in changes:
        print("  " + _change_line(change))
    for breach in breaches:
        print(_breach_line(breach))
    if thresholds and not breaches:
        print(f"fail-on: all {len(thresholds)} threshold(s) hold")
    return EXIT_FAILED if breaches else EXIT_OK


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def _change_line(change: cmp.Change) -> str:
    status = change.status()
    mark = {"regression": "REGRESSION", "missing": "MISSING"}.get(status, status)
    text = f"{mark:10s} {change.name}: {_number(change.a)} -> {_number(change.b)}"
    if change.delta is not None and change.percent is not None:
        text += f"  ({change.delta:+.4g}, {change.percent:+.1f}%)"
    better = "higher" if change.higher_is_better else "lower"
    return f"{text}  [{better} is better]"


def _breach_line(breach: cmp.Breach) -> str:
    change = breach.change
    moved = "missing from B: the evidence is gone"
    if change.delta is not None and change.percent is not None:
        moved = f"{change.delta:+.4g}, {change.percent:+.1f}%"
    return (f"FAIL --fail-on {breach.threshold.text!r}: {change.name} "
            f"{_number(change.a)} -> {_number(change.b)} ({moved})")


def _trend(history: History, reports: Path, request: HistoryRequest) -> int:
    """The asv-style test of the latest result against earlier ones, then the plots."""
    rows = history.results(request.kind)
    trends = history.trend(request.kind)
    if len(rows) < 2:
        print("preflight report: fewer than two recorded results; nothing to compare")
        return EXIT_OK
    print(f"latest {rows[0].kind} {rows[0].run_id} against {len(rows) - 1} earlier result(s)")
    for t in trends:
        mark = "REGRESSION" if t.regression else "ok"
        p_text = "n/a" if t.p_value is None else f"{t.p_value:.3g}"
        print(f"  {mark:10s} {t.metric}: {t.latest_median:.4g} vs {t.baseline_median:.4g}"
              f" (ratio {t.ratio:.3f}, p={p_text})")
    index = _plot(history, reports, request)
    print(f"trend plots: {index}")
    return EXIT_FAILED if any(t.regression for t in trends) else EXIT_OK


def _plot(history: History, reports: Path, request: HistoryRequest) -> Path:
    snapshot = _snapshot(history)
    kinds = [request.kind] if request.kind else sorted({r.kind for r in snapshot.rows})
    all_series, skipped = [], {}
    for kind in kinds:
        rows = [r for r in snapshot.rows if r.kind == kind]
        values = {r.id: history.metric_values(r.id) for r in rows[:PLOT_RUNS_MAX]}
        baseline = _plot_baseline(snapshot, kind, request.baseline)
        base_values = history.metric_values(baseline.id) if baseline else None
        series, skipped[kind] = build_series(kind, rows, values, baseline, base_values)
        all_series += series
    return write_trend(reports, all_series, skipped)


def _plot_baseline(snapshot: cmp.HistorySnapshot, kind: str,
                   explicit: str | None) -> ResultRow | None:
    """The baseline to mark on ``kind``'s plots: --baseline when it is a ``kind`` result,
    else the stored one, else the previous result."""
    if explicit is not None:
        chosen = cmp.resolve(explicit, snapshot, None)
        if chosen.row.kind == kind:
            return chosen.row
    try:
        return cmp.choose_baseline(snapshot, kind).row
    except BadInputError:
        return None  # a single result of this kind: nothing is plotted for it anyway
