"""The pure checker on hand-made histories: every verdict, passing and failing."""

from __future__ import annotations

from dataclasses import replace

import pytest

from preflight.check.checker import (
    FAIL,
    PASS,
    SKIP,
    CheckVerdict,
    check,
    lost_work_per_fault,
    passed,
)
from preflight.check.history import (
    FAULT_DISK,
    FAULT_MEMORY,
    FAULT_POINT,
    FAULT_SIGKILL,
    FAULT_SIGTERM,
    Attempt,
    Corruption,
    FaultHistory,
    Reference,
)

REF = Reference(rc=0, fingerprint="f" * 64, verify_rc=0, duration_s=1.0, total=30, ckpt_interval=5)


def killed(index: int = 0, at: int = 12, start: int = 0, fault: str = FAULT_SIGKILL) -> Attempt:
    return Attempt(
        index, index > 0, fault=fault, start_done=start, last_done=at, fault_at_done=at, rc=-9
    )


def finished(index: int = 1, start: int = 10) -> Attempt:
    return Attempt(index, True, start_done=start, last_done=30, rc=0)


def history(*attempts: Attempt, **kw: object) -> FaultHistory:
    base = dict(verify_rc=0, fingerprint=REF.fingerprint)
    base.update(kw)
    return FaultHistory("exp", "kill", 7, {"triggers": []}, attempts=attempts, **base)  # type: ignore[arg-type]


def by_name(verdicts: list[CheckVerdict]) -> dict[str, CheckVerdict]:
    return {v.name: v for v in verdicts}


def test_a_clean_kill_and_resume_passes_every_verdict() -> None:
    verdicts = by_name(check(history(killed(), finished()), REF))
    assert {n: v.status for n, v in verdicts.items()} == {
        "liveness": PASS,
        "completed": PASS,
        "valid": PASS,
        "exact": PASS,
        "lost_work": PASS,
    }
    assert "lost attempt 0: 2" in verdicts["lost_work"].detail


def test_a_hung_attempt_is_a_liveness_failure() -> None:
    hung = Attempt(1, True, rc=None, timed_out=True, duration_s=30.0)
    verdicts = by_name(check(history(killed(), hung), REF))
    assert verdicts["liveness"].status == FAIL
    assert "attempt 1" in verdicts["liveness"].detail
    assert verdicts["completed"].status == FAIL
    assert not passed(list(verdicts.values()))


def test_a_resume_that_keeps_crashing_is_not_completed() -> None:
    crash = [
        Attempt(i, True, rc=1, stderr_tail="Traceback\nJSONDecodeError: bad") for i in (1, 2, 3)
    ]
    verdicts = by_name(check(history(killed(), *crash), REF))
    assert verdicts["completed"].status == FAIL
    assert "JSONDecodeError" in verdicts["completed"].detail
    assert verdicts["exact"].status == SKIP


def test_more_restarts_than_the_bound_is_not_completed() -> None:
    flaky = [Attempt(i, True, rc=1) for i in (1, 2, 3)]
    verdicts = by_name(check(history(killed(), *flaky, finished(4)), REF, restarts_max=2))
    assert verdicts["completed"].status == FAIL
    assert "bound is 3" in verdicts["completed"].detail


def test_a_failed_verify_is_invalid() -> None:
    assert by_name(check(history(killed(), finished(), verify_rc=3), REF))["valid"].status == FAIL


def test_a_different_fingerprint_is_not_exact() -> None:
    verdicts = by_name(check(history(killed(), finished(), fingerprint="0" * 64), REF))
    assert verdicts["exact"].status == FAIL
    assert not verdicts["exact"].critical  # no corruption was injected: a plain failure


def test_no_fingerprint_or_verify_command_skips_those_verdicts() -> None:
    verdicts = by_name(check(history(killed(), finished(), verify_rc=None, fingerprint=None), REF))
    assert verdicts["valid"].status == SKIP
    assert verdicts["exact"].status == SKIP


def test_losing_more_than_one_checkpoint_interval_fails() -> None:
    verdicts = by_name(check(history(killed(at=12), finished(start=0)), REF))
    assert verdicts["lost_work"].status == FAIL
    assert "12" in verdicts["lost_work"].detail


def test_lost_work_is_measured_per_kill_in_a_storm() -> None:
    storm = history(killed(0, at=8), killed(1, at=14, start=5), finished(2, start=10))
    assert lost_work_per_fault(storm) == [(0, 3), (1, 4)]
    assert by_name(check(storm, REF))["lost_work"].status == PASS


