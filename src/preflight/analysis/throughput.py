"""Throughput over time: degradation (last quarter against first) and stalls.

Pure functions over (time, units done) observations. A run's rate is measured in equal time
windows over the span between warm-up and completion; the tail after the job reached its
final count (shutdown, writing outputs) is not throughput and is left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from preflight.analysis import stats
from preflight.analysis.series import SampleLike, field, finite_or_none, progress_points
from preflight.analysis.settings import StallSettings, ThroughputSettings, settings_for

# A window spanning fewer samples measures the sampling grid, not the job: its rate
# alternates between neighbours and the trend test drowns in that noise.
SAMPLES_PER_WINDOW_MIN = 3


@dataclass(frozen=True)
class ThroughputVerdict:
    ok: bool
    conclusive: bool
    reason: str
    rate_per_s: float  # over the measured span
    rate_first_per_s: float  # median window rate, first quarter
    rate_last_per_s: float  # median window rate, last quarter
    ratio_last_first: float
    p_value: float  # Mann-Kendall on window rates, Hamed-Rao corrected
    windows: int
    degradation_max: float
    alpha: float
    kind: str = "throughput"

    def to_json(self) -> dict[str, Any]:
        return _clean(asdict(self))


@dataclass(frozen=True)
class StallVerdict:
    ok: bool
    conclusive: bool
    reason: str
    longest_stall_s: float  # lower bound: time the same count was seen unchanged
    stalled_at_done: int | None
    stalled_from_s: float | None
    stall_s: float  # threshold
    kind: str = "stall"

    def to_json(self) -> dict[str, Any]:
        return _clean(asdict(self))


def _clean(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: finite_or_none(v) if isinstance(v, float) else v for k, v in fields.items()}


def until_complete(
    t_s: NDArray[np.float64], done: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Points up to the first time the final count was seen."""
    if len(done) == 0:
        return t_s, done
    last = int(np.argmax(done >= done.max()))
    return t_s[: last + 1], done[: last + 1]


