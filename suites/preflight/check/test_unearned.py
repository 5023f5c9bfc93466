"""Passes that were never earned (issue 31): a check row or the completion experiment
passes only when what it proves really happened. Each planted job (fixtures/unearned.toml)
would pass today; the correct job beside it still passes the same experiment."""

from __future__ import annotations

from pathlib import Path

from preflight.check.pytest_fixtures import FaultCheck, failure_text

SPEC = str(Path(__file__).resolve().parents[3] / "fixtures" / "unearned.toml")


def _row(fault_check: FaultCheck, workload: str, kind: str, experiment_id: str):
    result = fault_check(workload, spec=SPEC, faults=[kind], only=[experiment_id])
    return result, result.row(experiment_id)


def _details(row) -> str:
    return "; ".join(f"{v.name}: {v.status}: {v.detail}" for v in row.verdicts)


def test_a_swap_of_identical_files_is_not_injected(fault_check: FaultCheck) -> None:
    _, row = _row(fault_check, "unearned_identical_shards", "corrupt", "corrupt-swap")
    assert row.status == "SKIP", _details(row)
    assert row.history.injected is False
    assert "changed no byte" in _details(row)
    assert row.history.corruptions and not row.history.corruptions[0].changed


def test_the_correct_job_still_passes_the_same_rows(fault_check: FaultCheck) -> None:
    result = fault_check("unearned_clean", spec=SPEC, faults=["corrupt"], only=["corrupt-swap"])
    assert result.passed, failure_text(result)
    row = result.row("corrupt-swap")
    assert row.status == "PASS", _details(row)
    assert row.history.injected is True and row.history.corruptions[0].changed