def test_lost_work_unknown_without_a_published_resume_point() -> None:
    silent = Attempt(1, True, start_done=None, rc=0)
    verdicts = by_name(check(history(killed(), silent), REF))
    assert verdicts["lost_work"].status == SKIP
    assert (
        by_name(check(history(killed(), finished()), replace(REF, ckpt_interval=None)))[
            "lost_work"
        ].status
        == SKIP
    )


@pytest.mark.parametrize(
    ("rc", "graceful", "anything"),
    [(75, PASS, PASS), (-15, FAIL, PASS), (1, FAIL, PASS), (None, FAIL, FAIL)],
)
def test_sigterm_is_judged_by_the_specs_stop_behaviour(
    rc: int | None, graceful: str, anything: str
) -> None:
    # The resume starts where the stop was (a checkpoint at the stop): nothing lost.
    term = replace(killed(fault=FAULT_SIGTERM), rc=rc)
    h = history(term, finished(start=12), fault_exit="preempt")
    assert by_name(check(h, REF, sigterm="graceful"))["fault_exit"].status == graceful
    assert by_name(check(h, REF, sigterm="any"))["fault_exit"].status == anything
    assert by_name(check(h, REF))["fault_exit"].status == anything  # the default: any


def test_graceful_exit_75_must_have_saved_a_checkpoint_at_the_stop() -> None:
    term = replace(killed(fault=FAULT_SIGTERM, at=12), rc=75)
    h = history(term, finished(start=10), fault_exit="preempt")
    verdict = by_name(check(h, REF, sigterm="graceful"))["fault_exit"]
    assert verdict.status == FAIL and "lost 2" in verdict.detail


@pytest.mark.parametrize("mode", ["graceful", "any"])
def test_exit_0_on_sigterm_before_the_total_is_neither_a_clean_stop_nor_completed(
    mode: str,
) -> None:
    # 41 of 96 steps, exit 0, no resume (a scheduler takes exit 0 as done).
    ref = replace(REF, total=96)
    early = Attempt(
        0, False, fault=FAULT_SIGTERM, start_done=0, last_done=41, total=96, fault_at_done=40, rc=0
    )
    verdicts = by_name(check(history(early, fault_exit="preempt"), ref, sigterm=mode))
    assert verdicts["fault_exit"].status == FAIL
    assert "41/96" in verdicts["fault_exit"].detail
    assert verdicts["completed"].status == FAIL
    assert "41/96" in verdicts["completed"].detail


def test_exit_0_on_sigterm_after_finishing_the_work_is_fine() -> None:
    done = Attempt(
        0, False, fault=FAULT_SIGTERM, start_done=0, last_done=30, total=30, fault_at_done=29, rc=0
    )
    verdicts = by_name(check(history(done, fault_exit="preempt"), REF, sigterm="graceful"))
    assert verdicts["fault_exit"].status == PASS
    assert verdicts["completed"].status == PASS


@pytest.mark.parametrize(
    ("rc", "stderr", "status"),
    [
        (-9, "", PASS),
        (1, "MemoryError: injected", PASS),
        (1, "RuntimeError: DefaultCPUAllocator: can't allocate memory", PASS),
        (1, "OpenBLAS error: Memory allocation still failed after 10 retries", PASS),
        (1, "KeyError: 'x'", FAIL),
        (0, "", SKIP),
        (None, "", FAIL),
    ],
)
def test_memory_pressure_needs_an_oom_kill_or_a_clean_memory_error(
    rc: int | None, stderr: str, status: str
) -> None:
    first = Attempt(
        0, False, fault=FAULT_MEMORY, rc=rc, stderr_tail=stderr, last_done=4, fault_at_done=4
    )
    verdicts = by_name(check(history(first, finished(start=0)), REF))
    assert verdicts == by_name(check(history(first, finished(start=0)), REF))  # pure
    hist = history(first, finished(start=0), fault_exit="memory")
    assert by_name(check(hist, REF))["fault_exit"].status == status


@pytest.mark.parametrize(
    ("rc", "stderr", "status"),
    [
        (1, "OSError: [Errno 28] No space left on device", PASS),
        (1, "OSError: [Errno 27] File too large", PASS),
        (1, "Traceback: KeyError", FAIL),
        (-25, "", FAIL),
        (0, "", SKIP),
    ],
)
def test_a_full_disk_needs_a_clear_error(rc: int, stderr: str, status: str) -> None:
    first = Attempt(0, False, fault=FAULT_DISK, rc=rc, stderr_tail=stderr)
    hist = history(first, finished(start=0), fault_exit="disk")
    assert by_name(check(hist, REF))["fault_exit"].status == status


