"""The readiness report's evidence figures, as PNG bytes (pure: data in, image out).

leak: a resource against units of work with the Theil-Sen fit, its 95% interval and the
gate's threshold drawn as slopes; throughput: the window rates over time with their trend
and the rate the last quarter must keep; stall: progress over time with the longest flat
stretch marked; timeline: a fault battery's attempts per experiment (kills, restarts, units
reached); measured: a requirement's measured values against its threshold when no
experiment figure shows them. Each returns None when there is nothing to draw, so the
report never shows an empty plot. matplotlib's object API on the Agg canvas only: no
display, no pyplot state (like src/preflight/reports/plots.py)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from preflight.analysis import stats
from preflight.analysis.settings import LeakSettings, ThroughputSettings
from preflight.analysis.throughput import (
    SAMPLES_PER_WINDOW_MIN,
    from_first_unit,
    until_complete,
    watched_time,
    window_rates,
)

MIB = float(1 << 20)
DPI = 80
WIDE_IN = (9.0, 3.6)
TIMELINE_ROWS_MAX = 24  # a battery has up to ~30 rows; the failed ones are kept first
ROW_IN = 0.34
TIMELINE_MARGINS_IN = 1.35
PASS_COLOR, FAIL_COLOR, WARN_COLOR, FIT_COLOR = "#2e7d32", "#c62828", "#ef6c00", "#1565c0"
TITLE_SIZE, TEXT_SIZE = 9, 8


@dataclass(frozen=True)
class LeakFit:
    """The points the leak detector judged (after warm-up, one per progress value, binned)
    and the Theil-Sen fit over them, exactly as preflight.analysis.leak computes it."""

    x: np.ndarray
    y: np.ndarray
    fit: stats.TheilSen
    warmup_end: float


def leak_fit(done: Sequence[float], values: Sequence[float], settings: LeakSettings
             ) -> LeakFit | None:
    x_all = np.asarray(done, dtype=np.float64)
    y_all = np.asarray(values, dtype=np.float64)
    if len(x_all) < 2:
        return None
    start = float(x_all.min() + settings.warmup_fraction * (x_all.max() - x_all.min()))
    x, y = stats.median_by_key(x_all[x_all >= start], y_all[x_all >= start])
    x, y = stats.bin_by(x, y)
    if len(x) < max(2, settings.points_min):  # the detector judged nothing: no fit to show
        return None
    trend = stats.mann_kendall(y)
    return LeakFit(x, y, stats.theil_sen(x, y, var_s=trend.var_s), start)


def _figure(size: tuple[float, float]) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size)
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _known(columns: Mapping[str, Sequence[Any]], *names: str) -> list[np.ndarray]:
    """The named columns at the samples whose progress is known, as float arrays."""
    done = list(columns.get("progress_done") or [])
    rows = [i for i, d in enumerate(done) if d is not None
            and all(i < len(columns.get(n) or []) and columns[n][i] is not None for n in names)]
    return [np.array([float(columns[n][i]) for i in rows]) for n in names]


def leak_png(title: str, columns: Mapping[str, Sequence[Any]], metric: str,
             settings: LeakSettings, threshold: float | None) -> bytes | None:
    """``metric`` (uss_bytes or open_files) against units done, with the fitted slope, its
    interval and the threshold slope, all drawn through the fit's median point."""
    done, values = _known(columns, "progress_done", metric)
    found = leak_fit(done, values, settings)
    if found is None:
        return None
    scale, unit = (MIB, "MiB") if metric.endswith("bytes") else (1.0, "fds")
    per = "B/unit" if metric.endswith("bytes") else "fds/unit"
    fit, x = found.fit, np.linspace(found.x.min(), found.x.max(), 50)
    xm, ym = float(np.median(found.x)), float(np.median(found.y))
    figure = _figure(WIDE_IN)
    figure.subplots_adjust(left=0.09, right=0.98, bottom=0.14, top=0.82)
    axes = figure.subplots()
    warm = done < found.warmup_end
    axes.plot(done[warm], values[warm] / scale, ".", color="#bbbbbb", markersize=3,
              label="warm-up (not judged)")
    axes.plot(found.x, found.y / scale, ".", color="#555555", markersize=4, label="judged")
    axes.plot(x, (fit.intercept + fit.slope * x) / scale, color=FIT_COLOR, linewidth=2,
              label=f"Theil-Sen fit {fit.slope:.4g} {per}")
    axes.fill_between(x, (ym + fit.slope_low * (x - xm)) / scale,
                      (ym + fit.slope_high * (x - xm)) / scale, color=FIT_COLOR, alpha=0.18,
                      label=f"95% CI {fit.slope_low:.4g}..{fit.slope_high:.4g}")
    if threshold is not None:
        failing = fit.slope_low > threshold
        axes.plot(x, (ym + threshold * (x - xm)) / scale, "--", linewidth=1.5,
                  color=FAIL_COLOR if failing else WARN_COLOR,
                  label=f"threshold {threshold:g} {per}")
    axes.set_xlabel("progress (units done)")
    axes.set_ylabel(unit)
    axes.legend(fontsize=TEXT_SIZE, loc="upper left")
    limit = "" if threshold is None else f" vs threshold ≤ {threshold:g}"
    axes.set_title(f"{title}\n{metric} per unit of work: {fit.slope:.4g} {per} "
                   f"(95% CI {fit.slope_low:.4g}..{fit.slope_high:.4g}){limit}",
                   fontsize=TITLE_SIZE)
    return _png(figure)


