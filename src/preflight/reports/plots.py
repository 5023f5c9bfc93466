"""PNG plots for the HTML report: memory against progress, throughput against time.

One PNG per recorded run, two panels side by side (memory alone when the run is too short
for a rate: no empty panel). matplotlib is imported only when a test
recorded something to plot, and only through its object API with the Agg canvas, so the
report never touches pyplot's global state or needs a display.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from preflight.analysis.throughput import until_complete, window_rates

MIB = float(1 << 20)
RATE_WINDOWS_MAX = 40
FIGSIZE_IN = (9.0, 3.0)
DPI = 80
PLOTS_MAX = 40  # per report: each costs a fraction of a second at session end


def _points(columns: Mapping[str, list[Any]], *names: str) -> list[np.ndarray]:
    """Columns restricted to rows where progress is known, as float arrays."""
    known = [i for i, d in enumerate(columns.get("progress_done", [])) if d is not None]
    return [np.array([float(columns[n][i] or 0) for i in known]) for n in names]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:60]


def _draw_memory(axes: Any, done: np.ndarray, uss: np.ndarray, rss: np.ndarray) -> None:
    axes.plot(done, rss / MIB, label="RSS", linewidth=1)
    axes.plot(done, uss / MIB, label="USS", linewidth=1)
    axes.set_xlabel("progress (units done)")
    axes.set_ylabel("MiB")
    axes.set_title("memory against progress", fontsize=9)
    axes.legend(fontsize=8)


def _rates(t_s: np.ndarray, done: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Window rates up to completion; None when the run is too short to have any."""
    t, d = until_complete(t_s, done)
    windows = min(RATE_WINDOWS_MAX, len(t) // 2)
    if windows < 2 or t[-1] <= t[0]:
        return None
    return window_rates(t, d, windows)


def _draw_throughput(axes: Any, rates: tuple[np.ndarray, np.ndarray]) -> None:
    axes.set_xlabel("time (s)")
    axes.set_ylabel("units / s")
    axes.set_title("throughput against time", fontsize=9)
    axes.plot(*rates, marker=".", linewidth=1)
    axes.set_ylim(bottom=0)


def render_png(name: str, columns: Mapping[str, list[Any]]) -> bytes | None:
    """The two-panel PNG for one recorded series; None when there is no progress to plot."""
    t_s, done, uss, rss = _points(columns, "t_s", "progress_done", "uss_bytes", "rss_bytes")
    if len(done) < 2:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGSIZE_IN)
    FigureCanvasAgg(figure)
    # Fixed margins instead of bbox_inches="tight": that costs a second full draw.
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.17, top=0.85, wspace=0.25)
    figure.suptitle(name, fontsize=9)
    rates = _rates(t_s, done)
    # No empty panel: a run too short for rate windows gets the memory panel alone.
    panels = figure.subplots(1, 2 if rates is not None else 1, squeeze=False)[0]
    _draw_memory(panels[0], done, uss, rss)
    if rates is not None:
        _draw_throughput(panels[1], rates)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def plot_test(test: Mapping[str, Any], run_dir: Path, index: int, budget: list[int]) -> list[str]:
    """Write the plots for one test record; returns their paths relative to run_dir.
    `budget` holds the plots left for the whole report and is decremented."""
    from preflight.durable import atomic_write

    written: list[str] = []
    for number, series in enumerate(test.get("series", [])):
        if budget[0] <= 0:
            break
        name = str(series.get("name", "run"))
        png = render_png(f"{test.get('nodeid', '')} {name}", series.get("columns", {}))
        if png is None:
            continue
        filename = f"plot-{index:03d}-{number}-{_slug(name)}.png"
        atomic_write(run_dir / filename, png)
        written.append(filename)
        budget[0] -= 1
    return written
