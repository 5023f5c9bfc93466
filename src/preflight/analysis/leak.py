"""Leak detection: a resource (memory, file descriptors, threads) against units of work.

Growth against *progress*, not time, is what scales with the production size: a job that
retains 20 KB per sample leaks 600 MB over 30 000 samples however fast it runs. Pure
functions over recorded samples; the thresholds come from preflight.analysis.settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from preflight.analysis import stats
from preflight.analysis.series import SampleLike, finite_or_none, progress_points
from preflight.analysis.settings import LeakSettings, settings_for

METRIC_UNITS = {
    "uss_bytes": "bytes",
    "rss_bytes": "bytes",
    "open_files": "fds",
    "threads": "threads",
}
EDGE_FRACTION = 0.1  # growth = median of the last 10% of points minus the first 10%


@dataclass(frozen=True)
class LeakVerdict:
    metric: str
    value_unit: str  # what the metric counts: bytes, fds, threads
    ok: bool  # no leak declared (an inconclusive series is ok but not conclusive)
    conclusive: bool
    reason: str
    per_unit: float  # Theil-Sen slope: metric units per progress unit
    per_unit_low: float  # 95% interval, widened for autocorrelation
    per_unit_high: float
    p_value: float  # Mann-Kendall, Hamed-Rao corrected
    growth: float  # observed over the measured span, after warm-up
    units_observed: float
    points: int
    per_unit_max: float  # thresholds applied
    growth_floor: float
    alpha: float
    units_production: int | None
    projected_growth: float | None  # per_unit * units_production
    kind: str = "leak"

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float):
                out[key] = finite_or_none(value)
        return out


def _edge_growth(values: np.ndarray) -> float:
    edge = max(1, int(len(values) * EDGE_FRACTION))
    return float(np.median(values[-edge:]) - np.median(values[:edge]))


def leak_from_xy(
    progress: ArrayLike,
    values: ArrayLike,
    settings: LeakSettings,
    *,
    metric: str = "uss_bytes",
    units_production: int | None = None,
) -> LeakVerdict:
    """The leak verdict for `values` observed at `progress` (any order, repeats allowed)."""
    x_all = np.asarray(progress, dtype=np.float64)
    y_all = np.asarray(values, dtype=np.float64)
    base = {
        "metric": metric,
        "value_unit": METRIC_UNITS.get(metric, "units"),
        "per_unit_max": settings.per_unit_max,
        "growth_floor": settings.growth_floor,
        "alpha": settings.alpha,
        "units_production": units_production,
    }
    if len(x_all) == 0:
        return _inconclusive(base, "no samples with progress", 0, 0.0)
    span = float(x_all.max() - x_all.min())
    keep = x_all >= x_all.min() + settings.warmup_fraction * span
    x, y = stats.median_by_key(x_all[keep], y_all[keep])
    x, y = stats.bin_by(x, y)
    if len(x) < settings.points_min:
        return _inconclusive(
            base,
            f"{len(x)} progress points after warm-up, need {settings.points_min}",
            len(x),
            float(x[-1] - x[0]) if len(x) else 0.0,
        )
    trend = stats.mann_kendall(y)
    fit = stats.theil_sen(x, y, var_s=trend.var_s)
    growth = _edge_growth(y)
    leaking = (
        trend.significant(settings.alpha, +1)
        and fit.slope_low > settings.per_unit_max
        and growth > settings.growth_floor
    )
    reason = (
        f"{metric} grows {fit.slope:.4g} {base['value_unit']}/unit "
        f"(95% CI {fit.slope_low:.4g}..{fit.slope_high:.4g}, limit {settings.per_unit_max:g}), "
        f"{growth:.4g} over the run (floor {settings.growth_floor:g}), p={trend.p_value:.2g}"
    )
    projected = fit.slope * units_production if units_production is not None else None
    if projected is not None:
        reason += f"; projected {projected:.4g} at {units_production} units (production)"
    return LeakVerdict(
        **base,
        ok=not leaking,
        conclusive=True,
        reason=("LEAK: " if leaking else "no leak: ") + reason,
        per_unit=fit.slope,
        per_unit_low=fit.slope_low,
        per_unit_high=fit.slope_high,
        p_value=trend.p_value,
        growth=growth,
        units_observed=float(x[-1] - x[0]),
        points=len(x),
        projected_growth=projected,
    )


def _inconclusive(base: dict[str, Any], why: str, points: int, units: float) -> LeakVerdict:
    return LeakVerdict(
        **base,
        ok=True,
        conclusive=False,
        reason=f"inconclusive: {why}",
        per_unit=0.0,
        per_unit_low=0.0,
        per_unit_high=0.0,
        p_value=1.0,
        growth=0.0,
        units_observed=units,
        points=points,
        projected_growth=None,
    )


def leak_verdict(
    samples: Sequence[SampleLike],
    *,
    metric: str = "uss_bytes",
    settings: LeakSettings | None = None,
    tier: str = "small",
    units_production: int | None = None,
) -> LeakVerdict:
    """Leak verdict for one Sample field over a recorded run (defaults: the tier profile)."""
    chosen = settings if settings is not None else settings_for(tier).leak(metric)
    _t, done, values = progress_points(samples, metric)
    return leak_from_xy(done, values, chosen, metric=metric, units_production=units_production)
