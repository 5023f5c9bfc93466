"""The session report's per-run plots (src/preflight/reports/plots.py): no plot without progress,
and
no empty throughput panel for a run too short to have a rate."""

from __future__ import annotations

import numpy as np

from preflight.reports.plots import _rates, render_png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _columns(n: int) -> dict[str, list[float]]:
    return {"t_s": [float(i) for i in range(n)], "progress_done": list(range(n)),
            "uss_bytes": [1e6] * n, "rss_bytes": [2e6] * n}


def test_no_plot_without_two_progress_points() -> None:
    assert render_png("x", _columns(1)) is None
    assert render_png("x", {**_columns(4), "progress_done": [None] * 4}) is None


def test_a_short_run_gets_the_memory_panel_alone() -> None:
    short, long = _columns(3), _columns(8)
    assert _rates(np.array(short["t_s"]), np.array(short["progress_done"], float)) is None
    assert _rates(np.array(long["t_s"]), np.array(long["progress_done"], float)) is not None
    for columns in (short, long):
        png = render_png("x", columns)
        assert png is not None and png[:8] == PNG_MAGIC
