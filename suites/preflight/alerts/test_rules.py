"""The alert rules on hand-made series: each fires on its planted condition and stays quiet
on a healthy one; evaluation is the same live and after the fact; the shipped Prometheus
rules file is exactly what the rules render to, and valid rule syntax."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path

import pytest

from preflight.alerts import PROFILES, RULE_KEYS, RULES, Evaluator, first_fired, make_snapshot
from preflight.alerts import rules as r
from preflight.alerts.snapshot import Snapshot
from suites.preflight.helpers import REPO

TH = r.Thresholds(
    loss_factor=4.0,
    memory_fraction=0.9,
    stall_s=10.0,
    checkpoint_age_s=60.0,
    nonfinite_window_s=30.0,
)
T0 = 1_000_000.0


def healthy(t_s: float, **override: float) -> dict[str, float]:
    """One scrape of a job doing fine at time t_s (progress advancing every second)."""
    values = {
        r.UP: 1.0,
        r.DONE: 100.0 + t_s - T0,
        r.PLANNED: 10_000.0,
        r.LAST_ADVANCE: t_s - 0.5,
        r.LOSS: 1.0,
        r.LOSS_MEDIAN: 1.1,
        r.NONFINITE_TOTAL: 0.0,
        r.RSS: 1e8,
        r.MEMORY_BUDGET: 1e9,
        r.CHECKPOINT_LAST: t_s - 5.0,
    }
    values.update(override)
    return values


def series(*points: Mapping[str, float], step_s: float = 1.0) -> list[Snapshot]:
    return [make_snapshot(T0 + i * step_s, p) for i, p in enumerate(points)]


def fired(history: list[Snapshot], th: r.Thresholds = TH) -> dict[str, float]:
    return {k: a.t_s - T0 for k, a in first_fired(history, th).items()}


def test_a_healthy_series_fires_nothing() -> None:
    history = series(*(healthy(T0 + i) for i in range(300)))
    assert fired(history) == {}


@pytest.mark.parametrize(
    ("rule", "bad", "fires_at_s"),
    [
        ("loss_explosion", {r.LOSS: 4.5}, 3.0),
        ("memory", {r.RSS: 0.95e9}, 3.0),
        ("nonfinite", {r.NONFINITE_TOTAL: 1.0}, 3.0),
    ],
)
def test_instant_rules_fire_on_the_first_bad_scrape(
    rule: str, bad: dict[str, float], fires_at_s: float
) -> None:
    points = [healthy(T0 + i) for i in range(3)] + [healthy(T0 + i, **bad) for i in range(3, 6)]
    assert fired(series(*points)) == {rule: fires_at_s}


def test_loss_explosion_needs_a_positive_median_and_ignores_nan() -> None:
    no_median = healthy(T0, **{r.LOSS: 100.0})
    del no_median[r.LOSS_MEDIAN]
    cases = [no_median, healthy(T0, **{r.LOSS: math.nan}), healthy(T0, **{r.LOSS_MEDIAN: 0.0})]
    for point in cases:
        assert not r.loss_explosion(series(point), 0, TH)
    assert not r.loss_explosion(series(healthy(T0, **{r.LOSS: 4.4})), 0, TH)  # exactly k x 1.1
    assert r.loss_explosion(series(healthy(T0, **{r.LOSS: 4.41})), 0, TH)


def test_nonfinite_is_an_increase_within_the_window_and_resets_count() -> None:
    counts = [0, 0, 2, 2, 2] + [2] * 40
    history = series(*(healthy(T0 + i, **{r.NONFINITE_TOTAL: c}) for i, c in enumerate(counts)))
    active = [r.nonfinite(history, i, TH) for i in range(len(history))]
    assert active[:2] == [False, False]
    assert all(active[2:31])  # the step from 0 to 2 stays inside the 30 s window ...
    assert not any(active[32:])  # ... and then leaves it: the alert resolves
    # A restarted process starts its counter again: a drop to a positive value is growth.
    restart = series(
        healthy(T0, **{r.NONFINITE_TOTAL: 5}), healthy(T0 + 1, **{r.NONFINITE_TOTAL: 1})
    )
    assert r.nonfinite(restart, 1, TH)
    # One scrape has no increase; neither does a counter that drops to zero.
    assert not r.nonfinite(restart, 0, TH)
    zero = series(healthy(T0, **{r.NONFINITE_TOTAL: 5}), healthy(T0 + 1, **{r.NONFINITE_TOTAL: 0}))
    assert not r.nonfinite(zero, 1, TH)


def test_stall_fires_after_s_without_progress_but_not_when_done_or_down() -> None:
    frozen = T0 + 2.0  # progress stops at t=2
    points = [healthy(T0 + i) for i in range(3)] + [
        healthy(T0 + i, **{r.DONE: 102.0, r.LAST_ADVANCE: frozen}) for i in range(3, 20)
    ]
    assert fired(series(*points)) == {"stall": 13.0}  # first scrape with age > 10 s
    finished = [healthy(T0 + i, **{r.DONE: 10_000.0, r.LAST_ADVANCE: T0}) for i in range(20)]
    stopped = [healthy(T0 + i, **{r.UP: 0.0, r.LAST_ADVANCE: T0}) for i in range(20)]
    assert "stall" not in fired(series(*finished))
    assert "stall" not in fired(series(*stopped))


def test_checkpoint_stale_fires_after_t_since_the_last_success() -> None:
    points = [healthy(T0 + i, **{r.CHECKPOINT_LAST: T0}) for i in range(70)]
    assert fired(series(*points)) == {"checkpoint_stale": 61.0}
    down = [healthy(T0 + i, **{r.CHECKPOINT_LAST: T0, r.UP: 0.0}) for i in range(70)]
    assert fired(series(*down)) == {}


def test_missing_series_never_fire() -> None:
    history = series({r.UP: 1.0}, {r.UP: 1.0}, step_s=1000.0)
    assert fired(history) == {}


def test_for_duration_holds_an_alert_pending_and_a_good_scrape_resets_it() -> None:
    th = r.Thresholds(4.0, 0.9, 10.0, 60.0, 30.0, for_s=2.0)
    high = {r.RSS: 0.95e9}
    flaps = [
        healthy(T0),
        healthy(T0 + 1, **high),
        healthy(T0 + 2),
        healthy(T0 + 3, **high),
        healthy(T0 + 4, **high),
        healthy(T0 + 5, **high),
        healthy(T0 + 6, **high),
    ]
    assert fired(series(*flaps), th) == {"memory": 5.0}  # pending from 3, held 2 s at 5


def test_live_evaluation_equals_replay_and_refuses_disorder() -> None:
    points = [healthy(T0 + i) for i in range(5)] + [
        healthy(T0 + i, **{r.LOSS: 50.0, r.RSS: 2e9}) for i in range(5, 8)
    ]
    history = series(*points)
    live = Evaluator(TH)
    firings = [a for i in range(len(history)) for a in live.feed(history, i)]
    assert {a.rule: a for a in firings} == first_fired(history, TH)
    with pytest.raises(ValueError, match="expected snapshot"):
        live.feed(history, 2)
    backwards = [make_snapshot(T0 + 1, healthy(T0)), make_snapshot(T0, healthy(T0))]
    fresh = Evaluator(TH)
    fresh.feed(backwards, 0)
    with pytest.raises(ValueError, match="back in time"):
        fresh.feed(backwards, 1)


def test_durations_are_valid_prometheus_durations() -> None:
    assert [r.duration(s) for s in (0, 1.5, 10, 120, 300, 7200, 90)] == [
        "0s",
        "1500ms",
        "10s",
        "2m",
        "5m",
        "2h",
        "90s",
    ]


# ---------------------------------------------------------------------------- the YAML

SHIPPED = REPO / r.RULES_FILE
DURATION_RE = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
RULE_KEYS_ALLOWED = {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}


def test_the_shipped_rules_file_is_the_production_rendering() -> None:
    assert SHIPPED.read_text() == r.render_rules_yaml(PROFILES["production"]), (
        "alerts/preflight.rules.yml is stale: .venv/bin/python -m preflight.alerts > "
        "alerts/preflight.rules.yml"
    )


def test_expressions_use_only_exported_metrics_and_balanced_brackets() -> None:
    for profile in PROFILES.values():
        for item in RULES:
            expr = item.expr(profile)
            metrics = set(re.findall(r"\bpreflight_[a-z_]+", expr))
            assert metrics and metrics <= r.METRICS_USED, (item.key, metrics)
            for opening, closing in ("()", "[]", "{}"):
                assert expr.count(opening) == expr.count(closing), expr


def test_shipped_rules_are_valid_prometheus_alerting_rules() -> None:
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load(SHIPPED.read_text())
    assert set(doc) == {"groups"}
    (group,) = doc["groups"]
    assert set(group) <= {"name", "interval", "rules", "limit"} and group["name"]
    assert [rule["alert"] for rule in group["rules"]] == [x.alert for x in RULES]
    for rule in group["rules"]:
        assert set(rule) <= RULE_KEYS_ALLOWED and {"alert", "expr"} <= set(rule)
        assert re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", rule["alert"])
        assert isinstance(rule["expr"], str) and rule["expr"].strip()
        if "for" in rule:
            assert DURATION_RE.match(rule["for"])
        for mapping in ("labels", "annotations"):
            assert all(isinstance(v, str) for v in rule.get(mapping, {}).values())
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["labels"]["preflight_rule"] in RULE_KEYS
        for window in re.findall(r"\[([^\]]+)\]", rule["expr"]):
            assert DURATION_RE.match(window), window


def test_every_metric_the_rules_read_is_exported_by_telemetry(tmp_path: Path) -> None:
    from preflight_examples.telemetry import Telemetry, names

    path = tmp_path / "m.prom"
    with Telemetry("trainer", "r", metrics_file=path, interval_s=300) as tel:
        tel.progress(1, 2)
        for _ in range(names.LOSS_MEDIAN_MIN_COUNT):
            tel.loss(1.0)
        tel.flush()
        text = path.read_text()
    from preflight.alerts import parse_exposition

    assert r.METRICS_USED <= set(parse_exposition(text, 0.0).values)


def test_dilated_thresholds_stretch_every_duration_and_nothing_else() -> None:
    th = PROFILES["small"]
    stretched = th.dilated(3.0)
    assert stretched.stall_s == pytest.approx(3 * th.stall_s)
    assert stretched.checkpoint_age_s == pytest.approx(3 * th.checkpoint_age_s)
    assert stretched.nonfinite_window_s == pytest.approx(3 * th.nonfinite_window_s)
    assert stretched.for_s == pytest.approx(3 * th.for_s)
    assert (stretched.loss_factor, stretched.memory_fraction) == (th.loss_factor,
                                                                   th.memory_fraction)
    assert th.dilated(1.0) == th
    with pytest.raises(AssertionError):
        th.dilated(0.5)  # a machine faster than itself is a bug
