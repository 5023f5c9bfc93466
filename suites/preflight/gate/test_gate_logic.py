"""The gate's pure logic: policy parsing, requirement evaluation, trend detection, history."""

from __future__ import annotations

import json

import pytest

from preflight.durable import BadInputError
from preflight.gate.policy import load_policy, policy_from_table
from preflight.gate.verdict import validate_ready_for_production
from preflight.history.store import History, compare
from preflight.reports.readiness import to_html, to_markdown, write_readiness

GOOD_VALUES = {
    "leak_bytes_per_unit": 10.0,
    "fd_leak_per_unit": 0.0,
    "throughput_ratio": 0.97,
    "stall_s_max": 0.5,
    "checkpoint_overhead": 0.01,
    "lost_work_intervals": 1.0,
    "exact": True,
    "silent_corruptions": 0,
    "lost_items": 0,
    "duplicate_items": 0,
    "detection_latency_s": 1.5,
    "parser_crashes": 0,
}


def _report(values: dict, outcome: str = "passed", workload: str = "datagen") -> dict:
    measurements = [{"name": f"{workload}.{k}", "value": v} for k, v in values.items()]
    return {
        "tests": [
            {
                "nodeid": f"suites/readiness/test_{workload}.py::t",
                "outcome": outcome,
                "measurements": measurements,
            }
        ]
    }


def test_ready_when_every_requirement_has_passing_evidence():
    verdict = validate_ready_for_production(_report(GOOD_VALUES))
    assert verdict.ready, [r for r in verdict.results if not r.ok]


@pytest.mark.parametrize(
    "metric, bad",
    [
        ("leak_bytes_per_unit", 20_000.0),
        ("throughput_ratio", 0.6),
        ("checkpoint_overhead", 0.2),
        ("lost_work_intervals", 2.5),
        ("exact", False),
        ("silent_corruptions", 1),
        ("duplicate_items", 3),
    ],
)
def test_one_bad_measurement_blocks_launch_and_is_named(metric, bad):
    verdict = validate_ready_for_production(_report({**GOOD_VALUES, metric: bad}))
    assert not verdict.ready
    failing = [r for r in verdict.results if not r.ok]
    assert [r.evidence[0].name for r in failing] == [f"datagen.{metric}"]


def test_worst_value_over_all_tests_counts():
    report = _report(GOOD_VALUES)
    report["tests"] += _report({"leak_bytes_per_unit": 50_000.0}, workload="trainer")["tests"]
    verdict = validate_ready_for_production(report)
    leak = next(r for r in verdict.results if r.id == "max_leak_bytes_per_unit")
    assert leak.measured == 50_000.0 and not leak.ok


def test_missing_evidence_fails_unless_policy_allows():
    values = {k: v for k, v in GOOD_VALUES.items() if k != "checkpoint_overhead"}
    verdict = validate_ready_for_production(_report(values))
    missing = next(r for r in verdict.results if r.id == "max_checkpoint_overhead")
    assert not verdict.ready and missing.measured is None and "no readiness test" in missing.note
    lenient = policy_from_table({"require_evidence": False}, "x")
    assert validate_ready_for_production(_report(values), lenient).ready


def test_failed_test_or_empty_report_is_not_ready():
    assert not validate_ready_for_production(_report(GOOD_VALUES, outcome="failed")).ready
    empty = validate_ready_for_production({"tests": []})
    assert not empty.ready and "no readiness test ran" in empty.notes[0]


def test_policy_table_validation(tmp_path):
    policy = policy_from_table({"max_leak_bytes_per_unit": 100}, "p")
    assert (
        next(r for r in policy.requirements if r.metric == "leak_bytes_per_unit").threshold == 100
    )
    with pytest.raises(BadInputError, match="unknown key.*max_leek"):
        policy_from_table({"max_leek": 1}, "p")
    with pytest.raises(BadInputError, match="must be a number"):
        policy_from_table({"min_throughput_ratio": "high"}, "p")
    path = tmp_path / "pyproject.toml"
    path.write_text("[tool.preflight.gate]\nmax_stall_s = 5\n")
    assert next(r for r in load_policy(path).requirements if r.id == "max_stall_s").threshold == 5
    path.write_text("[tool.preflight.gate\n")
    with pytest.raises(BadInputError, match="invalid TOML"):
        load_policy(path)


