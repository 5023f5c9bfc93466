"""The detectors on hand-made series: pure functions, no processes."""

from __future__ import annotations

import json
from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from preflight.analysis import (
    LeakSettings,
    StallSettings,
    ThroughputSettings,
    ThroughputVerdict,
    leak_from_xy,
    leak_verdict,
    settings_for,
    stall_from_series,
    stall_verdict,
    stats,
    throughput_from_series,
    throughput_verdict,
)
from preflight.analysis.confirm import below_bound, confirm
from preflight.analysis.throughput import observed_intervals, watched_time

MEMORY = settings_for("small").memory
KIB = 1024
MIB = 1 << 20
BASE_BYTES = 50 * MIB


def _ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    noise = rng.normal(0.0, sd, n)
    out = np.zeros(n)
    for i in range(1, n):
        out[i] = phi * out[i - 1] + noise[i]
    return out


# ---------------------------------------------------------------------------- stats


def test_theil_sen_matches_the_reference_and_shrugs_off_an_outlier() -> None:
    x = list(range(12))
    y = [1.0, 2.9, 5.2, 7.1, 8.8, 30.0, 13.0, 14.8, 17.5, 19.1, 20.7, 23.2]  # y[5] is wild
    fit = stats.theil_sen(x, y)
    # Reference: scipy.stats.theilslopes(y, x, 0.95) (not imported: it costs 1.5 s).
    assert (fit.slope, fit.slope_low, fit.slope_high) == pytest.approx((2.0, 1.9375, 2.06))
    assert fit.intercept == pytest.approx(2.9)


def test_ranks_average_ties() -> None:
    assert stats.ranks([3.0, 1.0, 3.0, 2.0, 3.0, 1.0]).tolist() == [5, 1.5, 5, 3, 5, 1.5]


def test_mann_kendall_on_monotone_constant_and_short_series() -> None:
    rising = stats.mann_kendall(np.arange(30.0))
    assert rising.s == 30 * 29 / 2 and rising.trend == 1 and rising.p_value < 1e-6
    assert stats.mann_kendall(np.full(30, 5.0)).p_value == 1.0
    assert stats.mann_kendall([1.0, 2.0]).p_value == 1.0


def test_autocorrelation_correction_cuts_false_trends() -> None:
    """On trendless AR(1) noise the textbook test calls trends far too often; the
    Hamed-Rao corrected one much less (and never more)."""
    rng = np.random.default_rng(11)
    corrected = naive = 0
    for _ in range(150):
        y = _ar1(rng, 50, 0.7, 1.0)
        result = stats.mann_kendall(y)
        assert result.n_ratio >= 1.0
        corrected += result.p_value < 0.05
        z_naive = abs(result.s) / np.sqrt(result.var_s / result.n_ratio)
        naive += 2 * (1 - NormalDist().cdf(z_naive)) < 0.05
    assert corrected < 0.8 * naive


# ---------------------------------------------------------------------------- leak


def test_leak_of_20kb_per_unit_is_flagged_with_its_rate_and_projection() -> None:
    rng = np.random.default_rng(1)
    units = np.arange(200.0)
    memory = BASE_BYTES + 20 * KIB * units + rng.normal(0, 64 * KIB, 200)
    verdict = leak_from_xy(units, memory, MEMORY, units_production=30000)
    assert not verdict.ok and verdict.conclusive
    assert verdict.per_unit_low <= 20 * KIB <= verdict.per_unit_high
    assert verdict.per_unit == pytest.approx(20 * KIB, rel=0.1)
    assert verdict.projected_growth == pytest.approx(verdict.per_unit * 30000)
    assert verdict.reason.startswith("LEAK")


@pytest.mark.parametrize("seed", range(20))
def test_autocorrelated_flat_memory_is_not_a_leak(seed: int) -> None:
    rng = np.random.default_rng(seed)
    memory = BASE_BYTES + _ar1(rng, 150, 0.9, 40 * KIB)
    verdict = leak_from_xy(np.arange(150.0), memory, MEMORY)
    assert verdict.ok and verdict.conclusive, verdict.reason


