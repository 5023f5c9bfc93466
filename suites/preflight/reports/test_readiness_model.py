"""The readiness report's one model (pure): requirement rows with their failure reasons,
replay commands and plots, workloads, run facts; and the Markdown and JSON read from it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from preflight.evidence import Row
from preflight.gate.verdict import validate_ready_for_production
from preflight.reports.readiness import markdown
from preflight.reports.readiness_model import (
    REASON_CHARS_MAX,
    build_model,
    figure_key,
    needs_generic_plot,
    reason_for,
    replay_for,
    requirement_key,
)
from suites.preflight.reports.readiness_synthetic import (
    KILL_REASON,
    LEAK_REASON,
    entry,
    failing_gate,
    replay,
)


def _rows(model):
    return {r.id: r for r in model.requirements}


def test_model_is_a_pure_frozen_function_of_its_inputs(tmp_path: Path) -> None:
    verdict, tests, meta = failing_gate(tmp_path)
    one, two = build_model(verdict, tests, meta), build_model(verdict, tests, meta)
    assert one == two
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.ready = True  # type: ignore[misc]
    assert one.status == "NOT READY" and one.tests_failed == 3


def test_failed_requirements_name_the_experiment_its_reason_and_replay(tmp_path: Path) -> None:
    verdict, tests, meta = failing_gate(tmp_path)
    rows = _rows(build_model(verdict, tests, meta))
    leak = rows["max_leak_bytes_per_unit"]
    assert (leak.status, leak.label, leak.tier) == ("failed", "FAIL", "small")
    (why,) = leak.failures
    assert (why.nodeid, why.reason, why.replay) == ("myjob::stability", LEAK_REASON,
                                                   replay("stability"))
    (kill,) = rows["min_exact_resume"].failures
    assert kill.reason == KILL_REASON and kill.replay == replay("faults.kill")
    (suite,) = rows["max_alert_latency_s"].failures
    assert suite.replay == ("python -m pytest suites/alerts/test_latency.py::test_alert "
                            "--scale small")
    assert "assert 7.5 < 5" in suite.reason
    assert rows["max_stall_s"].failures == () and rows["max_stall_s"].status == "passed"
    assert rows["max_lost_items"].status == "not_applicable"


def test_a_requirement_without_evidence_names_the_experiment_that_owed_it() -> None:
    tests = [entry("stability", "inconclusive", {}, "too few points to judge memory",
                   metrics=("leak_bytes_per_unit",))]
    verdict = validate_ready_for_production({"experiments": True, "tests": tests})
    row = _rows(build_model(verdict, tests, {}))["max_leak_bytes_per_unit"]
    assert row.status == "inconclusive" and row.plot is None
    assert [f.reason for f in row.failures] == ["too few points to judge memory"]


def test_each_requirement_plot_is_its_worst_evidence_figure_or_its_values(
    tmp_path: Path,
) -> None:
    verdict, tests, meta = failing_gate(tmp_path)
    results = {r.id: r for r in verdict.results}
    assert figure_key(results["max_leak_bytes_per_unit"]) == "myjob::stability#memory"
    assert figure_key(results["min_exact_resume"]) == "myjob::faults.kill#timeline"
    overhead = results["max_checkpoint_overhead"]
    assert figure_key(overhead) is None and needs_generic_plot(overhead, {})
    assert not needs_generic_plot(results["max_lost_items"], {})  # nothing measured: no plot
    plots = {"myjob::stability#memory": "m.png", requirement_key(overhead): "o.png"}
    rows = _rows(build_model(verdict, tests, meta, plots))
    assert rows["max_leak_bytes_per_unit"].plot.path == "m.png"
    assert rows["max_checkpoint_overhead"].plot.path == "o.png"
    assert rows["max_lost_items"].plot is None and rows["max_stall_s"].plot is None


def test_workloads_show_sizes_and_host_steal_and_the_run_its_commit(tmp_path: Path) -> None:
    verdict, tests, meta = failing_gate(tmp_path)
    model = build_model(verdict, tests, meta)
    (workload,) = model.workloads
    assert workload.sizes == (("steps", "60"), ("ckpt_every", "10"))
    assert workload.host == "stability: steal 2%, harness frozen 0%; overhead: steal 1%"
    assert workload.not_applicable == (("accounting", "readiness.items not given"),)
    assert model.run.git_commit == meta["git_commit"]
    assert build_model(verdict, tests, {**meta, "git_commit": None}).run.git_commit == "unknown"
    assert build_model(verdict, tests, {"extra": 1}).run.other == (("extra", "1"),)


def test_experiment_rows_put_failures_first_and_replay_only_what_failed(
    tmp_path: Path,
) -> None:
    verdict, tests, meta = failing_gate(tmp_path)
    rows = build_model(verdict, tests, meta).experiments
    assert [r.status for r in rows][:2] == ["failed", "failed"]
    assert {r.experiment for r in rows if r.replay} == {"faults.kill", "stability"}
    assert [r.reason for r in rows if r.status == "passed"] == ["", ""]
    assert (rows[2].status, rows[2].reason) == ("not_applicable", "readiness.items not given")


def test_failures_no_requirement_explains_are_listed_apart() -> None:
    tests = [entry("faults.kill", "failed", {"kill.exact": True}, "kill-write: torn checkpoint",
                   metrics=("exact",))]
    verdict = validate_ready_for_production({"experiments": True, "tests": tests})
    model = build_model(verdict, tests, {})
    assert [f.nodeid for f in model.other_failures] == ["myjob::faults.kill"]
    assert model.failures == model.other_failures


def test_reasons_keep_the_tail_of_a_long_traceback_and_say_when_nothing_was_injected() -> None:
    long = "x" * 5000 + "E   assert the real reason"
    why = reason_for(Row.from_json({"outcome": "failed", "longrepr": long}))
    assert len(why) <= REASON_CHARS_MAX and why.endswith("assert the real reason")
    assert reason_for(Row.from_json({"outcome": "inconclusive", "reason": "r",
                                     "injected": False})) == "r [fault not injected]"
    assert reason_for(Row.from_json({"outcome": "failed"})) == "(no reason recorded)"
    assert replay_for(Row.from_json({"nodeid": "t.py::a b"})) == (
        "python -m pytest 't.py::a b'")


def test_json_keeps_the_keys_readers_parse_and_markdown_reads_the_same_model(
    tmp_path: Path,
) -> None:
    verdict, tests, meta = failing_gate(tmp_path)
    model = build_model(verdict, tests, meta, {"myjob::stability#memory": "m.png"})
    doc = json.loads(json.dumps(model.to_json(), allow_nan=False))
    assert doc["verdict"]["ready"] is False and doc["meta"]["git_commit"] == meta["git_commit"]
    assert doc["requirements"][0]["failures"][0]["replay"] == replay("stability")
    text = markdown(model)
    assert text.startswith("# Readiness: NOT READY")
    assert LEAK_REASON in text and f"replay: `{replay('faults.kill')}`" in text
    assert "![myjob::stability: memory (worst evidence of max_leak_bytes_per_unit)](m.png)" in text
    assert "| myjob | /src/their-repo/pyproject.toml | steps=60, ckpt_every=10 |" in text
