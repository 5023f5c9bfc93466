"""Issue 19 item 8: a job that leaves processes running outside its process group (setsid)
fails ``preflight check``: every attempt records what its Run found and killed, and the
liveness verdict fails naming the first one, whatever the host's CPU steal."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from preflight.check import command as check
from preflight.check.checker import FAIL, PASS, SKIP
from preflight.check.checker import check as judge
from preflight.check.drive.runner import DriveContext, run_attempt
from preflight.check.history import FAULT_SIGKILL, Attempt, FaultHistory, Reference
from preflight.workload import load_spec

SPEC = Path(__file__).resolve().parents[3] / "fixtures" / "escaper.toml"
REF = Reference(rc=0, fingerprint="f" * 64, verify_rc=0, duration_s=1.0, total=30, ckpt_interval=5)
ORPHAN = "pid 4242 'python escaper.py --out W'"
GONE_WAIT_S = 10.0


def _history(*attempts: Attempt, **kw: object) -> FaultHistory:
    base: dict[str, object] = {"verify_rc": 0, "fingerprint": REF.fingerprint, **kw}
    return FaultHistory("kill-time", "kill", 0, {}, attempts=attempts, **base)  # type: ignore[arg-type]


def _killed(**kw: object) -> Attempt:
    return Attempt(
        0, False, fault=FAULT_SIGKILL, start_done=0, last_done=12, fault_at_done=12, rc=-9, **kw
    )  # type: ignore[arg-type]


def _finished(**kw: object) -> Attempt:
    fields: dict[str, object] = {"start_done": 10, "last_done": 30, "rc": 0, **kw}
    return Attempt(1, True, **fields)  # type: ignore[arg-type]


def _by_name(history: FaultHistory) -> dict[str, tuple[str, str]]:
    return {v.name: (v.status, v.detail) for v in judge(history, REF)}


def test_an_attempt_that_left_processes_fails_liveness_naming_the_first() -> None:
    verdicts = _by_name(_history(_killed(), _finished(leftovers=2, leftover=ORPHAN)))
    status, detail = verdicts["liveness"]
    assert status == FAIL
    assert "attempt 1 left 2 process(es) running outside its process group" in detail
    assert ORPHAN in detail
    # Nothing else is blamed: the run itself was fine.
    assert verdicts["completed"][0] == PASS and verdicts["exact"][0] == PASS


def test_a_clean_history_passes_liveness() -> None:
    assert _by_name(_history(_killed(), _finished()))["liveness"][0] == PASS


def test_leftovers_are_not_excused_by_host_steal() -> None:
    # A timeout alone under heavy steal is inconclusive; escaped processes never are.
    hung = _killed(host_steal=0.9, timed_out=True)
    assert _by_name(_history(hung, _finished(host_steal=0.9)))["liveness"][0] == SKIP
    escaped = _finished(host_steal=0.9, leftovers=1, leftover=ORPHAN)
    status, detail = _by_name(_history(hung, escaped))["liveness"]
    assert status == FAIL and "time bound" in detail and ORPHAN in detail


def test_leftovers_fail_even_when_the_fault_was_not_injected() -> None:
    history = _history(
        _finished(leftovers=1, leftover=ORPHAN),
        injected=False,
        injected_detail="the job ended before the trigger",
    )
    statuses = {v.name: v.status for v in judge(history, REF)}
    assert statuses["injected"] == SKIP and statuses["liveness"] == FAIL


def test_leftovers_survive_the_json_round_trip() -> None:
    history = _history(_finished(leftovers=1, leftover=ORPHAN))
    again = FaultHistory.from_json(json.loads(json.dumps(history.to_json())))
    assert again.attempts[0].leftovers == 1 and again.attempts[0].leftover == ORPHAN


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rpartition(b")")[2].split()[0] != b"Z"
    except OSError:
        return False


def test_run_attempt_records_the_escaped_child_and_kills_it(tmp_path: Path) -> None:
    spec = load_spec("escaper", str(SPEC))
    ctx = DriveContext(spec, dict(spec.params("small")), tmp_path)
    attempt = run_attempt(ctx, tmp_path / "work", 0, resume=False).attempt
    assert attempt.rc == 0 and attempt.leftovers == 1
    assert "escaper.py" in attempt.leftover
    pid = int(attempt.leftover.split()[1])
    assert pid != os.getpid()
    deadline = time.monotonic() + GONE_WAIT_S
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), "the escaped child was left running"


@pytest.mark.long
def test_preflight_check_fails_a_job_that_escapes_its_process_group(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "escaper",
        "--spec",
        str(SPEC),
        "--faults",
        "kill",
        "--only",
        "kill-progress",
        "--report",
        str(tmp_path / "r"),
        "--work-root",
        str(tmp_path / "w"),
    ]
    assert check.main(argv) == check.EXIT_FAILED
    out = capsys.readouterr().out
    assert "liveness: attempt 0 left 1 process(es) running outside its process group" in out
    report = json.loads((tmp_path / "r" / "check-escaper.json").read_text())
    (row,) = report["rows"]
    liveness = next(v for v in row["verdicts"] if v["name"] == "liveness")
    assert liveness["status"] == FAIL and "escaper.py" in liveness["detail"]
    failed = {v["name"] for v in row["verdicts"] if v["status"] == FAIL}
    assert failed == {"liveness"}, row["verdicts"]
