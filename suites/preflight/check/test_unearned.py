"""Passes that were never earned (issue 31): a check row or the completion experiment
passes only when what it proves really happened. Each planted job (fixtures/unearned.toml)
would pass today; the correct job beside it still passes the same experiment."""

from __future__ import annotations

from pathlib import Path

from preflight.check.checker import PASS
from preflight.check.drive.schedule import reachable
from preflight.check.pytest_fixtures import FaultCheck, failure_text

SPEC = str(Path(__file__).resolve().parents[3] / "fixtures" / "unearned.toml")


def _row(fault_check: FaultCheck, workload: str, kind: str, experiment_id: str):
    result = fault_check(workload, spec=SPEC, faults=[kind], only=[experiment_id])
    return result, result.row(experiment_id)


def _details(row) -> str:
    return "; ".join(f"{v.name}: {v.status}: {v.detail}" for v in row.verdicts)


def test_a_kill_that_lands_after_the_total_is_not_a_pass(fault_check: FaultCheck) -> None:
    _, row = _row(fault_check, "unearned_progress_at_end", "kill", "kill-progress")
    assert row.status == "SKIP", _details(row)
    assert not any(v.status == PASS for v in row.verdicts), _details(row)
    assert "after the work was done" in _details(row) or "finished before" in _details(row)


def test_a_swap_of_identical_files_is_not_injected(fault_check: FaultCheck) -> None:
    _, row = _row(fault_check, "unearned_identical_shards", "corrupt", "corrupt-swap")
    assert row.status == "SKIP", _details(row)
    assert row.history.injected is False
    assert "changed no byte" in _details(row)
    assert row.history.corruptions and not row.history.corruptions[0].changed


def test_the_correct_job_still_passes_the_same_rows(fault_check: FaultCheck) -> None:
    result = fault_check("unearned_clean", spec=SPEC, faults=["kill", "corrupt"],
                         only=["kill-time", "kill-progress", "corrupt-swap"])
    assert result.passed, failure_text(result)
    for experiment_id in ("kill-time", "kill-progress", "corrupt-swap"):
        row = result.row(experiment_id)
        assert row.status == "PASS", (experiment_id, _details(row))
        assert row.history.injected is True
    # Checkpoint changes were seen, so the lost-work bound is an interval, not the run.
    lost = next(v for v in result.row("kill-progress").verdicts if v.name == "lost_work")
    assert lost.status == PASS, lost.detail


def test_a_kill_target_moves_onto_progress_the_job_publishes() -> None:
    # Published 0, 100, 140, 200 of 200: a kill waiting for 142 would fire at the total.
    assert reachable(142, (0, 100, 140, 200), 200) == 140
    assert reachable(90, (0, 100, 140, 200), 200) == 90  # 100 comes before the total
    assert reachable(142, tuple(range(201)), 200) == 142  # fine-grained: unchanged
    assert reachable(142, (), 200) == 142  # nothing known: unchanged
    assert reachable(10, (0, 200), 200) == 10  # nothing below: unchanged (lands late, SKIP)
