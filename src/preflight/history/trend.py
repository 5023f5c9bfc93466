"""Trend plots of the history: one PNG per measurement, and a Markdown and HTML index.

``build_series`` is pure (results and their values in, points out) and drops measurements
with fewer than two points, so no plot is empty or a lone dot. Rendering uses matplotlib's
object API on the Agg canvas, like src/preflight/reports/plots.py: no display, no pyplot state.
Files go to ``<reports>/trend/``; the PNGs of an earlier call are removed first, so a
measurement that is no longer plotted leaves no stale picture behind.
"""

from __future__ import annotations

import html
import io
import re
import statistics
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from preflight.history.compare import direction_higher_is_better
from preflight.history.store import ResultRow

TREND_DIR = "trend"
PLOT_RUNS_MAX = 60  # points per plot: the newest results of a kind
PLOTS_MAX = 80  # per kind; each costs a fraction of a second
POINTS_MIN = 2
FIGSIZE_IN = (7.0, 3.0)
DPI = 80
TICKS_MAX = 8
STALE_PNG_MAX = 10_000  # bound on the clean-up loop


@dataclass(frozen=True)
class Point:
    run_id: str
    result_id: int
    value: float  # median of the result's values for the measurement


@dataclass(frozen=True)
class Series:
    kind: str
    name: str
    points: tuple[Point, ...]  # oldest first
    higher_is_better: bool
    baseline_run: str | None = None
    baseline_value: float | None = None
    baseline_index: int | None = None  # into points, None when the baseline is older

    @property
    def filename(self) -> str:
        # The checksum keeps two names that slug alike ("a b", "a_b") on separate files.
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self.kind}-{self.name}")[:80]
        return f"{slug}-{zlib.crc32(f'{self.kind}/{self.name}'.encode()):08x}.png"


def build_series(
    kind: str,
    rows: Sequence[ResultRow],
    values: Mapping[int, Mapping[str, Sequence[float]]],
    baseline: ResultRow | None = None,
    baseline_values: Mapping[str, Sequence[float]] | None = None,
) -> tuple[list[Series], list[str]]:
    """Series per measurement over ``rows`` (newest first, as History.results returns them)
    and the names skipped for having fewer than POINTS_MIN points."""
    ordered = list(reversed([r for r in rows if r.kind == kind][:PLOT_RUNS_MAX]))
    names = sorted({n for r in ordered for n in values.get(r.id, {})})
    series, skipped = [], []
    for name in names:
        points = tuple(
            Point(r.run_id, r.id, statistics.median(values[r.id][name]))
            for r in ordered
            if values.get(r.id, {}).get(name)
        )
        if len(points) < POINTS_MIN:
            skipped.append(name)
            continue
        series.append(_with_baseline(kind, name, points, baseline, baseline_values or {}))
    return series[:PLOTS_MAX], skipped + [s.name for s in series[PLOTS_MAX:]]


def _with_baseline(
    kind: str, name: str, points: tuple[Point, ...], baseline: ResultRow | None,
    baseline_values: Mapping[str, Sequence[float]],
) -> Series:
    higher = direction_higher_is_better(name)
    if baseline is None or not baseline_values.get(name):
        return Series(kind, name, points, higher)
    index = next((i for i, p in enumerate(points) if p.result_id == baseline.id), None)
    value = statistics.median(baseline_values[name])
    return Series(kind, name, points, higher, baseline.run_id, value, index)


