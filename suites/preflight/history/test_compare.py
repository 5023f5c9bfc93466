"""History comparison rules on hand-made histories: run and baseline choice, deltas and
regression marks by the policy's direction, and --fail-on parsing and evaluation."""

from __future__ import annotations

import math

import pytest

from preflight.durable import BadInputError
from preflight.history.compare import (
    Change,
    HistorySnapshot,
    check_thresholds,
    choose_baseline,
    compare_values,
    direction_higher_is_better,
    parse_fail_on,
    parse_fail_ons,
    resolve,
    resolve_pair,
)
from preflight.history.store import ResultRow


def _row(result_id: int, run_id: str, kind: str = "gate") -> ResultRow:
    # created_at is a fixed number: nothing here reads the clock.
    return ResultRow(result_id, run_id, kind, "all", "small", "c", "k", True, float(result_id),
                     None)


# Newest first, as History.results returns them: gates g1..g3 and soaks s1..s2 interleaved.
ROWS = (_row(5, "g3"), _row(4, "s2", "soak"), _row(3, "g2"), _row(2, "s1", "soak"),
        _row(1, "g1"))


def _snapshot(baselines: dict[str, int] | None = None) -> HistorySnapshot:
    return HistorySnapshot(ROWS, baselines or {})


def test_direction_comes_from_the_policy_comparator():
    assert not direction_higher_is_better("datagen.leak_bytes_per_unit")  # "<=" requirement
    assert direction_higher_is_better("trainer.throughput_ratio")  # ">=" requirement
    assert direction_higher_is_better("datagen.exact")
    assert not direction_higher_is_better("alerts.x.detection_latency_s")
    # Not a policy metric: the naming heuristic decides.
    assert direction_higher_is_better("datagen.throughput_per_s")
    assert not direction_higher_is_better("datagen.rss_bytes_max")


def test_latest_and_run_ids_resolve_within_a_kind():
    snapshot = _snapshot()
    assert resolve("latest", snapshot, None).row.run_id == "g3"
    assert resolve("latest", snapshot, "soak").row.run_id == "s2"
    assert resolve("g1", snapshot, None).row.id == 1
    with pytest.raises(BadInputError, match="'nope' is not in the history"):
        resolve("nope", snapshot, None)
    with pytest.raises(BadInputError, match="'s1' is a soak result, not gate"):
        resolve("s1", snapshot, "gate")
    with pytest.raises(BadInputError, match="is not a run id"):
        resolve("../etc", snapshot, None)


def test_baseline_order_explicit_then_stored_then_previous():
    assert choose_baseline(_snapshot(), "gate").row.run_id == "g2"  # previous gate
    stored = _snapshot({"gate": 1, "soak": 2})
    assert choose_baseline(stored, "gate").row.run_id == "g1"
    assert choose_baseline(stored, "gate").why == "stored baseline"
    assert choose_baseline(stored, "gate", explicit="g2").row.run_id == "g2"
    assert choose_baseline(stored, "soak").row.run_id == "s1"
    with pytest.raises(BadInputError, match="--baseline must name a run id"):
        choose_baseline(stored, "gate", explicit="latest")
    with pytest.raises(BadInputError, match="no soak baseline"):
        choose_baseline(HistorySnapshot(ROWS[:2], {}), "soak")
    with pytest.raises(BadInputError, match="older than the newest 5 results"):
        choose_baseline(_snapshot({"gate": 99}), "gate")


def test_pair_takes_the_baseline_of_the_named_runs_kind():
    stored = _snapshot({"gate": 1, "soak": 2})
    a, b = resolve_pair("baseline", "s2", stored, None)
    assert (a.row.run_id, b.row.run_id) == ("s1", "s2")
    a, b = resolve_pair("baseline", "latest", stored, None)
    assert (a.row.run_id, b.row.run_id) == ("g1", "g3")
    with pytest.raises(BadInputError, match="'s2' is a soak result, not gate"):
        resolve_pair("g1", "s2", stored, None)


def test_changes_report_absolute_and_relative_and_mark_by_direction():
    a = {"w.leak_bytes_per_unit": [100.0, 120.0, 110.0], "w.throughput_ratio": [1.0],
         "w.silent_corruptions": [0.0], "w.lost_items": [0.0], "w.old": [1.0]}
    b = {"w.leak_bytes_per_unit": [165.0], "w.throughput_ratio": [1.3],
         "w.silent_corruptions": [1.0], "w.lost_items": [0.0], "w.new": [2.0]}
    changes = {c.name: c for c in compare_values(a, b)}
    leak = changes["w.leak_bytes_per_unit"]
    assert (leak.a, leak.b, leak.delta, leak.percent) == (110.0, 165.0, 55.0, 50.0)
    assert leak.status() == "regression"
    assert changes["w.throughput_ratio"].status() == "improved"  # up is good for a ratio
    corrupt = changes["w.silent_corruptions"]
    assert corrupt.percent == math.inf and corrupt.status() == "regression"
    assert changes["w.lost_items"].status() == "same"
    assert changes["w.old"].status() == "missing" and changes["w.new"].status() == "new"
    assert Change("w.throughput_ratio", 1.0, 0.95, True).status() == "same"  # within 10%
    assert Change("w.throughput_ratio", 1.0, 0.85, True).status() == "regression"


