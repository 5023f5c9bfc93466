"""Proof that preflight check finds real defects: the planted-defect jobs fail with the
right verdicts, and the correct job passes the same experiments."""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest

from preflight.check import command as check
from preflight.check.checker import FAIL, PASS
from preflight.check.kinds import disk, memory
from preflight.check.pytest_fixtures import (
    FaultBattery,
    FaultCheck,
    assert_check_passed,
    failure_text,
)
from preflight.check.report import CheckRow

SPEC = str(Path(__file__).resolve().parents[3] / "fixtures" / "defects.toml")


def _verdicts(result: check.CheckResult, experiment_id: str) -> dict[str, str]:
    return {v.name: v.status for v in result.row(experiment_id).verdicts}


def test_a_checkpoint_written_in_place_breaks_resume_after_a_kill_mid_write(
    fault_check: FaultCheck,
) -> None:
    result = fault_check("inplace_ckpt", spec=SPEC, faults=["kill"], only=["kill-write-0"])
    assert not result.passed
    row = result.row("kill-write-0")
    assert row.history.attempts[0].in_write_window is True
    assert _verdicts(result, "kill-write-0")["completed"] == FAIL, failure_text(result)
    assert "--only kill-write-0" in row.replay


def test_an_unsaved_rng_state_makes_a_resumed_run_diverge(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Through the CLI: exit 1, the replay command printed, the verdict in the JSON report.
    argv = [
        "no_rng",
        "--spec",
        SPEC,
        "--faults",
        "kill",
        "--seed",
        "3",
        "--only",
        "kill-progress",
        "--report",
        str(tmp_path / "r"),
        "--work-root",
        str(tmp_path),
    ]
    assert check.main(argv) == check.EXIT_FAILED
    out = capsys.readouterr().out
    assert (
        f"replay: preflight check no_rng --spec {SPEC} --scale small --faults kill --seed 3"
        " --only kill-progress" in out
    )
    report = json.loads((tmp_path / "r" / "check-no_rng.json").read_text())
    verdicts = {v["name"]: v["status"] for v in report["rows"][0]["verdicts"]}
    assert verdicts["exact"] == FAIL, out
    assert verdicts["completed"] == PASS and verdicts["valid"] == PASS
    assert (tmp_path / "r" / "check-no_rng.html").is_file()


def _clean(fault_battery: FaultBattery, *ids: str) -> dict[str, CheckRow]:
    """Experiments on the correct job, sharing one reference run per test worker."""
    rows = fault_battery("clean_ckpt", spec=SPEC).run_ids(ids)
    failed = [
        f"{r.experiment.id}: {v.name}: {v.detail}" for r in rows for v in r.verdicts if v.failed
    ]
    assert not failed, failed
    return {r.experiment.id: r for r in rows}


@pytest.mark.long  # drives real jobs for seconds: make test-long (CI runs it)
def test_the_correct_job_passes_kills(fault_battery: FaultBattery) -> None:
    rows = _clean(fault_battery, "kill-write-0", "kill-progress")
    assert rows["kill-write-0"].history.attempts[0].in_write_window is True
    assert rows["kill-progress"].history.attempts[0].rc == -9


def test_the_correct_job_passes_a_crash_inside_its_checkpoint_write(
    fault_battery: FaultBattery,
) -> None:
    rows = _clean(fault_battery, "crash-minijob.ckpt_chunk@1")
    assert rows["crash-minijob.ckpt_chunk@1"].history.attempts[0].rc == -9


def test_the_correct_job_refuses_corrupt_checkpoints(fault_battery: FaultBattery) -> None:
    rows = _clean(fault_battery, "corrupt-swap", "corrupt-flip_bits")
    assert {v.status for r in rows.values() for v in r.verdicts if v.name == "corruption"} == {PASS}


@pytest.mark.long  # drives real jobs for seconds: make test-long (CI runs it)
def test_the_correct_job_survives_memory_pressure_and_a_full_disk(
    fault_battery: FaultBattery,
) -> None:
    rows = _clean(fault_battery, "memory-limit", "disk-full")
    exits = {i: next(v for v in r.verdicts if v.name == "fault_exit") for i, r in rows.items()}
    if memory.detect_here().kind.startswith("cgroup"):
        # The limit must have bitten: an OOM kill, then an exact resume.
        assert exits["memory-limit"].status == PASS, exits["memory-limit"].detail
    if disk.detect_here().kind != "none":
        assert exits["disk-full"].status == PASS, exits["disk-full"].detail


@pytest.mark.long  # drives real jobs for seconds: make test-long (CI runs it)
def test_without_cgroups_or_root_the_fallbacks_still_bite(
    fault_check: FaultCheck, monkeypatch: pytest.MonkeyPatch
) -> None:
    # RLIMIT_AS instead of a memory cgroup, RLIMIT_FSIZE instead of a small tmpfs.
    monkeypatch.setattr(
        memory, "detect_here", lambda: memory.Mechanism("rlimit_as", None, "forced")
    )
    monkeypatch.setattr(disk, "detect_here", lambda: disk.DiskMechanism("rlimit_fsize", "forced"))
    only = ["memory-limit", "disk-full"]
    result = fault_check("clean_ckpt", spec=SPEC, faults=["memory", "disk"], only=only)
    assert_check_passed(result)
    for experiment_id in only:
        assert _verdicts(result, experiment_id)["fault_exit"] == PASS, failure_text(result)
    assert result.row("disk-full").history.attempts[0].armed.startswith("RLIMIT_FSIZE")


HANG_ON_RESUME = """
import json, os, subprocess, sys, time
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
marker = os.path.join(out, "started")
if os.path.exists(marker) and not os.path.exists(os.path.join(out, "done")):
    # The defect: a resume deadlocks, with a helper process that would outlive a plain kill.
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    time.sleep(300)
open(marker, "w").close()
for done in range(11):
    tmp = os.path.join(out, ".p")
    with open(tmp, "w") as handle:
        json.dump({"done": done, "total": 10, "updated_at": "x"}, handle)
    os.replace(tmp, os.path.join(out, "PROGRESS.json"))
    time.sleep(0.03)
open(os.path.join(out, "done"), "w").close()
"""


@pytest.mark.long  # drives real jobs for seconds: make test-long (CI runs it)
def test_a_hung_resume_is_killed_with_its_group_and_fails_liveness(
    fault_check: FaultCheck, tmp_path: Path
) -> None:
    (tmp_path / "hang.py").write_text(HANG_ON_RESUME)
    spec = tmp_path / "hang.toml"
    spec.write_text(
        "[workloads.hang]\n"
        'command = ["{python}", "{spec_dir}/hang.py", "{workdir}"]\n'
        'progress = "{workdir}/PROGRESS.json"\n'
        # The clean reference run must finish inside it: 3 s once was not enough for a 0.4 s
        # job on a fresh clone under heavy host steal, and no experiment was made.
        "timeout_s = 10\n"
    )
    result = fault_check("hang", spec=str(spec), faults=["kill"], only=["kill-progress"])
    ids = [r.experiment.id for r in result.report.rows]
    assert "kill-progress" in ids, (ids, failure_text(result))
    row = result.row("kill-progress")
    assert _verdicts(result, "kill-progress")["liveness"] == FAIL, failure_text(result)
    assert row.history.attempts[-1].timed_out
    leftovers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if "time.sleep(300)" in " ".join(p.info["cmdline"] or [])
    ]
    assert not leftovers, "the hung job's process group was left running"


def test_the_cli_refuses_bad_input_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check.main(["nosuchjob", "--spec", SPEC]) == check.EXIT_BAD_INPUT
    assert check.main(["no_rng", "--spec", SPEC, "--faults", "nuke"]) == check.EXIT_BAD_INPUT
    assert "nosuchjob" in capsys.readouterr().err