def rate_windows(t_s: np.ndarray, done: np.ndarray, settings: ThroughputSettings
                 ) -> tuple[np.ndarray, np.ndarray] | None:
    """(window mid-times, units/s) over the span the throughput detector judges (pure)."""
    t, d = until_complete(watched_time(t_s), done)
    t, d = from_first_unit(t, d)
    if len(t) < 2:
        return None
    keep = t >= t[0] + settings.warmup_fraction * (t[-1] - t[0])
    t, d = t[keep], d[keep]
    windows = min(settings.windows, len(t) // SAMPLES_PER_WINDOW_MIN)
    if windows < max(2, settings.windows_min) or t[-1] <= t[0]:
        return None
    return window_rates(t, d, windows)


def throughput_png(title: str, columns: Mapping[str, Sequence[Any]],
                   settings: ThroughputSettings, min_ratio: float | None) -> bytes | None:
    """Rate over time, the first and last quarters' medians (the ratio the gate bounds), a
    straight trend, and the rate the last quarter must keep."""
    t_s, done = _known(columns, "t_s", "progress_done")
    found = rate_windows(t_s, done, settings)
    if found is None:
        return None
    mid, rates = found
    quarter = max(1, len(rates) // 4)
    first, last = float(np.median(rates[:quarter])), float(np.median(rates[-quarter:]))
    figure = _figure(WIDE_IN)
    figure.subplots_adjust(left=0.09, right=0.98, bottom=0.14, top=0.82)
    axes = figure.subplots()
    axes.plot(mid, rates, ".-", color="#555555", linewidth=1, label="rate per window")
    slope, intercept = np.polyfit(mid, rates, 1)
    axes.plot(mid, intercept + slope * mid, color=FIT_COLOR, linewidth=1.5, label="trend")
    axes.hlines([first, last], [mid[0], mid[-quarter]], [mid[quarter - 1], mid[-1]],
                colors=[PASS_COLOR, FAIL_COLOR if min_ratio and last < first * min_ratio
                        else PASS_COLOR], linewidth=3, label="first / last quarter median")
    if min_ratio is not None and first > 0:
        axes.axhline(first * min_ratio, linestyle="--", color=WARN_COLOR, linewidth=1.2,
                     label=f"threshold: last ≥ {min_ratio:g} × first")
    axes.set_ylim(bottom=0)
    axes.set_xlabel("time (s, frozen host gaps removed)")
    axes.set_ylabel("units / s")
    axes.legend(fontsize=TEXT_SIZE, loc="lower left")
    ratio = f"{last / first:.3g}" if first > 0 else "undefined"
    limit = "" if min_ratio is None else f" vs threshold ≥ {min_ratio:g}"
    axes.set_title(f"{title}\nthroughput, last quarter over first: {ratio}{limit}",
                   fontsize=TITLE_SIZE)
    return _png(figure)


def stall_png(title: str, columns: Mapping[str, Sequence[Any]], stall: Mapping[str, Any],
              threshold: float | None) -> bytes | None:
    """Units done over time; the longest stretch without progress is shaded."""
    t_s, done = _known(columns, "t_s", "progress_done")
    if len(t_s) < 2:
        return None
    figure = _figure(WIDE_IN)
    figure.subplots_adjust(left=0.09, right=0.98, bottom=0.14, top=0.82)
    axes = figure.subplots()
    axes.step(t_s, done, where="post", color="#555555", linewidth=1.2, label="units done")
    longest = float(stall.get("longest_stall_s") or 0.0)
    start = stall.get("stalled_from_s")
    over = threshold is not None and longest > threshold
    if start is not None and longest > 0:
        axes.axvspan(float(start), float(start) + longest, alpha=0.25,
                     color=FAIL_COLOR if over else WARN_COLOR,
                     label=f"longest stall {longest:.3g} s")
    axes.set_xlabel("time (s)")
    axes.set_ylabel("units done")
    axes.legend(fontsize=TEXT_SIZE, loc="upper left")
    limit = "" if threshold is None else f" vs threshold ≤ {threshold:g} s"
    axes.set_title(f"{title}\nlongest stretch without progress: {longest:.3g} s{limit}",
                   fontsize=TITLE_SIZE)
    return _png(figure)


def _attempt_color(attempt: Mapping[str, Any]) -> str:
    if attempt.get("fault"):
        return FAIL_COLOR
    return PASS_COLOR if attempt.get("rc") == 0 else WARN_COLOR


def _units(attempt: Mapping[str, Any]) -> str:
    """Units done from→to; an attempt that made none shows its exit (a refused resume)."""
    start, last = attempt.get("start_done"), attempt.get("last_done")
    if start is None and last is None:
        rc = attempt.get("rc")
        return "" if rc in (None, 0) else f"exit {rc}"
    return f"{'?' if start is None else start}→{'?' if last is None else last}"


def timeline_rows(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The battery rows to draw: those with attempts, failures first, at most
    TIMELINE_ROWS_MAX (pure)."""
    ran = [r for r in rows if (r.get("history") or {}).get("attempts")]
    ran.sort(key=lambda r: r.get("status") in ("PASS", "SKIP"))
    return ran[:TIMELINE_ROWS_MAX]


def timeline_png(title: str, rows: Sequence[Mapping[str, Any]]) -> bytes | None:
    """One line per experiment of a battery: its attempts end to end in time, red where the
    harness injected the fault (x: the kill or limit), green for a clean exit, orange for
    another exit; the units each attempt went from and to are written on it."""
    from matplotlib.patches import Patch

    shown = timeline_rows(rows)
    if not shown:
        return None
    height = TIMELINE_MARGINS_IN + ROW_IN * len(shown)
    figure = _figure((9.0, height))
    # Fixed margins in inches (title above; axis label and legend below the bars).
    figure.subplots_adjust(left=0.26, right=0.98, bottom=0.78 / height, top=1 - 0.45 / height)
    axes = figure.subplots()
    for y, row in enumerate(shown):
        t = 0.0
        for attempt in row["history"]["attempts"]:
            width = max(float(attempt.get("duration_s") or 0.0), 0.01)
            axes.barh(y, width, left=t, height=0.6, color=_attempt_color(attempt), alpha=0.85)
            axes.text(t + width / 2, y, _units(attempt), ha="center", va="center",
                      fontsize=6, color="white")
            if attempt.get("fault"):
                axes.plot(t + width, y, "x", color="black", markersize=7)
            t += width
    labels = [f"{r.get('id')}  {r.get('status')}" for r in shown]
    axes.set_yticks(range(len(shown)), labels, fontsize=7)
    for tick, row in zip(axes.get_yticklabels(), shown, strict=True):
        tick.set_color(FAIL_COLOR if row.get("status") not in ("PASS", "SKIP") else "black")
    axes.invert_yaxis()
    axes.set_xlabel("time within the experiment (s); text: units done from→to per attempt")
    figure.legend(handles=[Patch(color=FAIL_COLOR, label="fault injected (x: kill / limit)"),
                           Patch(color=PASS_COLOR, label="clean exit"),
                           Patch(color=WARN_COLOR, label="other exit")],
                  fontsize=7, loc="lower center", ncol=3, frameon=False)
    more = len([r for r in rows if (r.get("history") or {}).get("attempts")]) - len(shown)
    axes.set_title(f"{title}: kills, restarts and progress per experiment"
                   + (f" (+{more} passing not shown)" if more > 0 else ""), fontsize=TITLE_SIZE)
    return _png(figure)


def measured_png(title: str, points: Sequence[tuple[str, float, bool]], comparator: str,
                 threshold: float, unit: str) -> bytes | None:
    """Each measured value (label, value, taken on a disturbed host) against the threshold;
    points that miss it are red, unsure ones hollow."""
    if not points:
        return None
    values = [v for _, v, _ in points]
    figure = _figure((9.0, 3.0))
    figure.subplots_adjust(left=0.09, right=0.98, bottom=0.3, top=0.84)
    axes = figure.subplots()
    for i, (_name, value, unsure) in enumerate(points):
        ok = value <= threshold if comparator == "<=" else value >= threshold
        color = PASS_COLOR if ok else FAIL_COLOR
        axes.plot(i, value, "o", markersize=8, color=color,
                  markerfacecolor="none" if unsure else color)
        axes.annotate(f"{value:.4g}", (i, value), textcoords="offset points", xytext=(8, 4),
                      fontsize=TEXT_SIZE)
    axes.axhline(threshold, linestyle="--", color=WARN_COLOR,
                 label=f"threshold {comparator} {threshold:g} {unit}")
    low, high = min([*values, threshold]), max([*values, threshold])
    pad = (high - low) * 0.2 or max(abs(high) * 0.2, 1.0)
    axes.set_ylim(low - pad, high + pad)
    axes.set_xlim(-0.5, len(points) - 0.5)
    axes.set_xticks(range(len(points)), [_short(n) for n, _, _ in points], fontsize=7)
    axes.set_ylabel(unit or "value")
    axes.legend(fontsize=TEXT_SIZE, loc="upper right")
    axes.set_title(title, fontsize=TITLE_SIZE)
    return _png(figure)


def _short(name: str, limit: int = 48) -> str:
    return name if len(name) <= limit else "…" + name[-limit + 1:]
