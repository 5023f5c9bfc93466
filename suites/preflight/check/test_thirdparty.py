"""Third-party-style jobs under `preflight check` (issue 17): the right verdict, and the
clean jobs passing, for every seed in 0..4. The jobs are fixtures/thirdparty/tpjob.py
flavours, specs in fixtures/thirdparty.toml. Each test runs real jobs: marked long."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from preflight.check.checker import FAIL, PASS
from preflight.check.pytest_fixtures import FaultCheck, failure_text

SPEC = str(Path(__file__).resolve().parents[3] / "fixtures" / "thirdparty.toml")
SEEDS = range(5)
pytestmark = pytest.mark.long


def _verdicts(row) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {v.name: v.status for v in row.verdicts}


@pytest.mark.parametrize("seed", SEEDS)
def test_a_job_without_a_sigterm_handler_that_resumes_exactly_passes(
    fault_check: FaultCheck, seed: int
) -> None:
    # Item 1: no handler, dies of SIGTERM (-15); sigterm defaults to "any".
    result = fault_check("tp_noterm", spec=SPEC, faults=["kill"], seed=seed)
    assert result.passed, failure_text(result)
    term = result.row("kill-sigterm")
    assert term.history.attempts[0].rc == -signal.SIGTERM
    assert _verdicts(term)["fault_exit"] == PASS
    # Item 4/6: every kill really happened, and each resume lost at most one interval.
    for row in result.report.rows:
        assert row.history.injected is True, (row.experiment.id, row.history.injected_detail)
        assert _verdicts(row)["lost_work"] in (PASS, "skip")


@pytest.mark.parametrize("seed", SEEDS)
def test_a_job_that_exits_0_early_on_sigterm_fails(fault_check: FaultCheck, seed: int) -> None:
    # Item 2: exit 0 at step k of 40 without saving is neither a clean stop nor completed.
    result = fault_check(
        "tp_early_exit", spec=SPEC, faults=["kill"], seed=seed, only=["kill-sigterm"]
    )
    row = result.row("kill-sigterm")
    verdicts = _verdicts(row)
    assert verdicts["fault_exit"] == FAIL and verdicts["completed"] == FAIL, failure_text(result)
    detail = next(v.detail for v in row.verdicts if v.name == "completed")
    assert "/40" in detail and "exit 0" in detail


@pytest.mark.parametrize("seed", SEEDS)
def test_an_inexact_resume_is_not_blamed_on_a_damaged_unused_file(
    fault_check: FaultCheck, seed: int
) -> None:
    # Item 3: the kill-only control tells the inexact resume (exact) from the damage.
    result = fault_check("tp_inexact", spec=SPEC, faults=["corrupt"], seed=seed)
    rows = result.report.rows
    assert not [r.experiment.id for r in rows if r.status == "SILENT-CORRUPTION"], failure_text(
        result
    )
    for row in rows:
        failed = [v for v in row.verdicts if v.failed]
        assert {v.name for v in failed} <= {"exact"}, failure_text(result)
        if failed:
            assert row.history.control is not None
            assert "kill-only" in failed[0].detail
            assert _verdicts(row)["corruption"] == PASS


@pytest.mark.parametrize("seed", SEEDS)
def test_a_checkpoint_copied_in_place_from_tmpdir_is_caught_mid_write(
    fault_check: FaultCheck, seed: int
) -> None:
    # Items 4 and 8: the window is the in-place copy; the failure names the file and cause.
    result = fault_check("tp_tmpcopy", spec=SPEC, faults=["kill"], seed=seed, only=["kill-write-0"])
    row = result.row("kill-write-0")
    assert row.history.injected is True, row.history.injected_detail
    assert row.history.attempts[0].in_write_window is True
    detail = next(v.detail for v in row.verdicts if v.name == "completed")
    assert row.status == "FAIL", failure_text(result)
    assert "ckpt.json" in detail and "JSONDecodeError" in detail, detail


@pytest.mark.parametrize("seed", SEEDS)
def test_a_checkpoint_renamed_from_a_temp_file_survives_a_kill_mid_write(
    fault_check: FaultCheck, seed: int
) -> None:
    # Item 4: the temp file (tempfile.mkstemp beside it) is the window; the kill lands in it.
    result = fault_check("tp_rename", spec=SPEC, faults=["kill"], seed=seed, only=["kill-write-0"])
    row = result.row("kill-write-0")
    assert result.passed, failure_text(result)
    assert row.history.injected is True, row.history.injected_detail
    assert "tmp" in Path(row.history.attempts[0].fault_path).name


def test_a_check_stopped_by_its_bound_leaves_a_partial_report_and_no_scratch(
    tmp_path: Path,
) -> None:
    # Item 7: SIGTERM mid-battery -> the rows done so far, the reason, the scratch removed.
    report, work = tmp_path / "r", tmp_path / "w"
    work.mkdir()
    argv = [sys.executable, "-m", "preflight.check.command", "tp_noterm", "--spec", SPEC]
    argv += ["--faults", "kill", "--report", str(report), "--work-root", str(work)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = report / "check-tp_noterm.json"
    deadline = time.monotonic() + 120
    while not path.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert path.exists(), "no report after the first experiment"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 1
    saved = json.loads(path.read_text())
    assert saved["rows"] and not saved["passed"]
    assert any("stopped by SIGTERM" in e for e in saved["errors"]), saved["errors"]
    assert os.listdir(work) == []