def test_readiness_renderings_name_failures(tmp_path):
    verdict = validate_ready_for_production(_report({**GOOD_VALUES, "exact": False}))
    meta = {"scale": "small", "run_id": "r1"}
    markdown = to_markdown(verdict, meta)
    assert "NOT READY" in markdown and "| FAIL |" in markdown
    page = to_html(verdict, meta, ["plot.png"])
    assert "<img src='plot.png'" in page and "class='fail'" in page
    paths = write_readiness(tmp_path, verdict, meta, [])
    assert json.loads(paths[0].read_text())["verdict"]["ready"] is False


def test_trend_flags_shift_with_significance():
    base = [100.0, 101.0, 99.0, 100.5, 100.2, 99.8]
    slow = compare("datagen.throughput_per_s", [70.0, 71.0, 69.5, 70.2], base)
    assert slow is not None and slow.regression and slow.p_value < 0.05
    same = compare("datagen.throughput_per_s", [100.1, 99.9, 100.3, 100.0], base)
    assert same is not None and not same.regression
    fatter = compare("datagen.rss_bytes_max", [2e9], [1e9, 1.01e9])
    assert fatter is not None and fatter.regression and fatter.p_value is None
    assert compare("x", [], base) is None


def test_history_launch_guard_and_trend(tmp_path):
    with History(tmp_path / "history.sqlite") as history:
        for i, rate in enumerate([100.0, 101.0, 60.0]):
            history.add(
                run_id=f"r{i}",
                kind="gate",
                workload="all",
                scale="10pct",
                code_hash="c",
                config_hash="k",
                ready=i < 2,
                metrics=[("datagen.throughput_per_s", rate + d) for d in (0, 1, -1)],
            )
        assert history.find_ready("10pct", "c", "k").run_id == "r1"
        assert history.find_ready("10pct", "other", "k") is None
        assert history.find_ready("production", "c", "k") is None
        trends = history.trend("gate")
        assert [t.metric for t in trends if t.regression] == ["datagen.throughput_per_s"]


def test_tier_override_applies_only_to_that_tier():
    table = {"max_checkpoint_overhead": 0.035, "small": {"max_checkpoint_overhead": 0.5}}

    def threshold(scale):
        policy = policy_from_table(table, "p", scale)
        return next(r for r in policy.requirements if r.id == "max_checkpoint_overhead").threshold

    assert threshold("small") == 0.5
    assert threshold("10pct") == 0.035
    with pytest.raises(BadInputError, match="may only override thresholds"):
        policy_from_table({"small": {"require_evidence": False}}, "p")


def test_each_measurement_is_judged_by_the_threshold_of_its_own_tier():
    """A 10pct gate also runs small-tier tests: their seconds-long runs keep the small bound,
    while the 10pct measurement of the same metric must meet the real one."""
    table = {"max_checkpoint_overhead": 0.035, "small": {"max_checkpoint_overhead": 1.0}}
    policy = policy_from_table(table, "p", "10pct")

    def report(small: float, tenpct: float) -> dict:
        tests = []
        for tier, value in (("small", small), ("10pct", tenpct)):
            base = _report({**GOOD_VALUES, "checkpoint_overhead": value})["tests"][0]
            tests.append({**base, "nodeid": f"t[{tier}]", "tier": tier})
        return {"tests": tests}

    verdict = validate_ready_for_production(report(0.6, 0.02), policy)
    rows = {(r.id, r.tier): r for r in verdict.results}
    assert verdict.ready
    assert rows[("max_checkpoint_overhead", "small")].threshold == 1.0
    assert rows[("max_checkpoint_overhead", "10pct")].threshold == 0.035
    late = validate_ready_for_production(report(0.6, 0.05), policy)
    (bad,) = [r for r in late.results if not r.ok]
    assert (bad.id, bad.tier, bad.measured) == ("max_checkpoint_overhead", "10pct", 0.05)
    assert "(10pct tier)" in to_markdown(late, {})


@pytest.mark.parametrize(
    "text", ["[tool.preflight\n", "[tool]\npreflight = 3\n", "[tool.preflight]\ngate = 1\n"]
)
def test_gate_refuses_a_malformed_pyproject_before_running_anything(tmp_path, capsys, text):
    from preflight.gate.cli import main

    bad = tmp_path / "pyproject.toml"
    bad.write_text(text)
    assert main(["--pyproject", str(bad), "--report", str(tmp_path / "reports")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "preflight gate:" in err
    assert not list((tmp_path / "reports").glob("2*"))  # no suite ran, no report written