def test_a_steep_slope_below_the_growth_floor_is_not_a_leak() -> None:
    """20 KB/unit over 30 units is 0.6 MB: real, but too small to call on a short run."""
    units = np.arange(30.0)
    verdict = leak_from_xy(units, BASE_BYTES + 20 * KIB * units, MEMORY)
    assert verdict.conclusive and verdict.ok
    assert verdict.per_unit_low > MEMORY.per_unit_max
    assert verdict.growth < MEMORY.growth_floor


def test_a_shallow_slope_above_the_floor_is_not_a_leak() -> None:
    """200 B/unit over 100k units grows 20 MB but stays under the per-unit limit."""
    units = np.linspace(0, 100_000, 200)
    verdict = leak_from_xy(units, BASE_BYTES + 200 * units, MEMORY)
    assert verdict.ok and verdict.growth > MEMORY.growth_floor


def test_growth_during_warm_up_is_ignored() -> None:
    units = np.arange(200.0)
    memory = BASE_BYTES + np.minimum(units, 30) * 200 * KIB  # caches fill, then flat
    verdict = leak_from_xy(units, memory, MEMORY)
    assert verdict.ok and verdict.conclusive
    assert verdict.units_observed == pytest.approx(199 * (1 - MEMORY.warmup_fraction), abs=1)
    no_warmup = LeakSettings(per_unit_max=1024, growth_floor=MIB, warmup_fraction=0.0)
    assert leak_from_xy(units, memory, no_warmup).units_observed == 199


def test_too_few_points_is_inconclusive() -> None:
    verdict = leak_from_xy([0, 1, 2, 3], [0, MIB, 2 * MIB, 3 * MIB], MEMORY)
    assert verdict.ok and not verdict.conclusive and "inconclusive" in verdict.reason
    assert leak_from_xy([], [], MEMORY).conclusive is False


def test_leak_verdict_reads_samples_or_report_rows_for_any_metric() -> None:
    rows = [
        {"t_s": i * 0.1, "progress_done": i, "open_files": 10 + i, "threads": 4,
         "uss_bytes": BASE_BYTES}
        for i in range(100)
    ]
    rows.append({"t_s": 11.0, "progress_done": None, "open_files": 999, "threads": 4,
                 "uss_bytes": 0})
    fds = leak_verdict(rows, metric="open_files")
    assert not fds.ok and fds.value_unit == "fds" and fds.per_unit == pytest.approx(1.0)
    assert leak_verdict(rows, metric="threads").ok
    assert leak_verdict(rows).ok
    encoded = json.dumps(fds.to_json(), allow_nan=False)
    assert '"per_unit_max": 0.01' in encoded and '"kind": "leak"' in encoded


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 0.99 * MIB), min_size=8, max_size=120))
def test_nothing_that_moves_less_than_the_floor_is_ever_a_leak(wobble: list[float]) -> None:
    units = np.arange(len(wobble), dtype=float)
    assert leak_from_xy(units, BASE_BYTES + np.array(wobble), MEMORY).ok


# ---------------------------------------------------------------------------- throughput

THROUGHPUT = ThroughputSettings()