def corrupted(last: Attempt, **kw: object) -> FaultHistory:
    damage = (Corruption("flip_bits", ("shards/shard-00001.json",)),)
    return replace(history(killed(), last, **kw), kind="corrupt", corruptions=damage)


def test_a_repaired_corruption_that_ends_exact_passes() -> None:
    verdicts = by_name(check(corrupted(finished(start=0)), REF))
    assert verdicts["corruption"].status == PASS
    assert verdicts["lost_work"].status == SKIP  # restarting from scratch is a repair


def test_a_refusal_naming_the_file_passes() -> None:
    refusal = Attempt(1, True, rc=4, stderr_tail="refused: /w/shards/shard-00001.json: checksum")
    verdicts = by_name(check(corrupted(refusal, verify_rc=None, fingerprint=None), REF))
    assert verdicts["corruption"].status == PASS
    assert verdicts["completed"].status == SKIP
    assert passed(list(verdicts.values()))


def test_a_refusal_that_does_not_name_the_file_fails() -> None:
    crash = Attempt(1, True, rc=1, stderr_tail="KeyError: 'step'")
    verdicts = by_name(check(corrupted(crash, verify_rc=None, fingerprint=None), REF))
    assert verdicts["corruption"].status == FAIL
    assert verdicts["completed"].status == FAIL


def test_finishing_with_a_different_fingerprint_is_silent_corruption() -> None:
    verdicts = by_name(check(corrupted(finished(start=0), fingerprint="0" * 64), REF))
    assert verdicts["corruption"].status == FAIL
    assert verdicts["corruption"].critical
    assert "SILENT CORRUPTION" in verdicts["corruption"].detail


def test_hanging_on_a_corrupt_file_fails() -> None:
    hung = Attempt(1, True, rc=None, timed_out=True)
    verdicts = by_name(check(corrupted(hung), REF))
    assert verdicts["corruption"].status == FAIL
    assert verdicts["liveness"].status == FAIL


def test_a_skipped_experiment_is_a_note_not_a_failure() -> None:
    skipped = FaultHistory(
        "crashpoints", "crashpoints", 0, {}, skipped="the job passes no fault points"
    )
    verdicts = check(skipped, REF)
    assert [v.status for v in verdicts] == [SKIP]
    assert passed(verdicts)


def test_a_crash_point_that_never_fired_is_judged_on_its_run() -> None:
    unharmed = Attempt(0, False, fault=FAULT_POINT, armed="x:kill@9", rc=0, last_done=30)
    verdicts = by_name(check(history(unharmed), REF))
    assert verdicts["completed"].status == PASS
    assert verdicts["lost_work"].status == SKIP


def test_history_round_trips_through_json() -> None:
    original = corrupted(finished(start=0))
    assert FaultHistory.from_json(original.to_json()) == original


def test_a_kill_after_the_total_is_inconclusive_never_a_pass() -> None:
    # Planted: progress published only at the end, so the kill planned at 12 fired at 30.
    late = history(killed(at=30), finished(start=30))
    verdicts = check(late, REF)
    assert verdicts[0].name == "injected" and verdicts[0].status == SKIP
    assert "after the work was done" in verdicts[0].detail and "30 of 30" in verdicts[0].detail
    assert not any(v.status == PASS for v in verdicts)
    # Clean: one kill of a storm before the total is a real fault.
    storm = history(killed(at=12), killed(1, at=30, start=10), finished(2, start=30))
    assert passed(check(storm, REF))
    assert by_name(check(history(killed(), finished()), REF))["lost_work"].status == PASS


def test_a_lost_work_bound_of_the_whole_run_cannot_pass() -> None:
    whole = replace(REF, ckpt_interval=30, ckpt_interval_source="no checkpoint changes seen")
    verdict = by_name(check(history(killed(), finished(start=0)), whole))["lost_work"]
    assert verdict.status == SKIP and "whole run" in verdict.detail
    assert "no checkpoint changes seen" in verdict.detail


def test_no_progress_published_makes_the_row_inconclusive() -> None:
    missing = replace(REF, progress_missing="no progress published: the spec's 'progress' ...")
    verdicts = check(history(killed(), finished()), missing)
    assert [(v.name, v.status) for v in verdicts] == [("progress", SKIP)]
    assert "no progress published" in verdicts[0].detail
    # A failure still stands (a hang is the job's, progress or not).
    hung = history(killed(), replace(finished(), rc=None, timed_out=True))
    assert not passed(check(hung, missing))