def from_first_unit(
    t_s: NDArray[np.float64], done: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Points from the last observation of the initial count on: start-up time before the
    first unit of work would otherwise read as a slow first quarter."""
    moved = np.flatnonzero(np.diff(done) != 0)
    if len(moved) == 0:
        return t_s, done
    return t_s[moved[0] :], done[moved[0] :]


def window_rates(
    t_s: ArrayLike, done: ArrayLike, windows: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(window mid-times, units/s) over `windows` equal time windows, done interpolated."""
    t = np.asarray(t_s, dtype=np.float64)
    d = np.asarray(done, dtype=np.float64)
    edges = np.linspace(t[0], t[-1], windows + 1)
    at_edges = np.interp(edges, t, d)
    return (edges[:-1] + edges[1:]) / 2.0, np.diff(at_edges) / np.diff(edges)


def throughput_from_series(
    t_s: ArrayLike, done: ArrayLike, settings: ThroughputSettings
) -> ThroughputVerdict:
    # On the clock of the time the harness was watching: a frozen gap (the host took the VM,
    # job and sampler alike) is neither slow work nor a stall (`observed_intervals`).
    t, d = until_complete(watched_time(t_s), np.asarray(done, dtype=np.float64))
    t, d = from_first_unit(t, d)
    base = {"degradation_max": settings.degradation_max, "alpha": settings.alpha}
    if len(t) >= 2:
        start = t[0] + settings.warmup_fraction * (t[-1] - t[0])
        keep = t >= start
        t, d = t[keep], d[keep]
    windows = min(settings.windows, len(t) // SAMPLES_PER_WINDOW_MIN)
    if windows < settings.windows_min or t[-1] <= t[0]:
        return _inconclusive(base, f"{len(t)} progress points after warm-up", windows)
    _mid, rates = window_rates(t, d, windows)
    quarter = max(1, windows // 4)
    first = float(np.median(rates[:quarter]))
    last = float(np.median(rates[-quarter:]))
    overall = float((d[-1] - d[0]) / (t[-1] - t[0]))
    if first <= 0:
        return _inconclusive(base, "no progress in the first quarter", windows, overall)
    trend = stats.mann_kendall(rates)
    ratio = last / first
    degraded = ratio < 1.0 - settings.degradation_max and trend.significant(settings.alpha, -1)
    reason = (
        f"rate {first:.4g} -> {last:.4g} units/s (last/first {ratio:.2f}, "
        f"limit {1.0 - settings.degradation_max:.2f}), trend p={trend.p_value:.2g}"
    )
    return ThroughputVerdict(
        **base,
        ok=not degraded,
        conclusive=True,
        reason=("DEGRADED: " if degraded else "steady: ") + reason,
        rate_per_s=overall,
        rate_first_per_s=first,
        rate_last_per_s=last,
        ratio_last_first=ratio,
        p_value=trend.p_value,
        windows=windows,
    )


def _inconclusive(
    base: dict[str, Any], why: str, windows: int, overall: float = 0.0
) -> ThroughputVerdict:
    return ThroughputVerdict(
        **base,
        ok=True,
        conclusive=False,
        reason=f"inconclusive: {why}",
        rate_per_s=overall,
        rate_first_per_s=0.0,
        rate_last_per_s=0.0,
        ratio_last_first=float("nan"),
        p_value=1.0,
        windows=windows,
    )


# A gap between two samples this many times the usual one (and at least UNOBSERVED_MIN_S)
# is time the harness itself could not run: the host froze this VM (steal comes in whole
# seconds) or starved the sampler. The job was frozen with it, so it is not the job's stall.
UNOBSERVED_FACTOR = 5.0
UNOBSERVED_MIN_S = 0.25


def observed_intervals(t_s: ArrayLike) -> np.ndarray:
    """Each interval between consecutive samples, or 0 where the sampler was not running
    (pure): longer than UNOBSERVED_FACTOR times the median interval and UNOBSERVED_MIN_S."""
    t = np.asarray(t_s, dtype=np.float64)
    dt = np.diff(t)
    if len(dt) == 0:
        return dt
    limit = max(UNOBSERVED_FACTOR * float(np.median(dt)), UNOBSERVED_MIN_S)
    return np.where(dt > limit, 0.0, dt)


def watched_time(t_s: ArrayLike) -> NDArray[np.float64]:
    """Sample times with the gaps the sampler was not running taken out (pure): the same
    times on a machine that never froze."""
    t = np.asarray(t_s, dtype=np.float64)
    if len(t) == 0:
        return t
    return t[0] + np.concatenate(([0.0], np.cumsum(observed_intervals(t))))


def longest_stall(
    t_s: ArrayLike, done: ArrayLike, *, total: int | None = None
) -> tuple[float, int | None, float | None]:
    """(seconds, count, start) of the longest run of an unchanged count.

    Measured from the first to the last observation of the same count, less the gaps in
    which the sampler itself was not running (`observed_intervals`): a lower bound on the
    stall, so a sampler that was itself delayed or frozen can never invent one. The final
    count is left out once it reached `total` (the job finished; what follows is shutdown)."""
    t = np.asarray(t_s, dtype=np.float64)
    d = np.asarray(done, dtype=np.float64)
    if len(t) == 0:
        return 0.0, None, None
    change = np.flatnonzero(np.diff(d) != 0) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change - 1, [len(d) - 1]))
    if total is not None and total > 0 and d[-1] >= total:
        starts, ends = starts[:-1], ends[:-1]
    if len(change) > 0:
        # Start-up before the first unit (imports, worker spawn) is not a stall, just as
        # shutdown after the last is not: a job that never starts is a liveness failure.
        starts, ends = starts[1:], ends[1:]
    if len(starts) == 0:
        return 0.0, None, None
    watched = watched_time(t)
    lengths = watched[ends] - watched[starts]
    worst = int(np.argmax(lengths))
    return float(lengths[worst]), int(d[starts[worst]]), float(t[starts[worst]])


def stall_from_series(
    t_s: ArrayLike,
    done: ArrayLike,
    settings: StallSettings,
    *,
    total: int | None = None,
    observed_s: float | None = None,
) -> StallVerdict:
    """`observed_s`: how long the job was watched; with no progress at all over longer than
    the threshold, the job stalled before its first report."""
    t = np.asarray(t_s, dtype=np.float64)
    if len(t) == 0:
        silent = observed_s is not None and observed_s > settings.stall_s
        reason = f"no progress reported in {observed_s or 0.0:.3g} s"
        return StallVerdict(
            ok=not silent,
            conclusive=silent,
            reason=("STALLED: " if silent else "inconclusive: ") + reason,
            longest_stall_s=observed_s or 0.0,
            stalled_at_done=None,
            stalled_from_s=None,
            stall_s=settings.stall_s,
        )
    seconds, at_done, from_s = longest_stall(t, done, total=total)
    stalled = seconds > settings.stall_s
    reason = f"longest stretch without progress {seconds:.3g} s (limit {settings.stall_s:g} s)"
    if at_done is not None:
        reason += f" at {at_done} units, from t={from_s:.3g} s"
    return StallVerdict(
        ok=not stalled,
        conclusive=True,
        reason=("STALLED: " if stalled else "no stall: ") + reason,
        longest_stall_s=seconds,
        stalled_at_done=at_done,
        stalled_from_s=from_s,
        stall_s=settings.stall_s,
    )


def throughput_verdict(
    samples: Sequence[SampleLike],
    *,
    settings: ThroughputSettings | None = None,
    tier: str = "small",
) -> ThroughputVerdict:
    chosen = settings if settings is not None else settings_for(tier).throughput
    t_s, done, _ = progress_points(samples)
    return throughput_from_series(t_s, done, chosen)


def stall_verdict(
    samples: Sequence[SampleLike],
    *,
    settings: StallSettings | None = None,
    tier: str = "small",
    total: int | None = None,
) -> StallVerdict:
    chosen = settings if settings is not None else settings_for(tier).stall
    t_s, done, _ = progress_points(samples)
    all_t = [float(field(s, "t_s")) for s in samples]
    observed = (max(all_t) - min(all_t)) if all_t else 0.0
    return stall_from_series(t_s, done, chosen, total=total, observed_s=observed)
