"""Passes that were never earned (issue 31): a check row or the completion experiment
passes only when what it proves really happened. Each planted job (fixtures/unearned.toml)
would pass today; the correct job beside it still passes the same experiment."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from preflight.check import command as check
from preflight.check.checker import PASS
from preflight.check.drive.reference import run_reference
from preflight.check.drive.runner import Bounds, DriveContext
from preflight.check.drive.schedule import reachable
from preflight.check.pytest_fixtures import FaultCheck, failure_text
from preflight.experiments.base import FAIL, Context
from preflight.experiments.base import PASS as PASSED
from preflight.experiments.lifecycle import Completion
from preflight.workload import load_specs

SPEC = str(Path(__file__).resolve().parents[3] / "fixtures" / "unearned.toml")


def _row(fault_check: FaultCheck, workload: str, kind: str, experiment_id: str):
    result = fault_check(workload, spec=SPEC, faults=[kind], only=[experiment_id])
    return result, result.row(experiment_id)


def _details(row) -> str:
    return "; ".join(f"{v.name}: {v.status}: {v.detail}" for v in row.verdicts)


def test_a_progress_file_never_written_makes_every_row_inconclusive(
    fault_check: FaultCheck,
) -> None:
    result, row = _row(fault_check, "unearned_no_progress", "kill", "kill-time")
    assert row.status == "SKIP", _details(row)
    assert not any(v.status == PASS for v in row.verdicts), _details(row)
    assert "no progress published" in _details(row) and "'progress'" in _details(row)
    reference = result.report.reference
    assert reference is not None and "PROGRESS.json" in reference.progress_missing


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
    assert result.report.reference is not None and result.report.reference.progress_missing == ""
    # Checkpoint changes were seen, so the lost-work bound is an interval, not the run.
    lost = next(v for v in result.row("kill-progress").verdicts if v.name == "lost_work")
    assert lost.status == PASS, lost.detail


def _completion(tmp_path: Path, workload: str):
    spec = load_specs(SPEC)[workload]
    return Completion().execute(Context(spec, "small", tmp_path))


def test_completion_fails_when_the_spec_s_progress_is_never_written(tmp_path: Path) -> None:
    finding = _completion(tmp_path, "unearned_no_progress")
    assert finding.status == FAIL
    assert "no progress published" in finding.reason and "'progress'" in finding.reason


def test_completion_passes_the_correct_job(tmp_path: Path) -> None:
    finding = _completion(tmp_path, "unearned_clean")
    assert finding.status == PASSED, finding.reason


def test_a_fingerprint_that_never_ends_is_named_with_its_bound(tmp_path: Path) -> None:
    spec = replace(load_specs(SPEC)["unearned_clean"], fingerprint=("sleep", "infinity"))
    ctx = DriveContext(spec, spec.params("small"), tmp_path, bounds=Bounds(aux_timeout_s=0.5))
    reference, _ = run_reference(ctx)
    assert reference.rc == 0 and reference.fingerprint is None
    why = reference.stderr_tail  # what "the uninterrupted reference run failed" goes on with
    assert "'fingerprint'" in why and "sleep" in why and "0.5 s" in why, why


def test_a_command_that_does_not_exist_is_bad_input_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "workloads.toml"
    spec.write_text(
        '[workloads.ghost]\ncommand = ["preflight-no-such-program", "{workdir}"]\n'
        '[workloads.ghost.scale]\nsmall = { units = 1 }\nproduction = { units = 1 }\n'
    )
    argv = ["ghost", "--spec", str(spec), "--faults", "kill", "--report", str(tmp_path / "r"),
            "--work-root", str(tmp_path)]
    assert check.main(argv) == check.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "key 'command'" in err and "preflight-no-such-program" in err and "not found" in err


def test_a_command_that_exists_still_runs(tmp_path: Path) -> None:
    spec = load_specs(SPEC)["unearned_clean"]
    ctx = DriveContext(spec, spec.params("small"), tmp_path)
    reference, _ = run_reference(ctx)
    assert reference.rc == 0 and reference.fingerprint and reference.stderr_tail == ""


def test_a_kill_target_moves_onto_progress_the_job_publishes() -> None:
    # Published 0, 100, 140, 200 of 200: a kill waiting for 142 would fire at the total.
    assert reachable(142, (0, 100, 140, 200), 200) == 140
    assert reachable(90, (0, 100, 140, 200), 200) == 90  # 100 comes before the total
    assert reachable(142, tuple(range(201)), 200) == 142  # fine-grained: unchanged
    assert reachable(142, (), 200) == 142  # nothing known: unchanged
    assert reachable(10, (0, 200), 200) == 10  # nothing below: unchanged (lands late, SKIP)
