"""preflight.evidence: the typed contract the verdict and the readiness report read, and
the mapping of every other status vocabulary onto it at its border."""

from __future__ import annotations

import json

import pytest

from preflight import evidence
from preflight.evidence import Finding, Measurement, Row, Status, rows_of
from preflight.reports.session import jsonable

ENTRY = {"nodeid": "job::stability", "workload": "job", "experiment": "stability",
         "outcome": "inconclusive", "tier": "small", "reason": "taken",
         "host": "steal 60%", "injected": None, "wall_s": 2.5, "attempts": 3, "timing": True,
         "metrics": ["throughput_ratio"], "replay": "preflight gate --only stability",
         "artifacts": ["evidence/a.json"],
         "measurements": [{"name": "job.throughput_ratio", "value": 0.4, "unit": "ratio",
                           "inconclusive": True}]}


def test_a_status_is_the_string_the_reports_emit() -> None:
    assert [s.value for s in Status] == ["passed", "failed", "inconclusive", "not_applicable"]
    assert Status.PASSED == "passed" and f"{Status.INCONCLUSIVE}" == "inconclusive"
    assert json.dumps({"s": Status.FAILED}) == '{"s": "failed"}'
    assert type(jsonable(Status.PASSED)) is str  # execnet ships plain types only
    assert Status.PASSED.ok and Status.NOT_APPLICABLE.ok
    assert not Status.FAILED.ok and not Status.INCONCLUSIVE.ok


def test_a_finding_holds_a_status() -> None:
    assert Finding("x", "passed").status is Status.PASSED  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Finding("x", "PASS")  # type: ignore[arg-type]


def test_an_experiment_entry_reads_back_as_written() -> None:
    row = Row.from_json(ENTRY)
    assert row.status is Status.INCONCLUSIVE and row.is_experiment
    assert row.measurements == (Measurement("job.throughput_ratio", 0.4, "ratio", True),)
    assert row.to_json() == ENTRY
    assert list(row.to_json()) == list(ENTRY)  # report.json keeps its key order


def test_a_session_test_keeps_pytests_word_and_means_a_status() -> None:
    rows = rows_of([{"nodeid": "t::a", "outcome": "error", "longrepr": "E boom",
                     "measurements": [{"name": "p.inputs", "value": "n/a"},
                                      {"name": "q.latency_s", "value": 1.5}]},
                    Row("t::b", "passed", Status.PASSED), "junk"])  # type: ignore[list-item]
    first, second = rows
    assert (first.outcome, first.status, first.is_experiment) == ("error", Status.FAILED, False)
    assert [m.value for m in first.measurements] == [None, 1.5]
    assert second.nodeid == "t::b"  # Rows pass through
    with pytest.raises(ValueError):
        first.to_json()


@pytest.mark.parametrize(("outcome", "status"), [
    ("passed", Status.PASSED), ("failed", Status.FAILED), ("error", Status.FAILED),
    ("inconclusive", Status.INCONCLUSIVE), ("not_applicable", Status.NOT_APPLICABLE),
    ("skipped", Status.NOT_APPLICABLE), ("xfailed", Status.PASSED),
    ("xpassed", Status.PASSED), ("None", Status.NOT_APPLICABLE),
])
def test_pytest_outcomes_map_onto_status(outcome: str, status: Status) -> None:
    assert evidence.status_of_outcome(outcome) is status


def test_the_check_words_and_the_report_labels_at_their_borders() -> None:
    assert [evidence.label(s) for s in Status] == ["PASS", "FAIL", "INCONCLUSIVE", "N/A"]
    for word in ("pass", "fail", "skip"):
        assert evidence.verdict_word(evidence.status_of_verdict_word(word)) == word
    assert evidence.verdict_word(Status.NOT_APPLICABLE) == "skip"
    for word in ("PASS", "FAIL", "SKIP"):
        assert evidence.row_word(evidence.status_of_row_word(word)) == word
    silent = evidence.status_of_row_word("SILENT-CORRUPTION")
    assert silent is Status.FAILED
    assert evidence.row_word(silent, silent_corruption=True) == "SILENT-CORRUPTION"