@pytest.mark.parametrize(
    ("text", "name", "amount", "relative"),
    [
        ("leak_bytes_per_unit:+10%", "leak_bytes_per_unit", 10.0, True),
        ("datagen.checkpoint_overhead:+0.05", "datagen.checkpoint_overhead", 0.05, False),
        ("throughput_ratio:-5%", "throughput_ratio", 5.0, True),
        ("silent_corruptions:0", "silent_corruptions", 0.0, False),  # any increase fails
        ("stall_s_max:1e1", "stall_s_max", 10.0, False),
    ],
)
def test_fail_on_parses(text, name, amount, relative):
    threshold = parse_fail_on(text)
    assert (threshold.name, threshold.amount, threshold.relative) == (name, amount, relative)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("leak_bytes_per_unit", "expected MEASUREMENT:\\+AMOUNT"),
        (":+10%", "expected MEASUREMENT"),
        ("leak bytes:+10%", "expected MEASUREMENT"),
        ("leak_bytes_per_unit:ten%", "'ten%' is not an amount"),
        ("leak_bytes_per_unit:+inf", "is not an amount"),
        ("leak_bytes_per_unit:+nan%", "is not an amount"),
        ("leak_bytes_per_unit:+1e999", "must be finite"),
        ("leak_bytes_per_unit:-10%", "better lower, so a regression is a rise: write "
                                     "leak_bytes_per_unit:\\+10%"),
        ("throughput_ratio:+10%", "better higher, so a regression is a drop"),
        ("x" * 300 + ":+1", "longer than 200 characters"),
    ],
)
def test_malformed_fail_on_names_the_expression(text, message):
    with pytest.raises(BadInputError, match=message) as caught:
        parse_fail_on(text)
    assert str(caught.value).startswith("--fail-on '")


def test_fail_on_count_is_bounded():
    with pytest.raises(BadInputError, match="at most 100"):
        parse_fail_ons(["lost_items:0"] * 101)


def test_thresholds_break_only_in_the_bad_direction():
    changes = compare_values(
        {"d.leak_bytes_per_unit": [100.0], "t.leak_bytes_per_unit": [100.0],
         "d.throughput_ratio": [1.0], "d.checkpoint_overhead": [0.01], "d.lost_items": [0.0],
         "d.exact": [1.0]},
        {"d.leak_bytes_per_unit": [111.0], "t.leak_bytes_per_unit": [50.0],
         "d.throughput_ratio": [0.8], "d.checkpoint_overhead": [0.05], "d.lost_items": [0.0]},
    )
    thresholds = parse_fail_ons([
        "leak_bytes_per_unit:+10%",  # d rose 11%: breaks; t fell: fine
        "throughput_ratio:-25%",  # fell 20%: holds
        "checkpoint_overhead:+0.05",  # rose 0.04: holds
        "lost_items:0",  # stayed 0: holds
        "exact:0",  # gone from B: the evidence is lost, so it breaks
    ])
    broken = [(b.threshold.name, b.change.name) for b in check_thresholds(thresholds, changes)]
    assert broken == [("leak_bytes_per_unit", "d.leak_bytes_per_unit"), ("exact", "d.exact")]
    tighter = parse_fail_ons(["throughput_ratio:-15%", "checkpoint_overhead:+0.03"])
    assert len(check_thresholds(tighter, changes)) == 2


def test_threshold_on_an_unrecorded_measurement_is_bad_input():
    changes = compare_values({"d.lost_items": [0.0]}, {"d.lost_items": [0.0]})
    with pytest.raises(BadInputError, match="no measurement named leak_bytes in either run"):
        check_thresholds(parse_fail_ons(["leak_bytes:+1%"]), changes)
    # A suffix must match whole dotted parts: "items" is not "lost_items".
    with pytest.raises(BadInputError, match="no measurement named items"):
        check_thresholds(parse_fail_ons(["items:0"]), changes)


def test_relative_threshold_from_zero_breaks_on_any_worsening():
    zero_to_one = compare_values({"d.lost_items": [0.0]}, {"d.lost_items": [1.0]})
    assert check_thresholds(parse_fail_ons(["lost_items:+1000%"]), zero_to_one)
    zero_to_zero = compare_values({"d.lost_items": [0.0]}, {"d.lost_items": [0.0]})
    assert not check_thresholds(parse_fail_ons(["lost_items:+0%"]), zero_to_zero)
