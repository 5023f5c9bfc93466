"""The fault_exit verdict (pure): how the faulted attempt ended (docs/contract.md "Statuses").

SIGTERM as the spec's ``sigterm`` says ("graceful": exit 75 or 0 after a checkpoint, "any":
any exit, the resume must be exact); memory: an OOM kill or a clean memory error; disk: a
clear error. preflight.check.checker adds it to an experiment's verdicts.
"""

from __future__ import annotations

from preflight.check.history import FAULT_NONE, FAULT_SIGTERM, Attempt, FaultHistory, Reference
from preflight.check.messages import DISK_MESSAGE_RE, MEMORY_MESSAGE_RE, tail_line
from preflight.check.verdicts import (
    FAIL,
    PASS,
    SIGTERM_ANY,
    SKIP,
    CheckVerdict,
    lost_work_per_fault,
    short_of_total,
)
from preflight.durable.errors import EXIT_STOPPED

SIGKILL_RCS = (-9, 137)  # Popen reports -9; a shell wrapper reports 128 + 9


def _faulted(history: FaultHistory) -> Attempt | None:
    return next((a for a in history.attempts if a.fault != FAULT_NONE), None)


def fault_exit(
    history: FaultHistory, reference: Reference | None = None, sigterm: str = SIGTERM_ANY
) -> CheckVerdict:
    attempt = _faulted(history)
    if attempt is None:
        return CheckVerdict("fault_exit", SKIP, "no attempt was faulted")
    if history.fault_exit == "preempt":
        return preempt_exit(history, attempt, reference, sigterm)
    judge = {"memory": _memory_exit, "disk": _disk_exit}.get(history.fault_exit)
    if judge is None:
        return CheckVerdict("fault_exit", SKIP, f"no rule for {history.fault_exit!r}")
    return judge(attempt)


def preempt_exit(
    history: FaultHistory, attempt: Attempt, reference: Reference | None, sigterm: str
) -> CheckVerdict:
    """SIGTERM: the job must stop in the grace period; exit 0 only when it had finished.
    "graceful": exit 75 (or 0) and a checkpoint at the stop (the resume loses nothing);
    "any": any exit or the signal itself (no handler) — the exact verdict judges the rest."""
    if attempt.fault != FAULT_SIGTERM:
        return CheckVerdict("fault_exit", SKIP, "SIGTERM was never sent")
    if attempt.rc is None:
        return CheckVerdict(
            "fault_exit", FAIL, "did not exit within the grace period after SIGTERM"
        )
    short = short_of_total(attempt, reference)
    if attempt.rc == 0 and short is not None:
        return CheckVerdict(
            "fault_exit",
            FAIL,
            f"exit 0 after SIGTERM at progress {short[0]}/{short[1]}: a stopped job reported "
            "success (exit 75 or a non-zero code tells the scheduler to resume it)",
        )
    if sigterm == SIGTERM_ANY:
        return CheckVerdict("fault_exit", PASS, f"exit {attempt.rc} after SIGTERM (sigterm = any)")
    if attempt.rc not in (0, EXIT_STOPPED):
        return CheckVerdict(
            "fault_exit",
            FAIL,
            f"exit {attempt.rc} after SIGTERM; sigterm = graceful expects {EXIT_STOPPED} or 0",
        )
    lost = dict(lost_work_per_fault(history)).get(attempt.index)
    if attempt.rc == EXIT_STOPPED and lost:
        return CheckVerdict(
            "fault_exit",
            FAIL,
            f"exit {EXIT_STOPPED} after SIGTERM but the resume lost {lost} unit(s): "
            "no checkpoint at the stop",
        )
    return CheckVerdict("fault_exit", PASS, f"exit {attempt.rc} after SIGTERM (graceful)")


def _memory_exit(attempt: Attempt) -> CheckVerdict:
    if attempt.rc == 0:
        return CheckVerdict("fault_exit", SKIP, "finished under the memory limit: it did not bite")
    if attempt.rc is None:
        return CheckVerdict("fault_exit", FAIL, "did not exit under memory pressure")
    if attempt.rc in SIGKILL_RCS:
        return CheckVerdict("fault_exit", PASS, "OOM-killed (SIGKILL)")
    if attempt.rc > 0 and MEMORY_MESSAGE_RE.search(attempt.stderr_tail):
        return CheckVerdict("fault_exit", PASS, f"clean memory-error exit {attempt.rc}")
    return CheckVerdict(
        "fault_exit",
        FAIL,
        f"exit {attempt.rc} under memory pressure without a memory-error message"
        + tail_line(attempt.stderr_tail),
    )


def _disk_exit(attempt: Attempt) -> CheckVerdict:
    if attempt.rc == 0:
        return CheckVerdict("fault_exit", SKIP, "finished on the small filesystem: it did not fill")
    if attempt.rc is None:
        return CheckVerdict("fault_exit", FAIL, "did not exit on a full disk")
    if attempt.rc < 0:
        return CheckVerdict("fault_exit", FAIL, f"killed by signal {-attempt.rc} on a full disk")
    if DISK_MESSAGE_RE.search(attempt.stderr_tail):
        return CheckVerdict("fault_exit", PASS, f"clear disk-full error, exit {attempt.rc}")
    return CheckVerdict(
        "fault_exit",
        FAIL,
        f"exit {attempt.rc} on a full disk without saying so" + tail_line(attempt.stderr_tail),
    )
