"""Robust trend statistics: Mann-Kendall (Hamed-Rao corrected) and Theil-Sen with a CI.

Resource series are autocorrelated (memory at t+1 is memory at t plus a little), which makes
the textbook Mann-Kendall test call trends in pure noise. The Hamed & Rao (1998) correction
inflates the variance of S by the effective-sample-size ratio estimated from the ranks of
the detrended series; the same inflated variance widens the Theil-Sen confidence interval
(Sen 1968), so both answers are robust to autocorrelation. Pure numpy, O(n^2) in points:
callers bin long series first (`bin_by`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike, NDArray

POINTS_MAX = 400  # pairwise statistics are O(n^2); more points add no information here

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class MannKendall:
    s: float  # sum of signs over all ordered pairs: > 0 rising, < 0 falling
    var_s: float  # variance of S after the tie and autocorrelation corrections
    z: float
    p_value: float  # two-sided
    n: int
    n_ratio: float  # Hamed-Rao n/n*: > 1 means autocorrelation widened the test

    @property
    def trend(self) -> int:
        return int(np.sign(self.s))

    def significant(self, alpha: float, direction: int) -> bool:
        """A trend in `direction` (+1 up, -1 down) at two-sided level `alpha`."""
        return self.trend == direction and self.p_value < alpha


@dataclass(frozen=True)
class TheilSen:
    slope: float
    intercept: float
    slope_low: float  # confidence interval on the slope
    slope_high: float
    n: int


def _pair_signs(y: FloatArray) -> float:
    upper = np.triu_indices(len(y), k=1)
    return float(np.sign(y[None, :] - y[:, None])[upper].sum())


def _tie_term(y: FloatArray) -> float:
    _, counts = np.unique(y, return_counts=True)
    counts = counts[counts > 1].astype(np.float64)
    return float((counts * (counts - 1) * (2 * counts + 5)).sum())


def ranks(values: ArrayLike) -> FloatArray:
    """Average ranks (1-based), ties sharing the mean of their positions."""
    y = np.asarray(values, dtype=np.float64)
    order = np.argsort(y, kind="mergesort")
    ranked = np.empty(len(y), dtype=np.float64)
    ranked[order] = np.arange(1, len(y) + 1, dtype=np.float64)
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranked)
    return sums[inverse] / counts[inverse]


def _pair_slopes(x: FloatArray, y: FloatArray) -> FloatArray:
    i, j = np.triu_indices(len(x), k=1)
    dx = x[j] - x[i]
    keep = dx != 0
    return np.sort((y[j] - y[i])[keep] / dx[keep])


def hamed_rao_ratio(y: FloatArray) -> float:
    """n/n*: how much autocorrelation inflates Var(S); never below 1 (stay conservative)."""
    n = len(y)
    if n < 4:
        return 1.0
    index = np.arange(n, dtype=np.float64)
    slopes = _pair_slopes(index, y)
    residual = y - (float(np.median(slopes)) if len(slopes) else 0.0) * index
    r = ranks(residual)
    r = r - r.mean()
    denom = float((r * r).sum())
    if denom == 0:
        return 1.0
    bound = NormalDist().inv_cdf(0.975) / math.sqrt(n)
    total = 0.0
    for lag in range(1, n - 2):
        rho = float((r[:-lag] * r[lag:]).sum()) / denom
        if abs(rho) > bound:  # only significant autocorrelations count (Hamed-Rao)
            total += (n - lag) * (n - lag - 1) * (n - lag - 2) * rho
    return max(1.0, 1.0 + 2.0 * total / (n * (n - 1) * (n - 2)))


def mann_kendall(values: ArrayLike) -> MannKendall:
    """Mann-Kendall trend test on a series in order, corrected for ties and autocorrelation."""
    y = np.asarray(values, dtype=np.float64)
    n = len(y)
    if n < 3:
        return MannKendall(0.0, 0.0, 0.0, 1.0, n, 1.0)
    s = _pair_signs(y)
    var_s = (n * (n - 1) * (2 * n + 5) - _tie_term(y)) / 18.0
    ratio = hamed_rao_ratio(y)
    var_s *= ratio
    if var_s <= 0:
        return MannKendall(s, 0.0, 0.0, 1.0, n, ratio)
    # Continuity correction: S moves in steps of 2.
    z = (s - math.copysign(1.0, s)) / math.sqrt(var_s) if s != 0 else 0.0
    p_value = min(1.0, 2.0 * (1.0 - NormalDist().cdf(abs(z))))
    return MannKendall(s, var_s, z, p_value, n, ratio)


def theil_sen(
    x: ArrayLike, y: ArrayLike, *, var_s: float | None = None, confidence: float = 0.95
) -> TheilSen:
    """Median of pairwise slopes with Sen's confidence interval. Pass the Mann-Kendall
    `var_s` (autocorrelation-corrected) to get an interval that is honest about it."""
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ValueError(f"x and y must be 1-D and equal in length, got {xs.shape}, {ys.shape}")
    slopes = _pair_slopes(xs, ys)
    n_slopes = len(slopes)
    if n_slopes == 0:
        return TheilSen(0.0, float(np.median(ys)) if len(ys) else 0.0, 0.0, 0.0, len(xs))
    slope = float(np.median(slopes))
    intercept = float(np.median(ys) - slope * np.median(xs))
    n = len(xs)
    if var_s is None:
        var_s = (n * (n - 1) * (2 * n + 5) - _tie_term(xs)) / 18.0
    spread = NormalDist().inv_cdf(0.5 + confidence / 2.0) * math.sqrt(max(var_s, 0.0))
    low_index = max(int(round((n_slopes - spread) / 2.0)) - 1, 0)
    high_index = min(int(round((n_slopes + spread) / 2.0)), n_slopes - 1)
    return TheilSen(slope, intercept, float(slopes[low_index]), float(slopes[high_index]), n)


def median_by_key(keys: ArrayLike, values: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """One point per distinct key (sorted), its value the median of that key's values."""
    k = np.asarray(keys, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    order = np.argsort(k, kind="mergesort")
    k, v = k[order], v[order]
    unique, starts = np.unique(k, return_index=True)
    groups = np.split(v, starts[1:])
    return unique, np.array([np.median(g) for g in groups], dtype=np.float64)


def bin_by(
    keys: ArrayLike, values: ArrayLike, points_max: int = POINTS_MAX
) -> tuple[FloatArray, FloatArray]:
    """At most `points_max` points: consecutive runs of sorted points, each the median."""
    k = np.asarray(keys, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if len(k) <= points_max:
        return k, v
    chunks = np.array_split(np.arange(len(k)), points_max)
    return (
        np.array([np.median(k[c]) for c in chunks]),
        np.array([np.median(v[c]) for c in chunks]),
    )
