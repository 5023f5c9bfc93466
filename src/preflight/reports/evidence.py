"""The readiness report's evidence on disk: the experiments' files kept out of the gate's
scratch directory, and the figures drawn from them (preflight.reports.evidence_plots) next to the
report. Which figure shows which requirement is the model's business
(preflight.reports.readiness_model); this module only reads, draws and writes."""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from preflight.analysis.settings import settings_for
from preflight.durable.atomic import atomic_write
from preflight.evidence import Row, Verdict, rows_of
from preflight.reports import evidence_plots as draw
from preflight.reports.readiness_model import needs_generic_plot, requirement_key

EVIDENCE_DIR = "evidence"
EVIDENCE_BYTES_MAX = 64 << 20  # a check report with 30 rows' histories is well under 1 MiB
# Stability figure -> (verdict it plots, that verdict's figure, the measurement reporting
# it, the gate bound drawn on it): a confirmed run pair plots the run the finding reported.
STABILITY_FIGURES = {
    "memory": ("memory", "per_unit", "leak_bytes_per_unit", "max_leak_bytes_per_unit"),
    "open_files": ("open_files", "per_unit", "fd_leak_per_unit", "max_fd_leak_per_unit"),
    "throughput": ("throughput", "ratio_last_first", "throughput_ratio",
                   "min_throughput_ratio"),
    "stall": ("stall", "longest_stall_s", "stall_s_max", "max_stall_s"),
}


def keep_evidence(tests: Sequence[dict[str, Any]], work_dir: Path, run_dir: Path
                  ) -> list[dict[str, Any]]:
    """Copy every entry's artifacts from the scratch ``work_dir`` (deleted after the
    experiments) into ``run_dir/evidence``; the entries returned name them relative to
    ``run_dir``. An artifact that is missing or outside ``work_dir`` is dropped."""
    kept = []
    for test in tests:
        paths = []
        for raw in test.get("artifacts") or ():
            source = Path(raw)
            if not source.is_file() or not source.is_relative_to(work_dir):
                continue
            relative = Path(EVIDENCE_DIR) / source.relative_to(work_dir)
            (run_dir / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, run_dir / relative)
            paths.append(str(relative))
        kept.append({**test, "artifacts": paths} if "artifacts" in test else test)
    return kept


def load_json(path: Path) -> dict[str, Any] | None:
    """One evidence document, bounded; None when absent, too big or not a JSON object."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(EVIDENCE_BYTES_MAX + 1)
    except OSError:
        return None
    if len(data) > EVIDENCE_BYTES_MAX:
        return None
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:80]


def measurement(row: Row, metric: str) -> float | None:
    for item in row.measurements:
        if item.name.endswith("." + metric):
            return None if item.value is None else float(item.value)
    return None


def standing_doc(docs: Sequence[Mapping[str, Any]], figure: str, reported: float | None
                 ) -> Mapping[str, Any]:
    """The run whose detector figure is the one the finding reported, else the last (pure)."""
    detector, name = STABILITY_FIGURES[figure][:2]
    for doc in docs:
        found = (doc.get("verdicts") or {}).get(detector) or {}
        if reported is not None and found.get(name) == reported:
            return doc
    return docs[-1]


def stability_figure(figure: str, doc: Mapping[str, Any], title: str) -> bytes | None:
    detector, _name, _metric, bound_key = STABILITY_FIGURES[figure]
    settings = settings_for(str(doc.get("tier") or "small"))
    bound = (doc.get("bounds") or {}).get(bound_key)
    samples = doc["samples"]
    if figure in ("memory", "open_files"):
        metric = "uss_bytes" if figure == "memory" else "open_files"
        return draw.leak_png(title, samples, metric, settings.leak(metric), bound)
    if figure == "throughput":
        return draw.throughput_png(title, samples, settings.throughput, bound)
    return draw.stall_png(title, samples, doc["verdicts"][detector], bound)


def figures_of(row: Row, run_dir: Path) -> list[tuple[str, Callable[[], bytes | None]]]:
    """(figure, how to draw it) for one entry's evidence files."""
    docs = [d for d in (load_json(run_dir / a) for a in row.artifacts) if d]
    nodeid = row.nodeid
    runs = [d for d in docs if d.get("experiment") == "stability" and "samples" in d]
    out: list[tuple[str, Callable[[], bytes | None]]] = []
    for figure in STABILITY_FIGURES if runs else ():
        doc = standing_doc(runs, figure, measurement(row, STABILITY_FIGURES[figure][2]))
        out.append((figure, lambda f=figure, d=doc: stability_figure(f, d, nodeid)))
    rows = [row for d in docs for row in d.get("rows", []) if isinstance(row, dict)]
    if rows:
        out.append(("timeline", lambda: draw.timeline_png(nodeid, rows)))
    return out


def _save(run_dir: Path, name: str, render: Callable[[], bytes | None]) -> str | None:
    try:
        png = render()
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        # A malformed evidence file costs its figure, never the launch decision's report.
        print(f"preflight gate: evidence plot {name} skipped: {exc!r}", file=sys.stderr)
        return None
    if png is None:
        return None
    atomic_write(run_dir / name, png)
    return name


def draw_evidence(tests: Sequence[Row | Mapping[str, Any]], verdict: Verdict, run_dir: Path
                  ) -> dict[str, str]:
    """Draw every figure the report shows into ``run_dir``; returns plot key -> PNG path
    relative to ``run_dir`` (readiness_model's keys). A requirement with evidence but no
    experiment figure gets its measured values drawn against its threshold."""
    plots: dict[str, str] = {}
    for row in rows_of(tests):
        nodeid = row.nodeid
        for figure, render in figures_of(row, run_dir):
            saved = _save(run_dir, f"evidence-{slug(nodeid)}-{figure}.png", render)
            if saved is not None:
                plots[f"{nodeid}#{figure}"] = saved
    for result in verdict.results:
        if not needs_generic_plot(result, plots):
            continue
        points = [(e.nodeid, e.value, e.inconclusive) for e in result.evidence]
        title = (f"{result.id}" + (f" ({result.tier} tier)" if result.tier else "")
                 + ": every measured value against the threshold")
        saved = _save(run_dir, f"evidence-{slug(requirement_key(result))}.png",
                      lambda p=points, t=title, r=result: draw.measured_png(
                          t, p, r.comparator, r.threshold, r.unit))
        if saved is not None:
            plots[requirement_key(result)] = saved
    return plots
