"""Render the readiness verdict as JSON, Markdown and HTML from one model, and write them
with their evidence plots.

The model (preflight.reports.readiness_model) is built purely from the verdict, the gate's report
entries and its meta; HTML goes through a jinja2 template (preflight.reports.readiness_html);
Markdown is built here; JSON is the model itself, which keeps the ``meta`` and ``verdict``
keys that readers of readiness.json already parse. Only write_readiness does I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from preflight.durable.atomic import atomic_write
from preflight.evidence import Row, Verdict, rows_of
from preflight.reports import readiness_html
from preflight.reports.readiness_model import (
    BadInputRow,
    Failure,
    ReadinessModel,
    RequirementRow,
    bad_inputs_rows,
    build_model,
    fmt,
)

__all__ = ["BadInputRow", "bad_inputs_rows", "markdown", "to_html", "to_markdown",
           "write_readiness"]

HEADER = ("requirement", "evidence", "measured", "threshold", "result")
EXPERIMENT_HEADER = ("workload", "experiment", "outcome", "why", "replay")
WORKLOAD_HEADER = ("workload", "spec", "sizes", "host CPU steal", "experiments run",
                   "not applicable")
BAD_INPUTS_HEADER = ("parser", "inputs", "refused", "crashes")


def _cell(text: object) -> str:
    return str(text).replace("|", "/").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows])


def _requirement_cells(r: RequirementRow) -> tuple[str, ...]:
    return (r.description + (f" ({r.tier} tier)" if r.tier else ""), r.evidence,
            fmt(r.measured) + (f" {r.unit}" if r.measured is not None else ""),
            f"{r.comparator} {fmt(r.threshold)} {r.unit}", r.label)


def _failure_lines(f: Failure, heading: str) -> list[str]:
    return [heading, "", "```text", f.reason, "```", "", f"replay: `{f.replay}`", ""]


def _run_lines(model: ReadinessModel) -> list[str]:
    run = model.run
    lines = [f"- run id: {run.run_id}", f"- scale: {run.scale}", f"- spec: {run.spec}",
             f"- git commit: {run.git_commit}", f"- code hash: {run.code_hash}",
             f"- config hash: {run.config_hash}"]
    return lines + [f"- {k}: {v}" for k, v in run.other]


def _workload_lines(model: ReadinessModel) -> list[str]:
    if not model.workloads:
        return []
    rows = [(w.name, w.spec, ", ".join(f"{k}={v}" for k, v in w.sizes) or "none", w.host,
             ", ".join(w.run) or "none",
             "; ".join(f"{e}: {why}" for e, why in w.not_applicable) or "—")
            for w in model.workloads]
    return ["", "## Workloads", "", *_table(WORKLOAD_HEADER, rows)]


def _evidence_lines(model: ReadinessModel) -> list[str]:
    lines = ["", "## Evidence per requirement", ""]
    for r in model.requirements:
        if r.plot is None and not r.failures:
            continue
        lines += [f"### {r.label}: {r.description} ({r.id}"
                  + (f", {r.tier} tier)" if r.tier else ")"), "",
                  f"measured {fmt(r.measured)} {r.unit if r.measured is not None else ''}, "
                  f"threshold {r.comparator} {fmt(r.threshold)} {r.unit}", ""]
        for f in r.failures:
            lines += _failure_lines(f, f"why `{f.nodeid}` {f.label.lower()}:")
        if r.plot is not None:
            lines += [f"![{r.plot.caption}]({r.plot.path})", ""]
    return lines


def markdown(model: ReadinessModel) -> str:
    lines = [f"# Readiness: {model.status}", "", *_run_lines(model), *_workload_lines(model)]
    summary = [("every readiness test passes", f"{model.tests_total} tests",
                f"{model.tests_failed} failed", "0 failed",
                "PASS" if model.tests_total and not model.tests_failed else "FAIL")]
    summary += [_requirement_cells(r) for r in model.requirements]
    lines += ["", "## Requirements", "", *_table(HEADER, summary)]
    if model.failures:
        lines += ["", f"## Failures ({len(model.failures)})", ""]
        for f in model.failures:
            lines += _failure_lines(f, f"### {f.label}: `{f.nodeid}`")
    lines += _evidence_lines(model)
    if model.experiments:
        rows = [(e.workload, e.experiment, e.label, e.reason,
                 f"`{e.replay}`" if e.replay else "") for e in model.experiments]
        lines += ["", "## Experiments", "", *_table(EXPERIMENT_HEADER, rows)]
    if model.bad_inputs:
        rows = [(b.parser, b.inputs, b.refused, b.crashes) for b in model.bad_inputs]
        lines += ["", "## Bad inputs tried", "", *_table(BAD_INPUTS_HEADER, rows)]
    if model.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in model.notes]
    if model.other_plots:
        lines += ["", "## Plots", ""] + [f"![{p.caption}]({p.path})" for p in model.other_plots]
    return "\n".join(lines) + "\n"


def to_markdown(verdict: Verdict, meta: Mapping[str, Any],
                bad_inputs: Sequence[BadInputRow] = (),
                tests: Sequence[Row | Mapping[str, Any]] = ()) -> str:
    """Markdown of a verdict without drawn plots (pure)."""
    return markdown(build_model(verdict, tests, meta, {}, bad_inputs))


def to_html(verdict: Verdict, meta: Mapping[str, Any], plots: Sequence[str] = (),
            bad_inputs: Sequence[BadInputRow] = (),
            tests: Sequence[Row | Mapping[str, Any]] = ()) -> str:
    """HTML of a verdict; ``plots`` are extra PNGs shown at the end (pure)."""
    return readiness_html.to_html(build_model(verdict, tests, meta, {}, bad_inputs, plots))


def write_readiness(
    out_dir: Path,
    verdict: Verdict,
    meta: Mapping[str, Any],
    plots: Sequence[str] = (),
    bad_inputs: Sequence[BadInputRow] = (),
    tests: Sequence[Row | Mapping[str, Any]] = (),
) -> list[Path]:
    """Draw the evidence plots into ``out_dir`` (from the entries' artifacts, relative to
    it), then write readiness.json/.md/.html atomically; returns the three paths."""
    from preflight.reports.evidence import draw_evidence

    rows = rows_of(tests)  # the report's entries as evidence, converted once
    drawn = draw_evidence(rows, verdict, out_dir)
    model = build_model(verdict, rows, meta, drawn, bad_inputs, plots)
    paths = [out_dir / "readiness.json", out_dir / "readiness.md", out_dir / "readiness.html"]
    atomic_write(paths[0], model.to_json())
    atomic_write(paths[1], markdown(model))
    atomic_write(paths[2], readiness_html.to_html(model))
    return paths