def _progress_at(rate_per_s: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.floor(np.concatenate(([0.0], np.cumsum(rate_per_s[:-1] * np.diff(t)))))


def test_steady_rate_is_ok_and_a_40_percent_slowdown_is_flagged() -> None:
    rng = np.random.default_rng(5)
    t = np.arange(0, 20, 0.1)
    steady = _progress_at(100 * (1 + rng.normal(0, 0.05, len(t))), t)
    verdict = throughput_from_series(t, steady, THROUGHPUT)
    assert verdict.ok and verdict.conclusive
    assert verdict.ratio_last_first == pytest.approx(1.0, abs=0.1)
    slowing = _progress_at(100 * (1 - 0.4 * t / t[-1]) * (1 + rng.normal(0, 0.05, len(t))), t)
    verdict = throughput_from_series(t, slowing, THROUGHPUT)
    assert not verdict.ok and verdict.reason.startswith("DEGRADED")
    assert verdict.ratio_last_first < 1 - THROUGHPUT.degradation_max


def test_a_slowdown_under_the_limit_is_ok() -> None:
    t = np.arange(0, 20, 0.1)
    verdict = throughput_from_series(t, _progress_at(100 * (1 - 0.1 * t / t[-1]), t), THROUGHPUT)
    assert verdict.ok and verdict.conclusive and verdict.ratio_last_first > 0.85


def test_the_idle_tail_after_completion_is_not_a_slowdown() -> None:
    t = np.arange(0, 20, 0.1)
    done = np.minimum(t * 100, 1000)  # done at t=10 s, then 10 s of shutdown
    verdict = throughput_from_series(t, done, THROUGHPUT)
    assert verdict.ok and verdict.conclusive


def test_throughput_with_few_points_is_inconclusive() -> None:
    verdict = throughput_verdict([{"t_s": 0.0, "progress_done": 0}, {"t_s": 1, "progress_done": 5}])
    assert verdict.ok and not verdict.conclusive
    assert json.dumps(verdict.to_json(), allow_nan=False)


# ---------------------------------------------------------------------------- stall

STALL = StallSettings(stall_s=1.0)


def test_a_stall_is_found_with_where_and_when() -> None:
    t = np.arange(0, 6, 0.1)
    done = np.where(t < 2, t * 10, np.where(t < 5, 20, 20 + (t - 5) * 10)).round()
    verdict = stall_from_series(t, done, STALL)
    assert not verdict.ok and verdict.stalled_at_done == 20
    assert verdict.longest_stall_s == pytest.approx(3.0, abs=0.15)
    assert verdict.stalled_from_s == pytest.approx(2.0, abs=0.15)


def test_a_delayed_sampler_cannot_invent_a_stall() -> None:
    """No sample for 3 s, but the count moved across the gap: no evidence of a stall."""
    t = np.concatenate((np.arange(0, 2, 0.1), np.arange(5, 7, 0.1)))
    done = np.arange(len(t), dtype=float)
    assert stall_from_series(t, done, STALL).ok


def test_start_up_before_the_first_unit_is_not_a_stall() -> None:
    t = np.arange(0.0, 6.0, 0.1)
    done = np.where(t < 3.0, 0, np.floor((t - 3.0) * 20)).astype(float)
    assert stall_from_series(t, done, STALL).ok
    # A stall after work began is still found.
    done_stuck = np.where(t < 4.0, done, np.floor(1.0 * 20))
    assert not stall_from_series(t, done_stuck, STALL).ok


def test_start_up_does_not_read_as_a_slow_first_quarter() -> None:
    t = np.arange(0.0, 10.0, 0.05)
    done = np.where(t < 4.0, 0.0, np.floor((t - 4.0) * 50))
    verdict = throughput_from_series(t, done, ThroughputSettings())
    assert verdict.conclusive and verdict.ok
    assert verdict.ratio_last_first == pytest.approx(1.0, abs=0.15)


def test_shutdown_after_the_last_unit_is_not_a_stall() -> None:
    t = np.arange(0, 5, 0.1)
    done = np.minimum(np.arange(len(t)), 10).astype(float)
    assert stall_from_series(t, done, STALL, total=10).ok
    assert not stall_from_series(t, done, STALL).ok  # without a total it cannot know


def test_no_progress_at_all() -> None:
    silent = [{"t_s": i * 0.5, "progress_done": None} for i in range(6)]
    verdict = stall_verdict(silent, settings=STALL)
    assert not verdict.ok and verdict.conclusive and "no progress" in verdict.reason
    assert stall_verdict(silent[:2], settings=STALL).conclusive is False


def test_settings_profiles_cover_every_tier() -> None:
    assert settings_for("production").stall.stall_s > settings_for("small").stall.stall_s
    with pytest.raises(ValueError, match="unknown tier"):
        settings_for("huge")
    with pytest.raises(ValueError, match="no leak settings"):
        settings_for("small").leak("cpu_s")


# ---------------------------------------------------------------------------- confirmation


def _slowing_and_steady() -> tuple[ThroughputVerdict, ThroughputVerdict]:
    t = np.linspace(0.0, 10.0, 200)
    slowing = throughput_from_series(t, _progress_at(100 * (1 - 0.5 * t / t[-1]), t), THROUGHPUT)
    steady = throughput_from_series(t, 100 * t, THROUGHPUT)
    assert not slowing.ok and steady.ok
    return slowing, steady


def test_a_timing_alarm_stands_only_if_a_second_run_reproduces_it() -> None:
    slowing, steady = _slowing_and_steady()
    cleared = confirm({"throughput": slowing}, {"throughput": steady})["throughput"]
    assert cleared.ok and "not reproduced" in cleared.reason and "DEGRADED" in cleared.reason
    stands = confirm({"throughput": slowing}, {"throughput": slowing})["throughput"]
    assert not stands.ok and "; reproduced" in stands.reason
    # A first run that passed is the verdict; the second is not consulted.
    assert confirm({"throughput": steady}, {"throughput": slowing})["throughput"] is steady


def test_a_clock_free_alarm_must_pass_in_every_run() -> None:
    slowing, steady = _slowing_and_steady()
    # Stand-ins: any verdict with ok and reason; "memory" is judged per unit, not by clock.
    assert confirm({"memory": steady}, {"memory": slowing})["memory"] is slowing
    assert confirm({"memory": slowing}, {"memory": steady})["memory"] is slowing
    with pytest.raises(ValueError, match="different detectors"):
        confirm({"memory": steady}, {"stall": steady})


def test_a_figure_below_the_gates_bound_is_an_alarm_the_confirming_run_may_clear() -> None:
    slowing, steady = _slowing_and_steady()
    assert below_bound(steady, 0.9, 0.5, "ratio") is steady  # above the bound: untouched
    assert below_bound(slowing, 0.3, 0.5, "ratio") is slowing  # already an alarm
    low = below_bound(steady, 0.45, 0.5, "ratio")
    assert not low.ok and "ratio 0.45 below the gate's bound 0.5" in low.reason
    assert confirm({"throughput": low}, {"throughput": steady})["throughput"].ok
    assert not confirm({"throughput": low}, {"throughput": low})["throughput"].ok


def test_a_gap_in_which_the_sampler_itself_was_frozen_is_not_the_jobs_stall() -> None:
    # Sampled every 25 ms; the host froze the VM (job and harness) for 1.5 s at count 40,
    # then for 1.5 s at count 60 the sampler kept running and saw no progress: a real stall.
    before = np.arange(0.0, 1.0, 0.025)
    frozen_at = before[-1] + 1.5
    after = frozen_at + np.arange(0.0, 0.5, 0.025)
    stuck = after[-1] + 0.025 + np.arange(0.0, 1.5, 0.025)
    end = stuck[-1] + 0.025 + np.arange(0.0, 0.5, 0.025)
    t = np.concatenate((before, after, stuck, end))
    done = np.concatenate((np.arange(len(before)), 40 + np.arange(len(after)),
                           np.full(len(stuck), 60), 61 + np.arange(len(end))))
    done[len(before) - 1] = done[len(before)] = 39  # the same count on both sides of the freeze
    assert list(observed_intervals(t)).count(0.0) == 1  # the frozen gap, and only it
    verdict = stall_from_series(t, done, STALL)
    assert not verdict.ok and verdict.stalled_at_done == 60
    assert verdict.longest_stall_s == pytest.approx(1.5, abs=0.03)
    quick = stall_from_series(t[: len(before) + len(after)], done[: len(before) + len(after)],
                              STALL)
    assert quick.ok and quick.longest_stall_s < 0.1  # 1.5 s frozen between two 39s


def test_throughput_is_judged_on_the_time_the_harness_was_watching() -> None:
    # A steady 100 units/s, sampled every 25 ms, with the VM frozen for 1.2 s (no samples,
    # no work) three times late in the run: on the wall clock the last quarter reads slow.
    t_watched = np.arange(0.0, 10.0, 0.025)
    done = np.floor(100.0 * t_watched)
    freezes = np.zeros_like(t_watched)
    for at in (7.0, 8.0, 9.0):
        freezes[t_watched >= at] += 1.2
    wall = t_watched + freezes
    assert watched_time(wall) == pytest.approx(t_watched, abs=0.08)  # less one interval each
    verdict = throughput_from_series(wall, done, THROUGHPUT)
    assert verdict.ok and verdict.ratio_last_first == pytest.approx(1.0, abs=0.05)