def render_png(series: Series) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGSIZE_IN)
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=0.12, right=0.98, bottom=0.3, top=0.85)
    axes = figure.subplots()
    xs = list(range(len(series.points)))
    axes.plot(xs, [p.value for p in series.points], marker=".", linewidth=1, label="median")
    if series.baseline_value is not None:
        axes.axhline(series.baseline_value, color="tab:orange", linestyle="--", linewidth=1,
                     label=f"baseline {series.baseline_run}")
    if series.baseline_index is not None:
        axes.plot([series.baseline_index], [series.baseline_value], marker="*", markersize=12,
                  color="tab:orange", linestyle="none")
    step = max(1, -(-len(xs) // TICKS_MAX))  # ceil: at most TICKS_MAX run-id labels
    axes.set_xticks(xs[::step], [p.run_id[:20] for p in series.points[::step]],
                    rotation=20, fontsize=6, ha="right")
    better = "higher" if series.higher_is_better else "lower"
    axes.set_title(f"{series.kind}: {series.name} ({better} is better)", fontsize=9)
    axes.set_ylabel("value", fontsize=8)
    axes.legend(fontsize=7)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _change_text(series: Series) -> str:
    """Latest against the baseline, e.g. ``+12.5%`` (empty without a baseline)."""
    base, last = series.baseline_value, series.points[-1].value
    if base is None:
        return ""
    if base == 0:
        return "0%" if last == 0 else f"{last - base:+.4g}"
    return f"{100.0 * (last - base) / abs(base):+.1f}%"


def _row_cells(series: Series) -> list[str]:
    base = "—" if series.baseline_value is None else f"{series.baseline_value:.4g}"
    return [series.name, str(len(series.points)), base, f"{series.points[-1].value:.4g}",
            _change_text(series) or "—", "higher" if series.higher_is_better else "lower"]


_HEADERS = ["measurement", "points", "baseline", "latest", "latest vs baseline", "better"]


def _kinds(series: Sequence[Series], skipped: Mapping[str, Sequence[str]]) -> list[str]:
    return sorted({s.kind for s in series} | {k for k, names in skipped.items() if names})


def to_markdown(series: Sequence[Series], skipped: Mapping[str, Sequence[str]]) -> str:
    lines = ["# Measurement trends", ""]
    for kind in _kinds(series, skipped):
        lines += [f"## {kind}", "", "| " + " | ".join(_HEADERS) + " |",
                  "|" + "---|" * len(_HEADERS)]
        of_kind = [s for s in series if s.kind == kind]
        lines += ["| " + " | ".join(_row_cells(s)) + " |" for s in of_kind]
        lines += [""] + [f"![{s.name}]({s.filename})" for s in of_kind]
        if skipped.get(kind):
            lines += ["", f"Not plotted (fewer than {POINTS_MIN} points or over the "
                          f"{PLOTS_MAX}-plot limit): {', '.join(skipped[kind])}"]
        lines.append("")
    return "\n".join(lines)


def to_html(series: Sequence[Series], skipped: Mapping[str, Sequence[str]]) -> str:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>Measurement trends"
             "</title></head><body><h1>Measurement trends</h1>"]
    for kind in _kinds(series, skipped):
        parts.append(f"<h2>{html.escape(kind)}</h2><table border='1'><tr>"
                     + "".join(f"<th>{h}</th>" for h in _HEADERS) + "</tr>")
        of_kind = [s for s in series if s.kind == kind]
        for s in of_kind:
            parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _row_cells(s))
                         + "</tr>")
        parts.append("</table>")
        parts += [f"<p><img src='{html.escape(s.filename)}' alt='{html.escape(s.name)}'></p>"
                  for s in of_kind]
        if skipped.get(kind):
            parts.append(f"<p>Not plotted (fewer than {POINTS_MIN} points or over the "
                         f"{PLOTS_MAX}-plot limit): {html.escape(', '.join(skipped[kind]))}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_trend(
    reports: Path, series: Sequence[Series], skipped: Mapping[str, Sequence[str]]
) -> Path:
    """Write the PNGs and index.md/index.html under ``reports/trend``; returns index.html."""
    from preflight.durable import atomic_write

    out = reports / TREND_DIR
    out.mkdir(exist_ok=True)
    for number, stale in enumerate(out.glob("*.png")):
        if number >= STALE_PNG_MAX:
            break
        stale.unlink(missing_ok=True)
    for one in series:
        atomic_write(out / one.filename, render_png(one))
    atomic_write(out / "index.md", to_markdown(series, skipped))
    atomic_write(out / "index.html", to_html(series, skipped))
    return out / "index.html"
