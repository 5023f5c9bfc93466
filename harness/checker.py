"""The verdict checker: a pure function from a recorded fault history to verdicts.

Like a Jepsen checker it never trusts the job: it reads only what the harness observed
(exit codes, published progress, stderr, the fingerprint and verify results) and compares
the outcome with the uninterrupted reference run. DESIGN.md "Verdicts" defines them:

- liveness: no attempt ran past its time bound (a hang is killed with its process group);
- completed: the job finished after at most R restarts beyond the ones the faults forced;
- valid: ``verify`` exits 0;  exact: the fingerprint equals the reference's;
- lost_work: per kill, progress at the kill minus the progress the resumed run starts from,
  at most one checkpoint interval;
- fault_exit: how the faulted attempt ended (SIGTERM -> 75 or 0; memory -> OOM kill or a
  clean memory error; disk -> a clear error);
- corruption: each damaged file is repaired (then exact) or refused with a non-zero exit and
  a message naming the file. Succeeding with a different fingerprint is silent corruption,
  the one critical verdict.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import PurePath
from typing import Any

from harness.faults.history import FAULT_NONE, FAULT_SIGTERM, Attempt, History, Reference

PASS, FAIL, SKIP = "pass", "fail", "skip"
RESTARTS_MAX = 2  # unplanned restarts a job may need after the faults (DESIGN "R")
EXIT_STOPPED = 75  # DESIGN.md: stopped on SIGTERM after a clean checkpoint
SIGKILL_RCS = (-9, 137)  # Popen reports -9; a shell wrapper reports 128 + 9

MEMORY_MESSAGE_RE = re.compile(
    r"MemoryError|out of memory|cannot allocate memory|can't allocate memory|ENOMEM|bad_alloc"
    r"|memory allocation|failed to allocate|allocation failed|failed to map segment",
    re.IGNORECASE,
)
DISK_MESSAGE_RE = re.compile(
    r"no space left|ENOSPC|errno 28|disk full|file too large|EFBIG|errno 27|quota"
    r"|free disk|disk space|not enough space",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Verdict:
    name: str
    status: str  # PASS | FAIL | SKIP
    detail: str
    critical: bool = False  # silent corruption: worse than any other failure

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check(
    history: History, reference: Reference, restarts_max: int = RESTARTS_MAX
) -> list[Verdict]:
    """All verdicts for one experiment (pure: the same inputs always give the same list)."""
    if history.skipped:
        return [Verdict("experiment", SKIP, history.skipped)]
    if not history.attempts:
        return [Verdict("experiment", FAIL, "no attempt was recorded")]
    verdicts = [liveness(history)]
    if history.fault_exit:
        verdicts.append(fault_exit(history))
    refused = False
    if history.corruptions:
        corruption_verdict, refused = corruption(history, reference)
        verdicts.append(corruption_verdict)
    if refused:
        note = "the job refused the damaged file, an accepted outcome"
        verdicts += [Verdict(name, SKIP, note) for name in ("completed", "valid", "exact")]
    else:
        verdicts += [
            completed(history, restarts_max),
            valid(history),
            exact(history, reference),
        ]
    if history.corruptions:
        # A damaged checkpoint may force a restart from scratch; that is a repair, not loss.
        verdicts.append(Verdict("lost_work", SKIP, "checkpoint damaged on purpose"))
    else:
        verdicts.append(lost_work(history, reference))
    return verdicts


def passed(verdicts: Sequence[Verdict]) -> bool:
    return not any(v.failed for v in verdicts)


def liveness(history: History) -> Verdict:
    hung = [a for a in history.attempts if a.timed_out]
    if hung:
        where = ", ".join(f"attempt {a.index} after {a.duration_s:.1f} s" for a in hung)
        return Verdict("liveness", FAIL, f"ran past its time bound ({where}); group killed")
    return Verdict("liveness", PASS, f"{len(history.attempts)} attempt(s), all ended in bound")


def _planned_restarts(history: History) -> int:
    return sum(1 for a in history.attempts if a.fault != FAULT_NONE)


def completed(history: History, restarts_max: int) -> Verdict:
    last = history.attempts[-1]
    restarts = len(history.attempts) - 1
    allowed = _planned_restarts(history) + restarts_max
    if last.rc != 0:
        why = "hung" if last.timed_out else f"exit {last.rc}"
        tail = _tail_line(last.stderr_tail)
        return Verdict(
            "completed",
            FAIL,
            f"did not finish after {restarts} restart(s): last attempt {why}" + tail,
        )
    if restarts > allowed:
        return Verdict("completed", FAIL, f"needed {restarts} restarts, bound is {allowed}")
    return Verdict("completed", PASS, f"finished after {restarts} restart(s) (bound {allowed})")


def valid(history: History) -> Verdict:
    if history.attempts[-1].rc != 0:
        return Verdict("valid", SKIP, "not completed, nothing to verify")
    if history.verify_rc is None:
        return Verdict("valid", SKIP, "no verify command in the workload spec")
    if history.verify_rc == 0:
        return Verdict("valid", PASS, "verify exit 0")
    return Verdict("valid", FAIL, f"verify exit {history.verify_rc}")


def exact(history: History, reference: Reference) -> Verdict:
    if history.attempts[-1].rc != 0:
        return Verdict("exact", SKIP, "not completed, nothing to compare")
    if reference.fingerprint is None or history.fingerprint is None:
        return Verdict("exact", SKIP, "no fingerprint (no command in the spec, or it failed)")
    if history.fingerprint == reference.fingerprint:
        return Verdict("exact", PASS, f"fingerprint {_short(history.fingerprint)} = reference")
    return Verdict(
        "exact",
        FAIL,
        f"fingerprint {_short(history.fingerprint)} != reference {_short(reference.fingerprint)}",
    )


def lost_work_per_fault(history: History) -> list[tuple[int, int | None]]:
    """(attempt index, lost progress or None when unobserved) for each fault that stopped
    the job; a resume that starts past the last observation lost nothing we can see."""
    losses: list[tuple[int, int | None]] = []
    attempts = history.attempts
    for attempt, resumed in zip(attempts, attempts[1:], strict=False):
        if attempt.fault == FAULT_NONE:
            continue
        if attempt.fault_at_done is None or resumed.start_done is None:
            losses.append((attempt.index, None))
        else:
            losses.append((attempt.index, max(0, attempt.fault_at_done - resumed.start_done)))
    return losses


def lost_work(history: History, reference: Reference) -> Verdict:
    losses = lost_work_per_fault(history)
    known = [(i, lost) for i, lost in losses if lost is not None]
    if not losses:
        return Verdict("lost_work", SKIP, "no fault stopped the job")
    if not known:
        return Verdict("lost_work", SKIP, "no resume published its starting progress")
    interval = reference.ckpt_interval
    text = ", ".join(f"attempt {i}: {lost}" for i, lost in known)
    if interval is None:
        return Verdict("lost_work", SKIP, f"lost {text}; checkpoint interval unknown")
    worst = max(lost for _, lost in known)
    status = PASS if worst <= interval else FAIL
    return Verdict("lost_work", status, f"lost {text} (bound: one interval = {interval})")


def _faulted(history: History) -> Attempt | None:
    return next((a for a in history.attempts if a.fault != FAULT_NONE), None)


def fault_exit(history: History) -> Verdict:
    attempt = _faulted(history)
    if attempt is None:
        return Verdict("fault_exit", SKIP, "no attempt was faulted")
    judge = {"preempt": _preempt_exit, "memory": _memory_exit, "disk": _disk_exit}.get(
        history.fault_exit
    )
    if judge is None:
        return Verdict("fault_exit", SKIP, f"no rule for {history.fault_exit!r}")
    return judge(attempt)


def _preempt_exit(attempt: Attempt) -> Verdict:
    if attempt.fault != FAULT_SIGTERM:
        return Verdict("fault_exit", SKIP, "SIGTERM was never sent")
    if attempt.rc in (0, EXIT_STOPPED):
        return Verdict("fault_exit", PASS, f"exit {attempt.rc} after SIGTERM")
    if attempt.rc is None:
        return Verdict("fault_exit", FAIL, "did not exit within the grace period after SIGTERM")
    return Verdict(
        "fault_exit", FAIL, f"exit {attempt.rc} after SIGTERM; expected {EXIT_STOPPED} or 0"
    )


def _memory_exit(attempt: Attempt) -> Verdict:
    if attempt.rc == 0:
        return Verdict("fault_exit", SKIP, "finished under the memory limit: it did not bite")
    if attempt.rc is None:
        return Verdict("fault_exit", FAIL, "did not exit under memory pressure")
    if attempt.rc in SIGKILL_RCS:
        return Verdict("fault_exit", PASS, "OOM-killed (SIGKILL)")
    if attempt.rc > 0 and MEMORY_MESSAGE_RE.search(attempt.stderr_tail):
        return Verdict("fault_exit", PASS, f"clean memory-error exit {attempt.rc}")
    return Verdict(
        "fault_exit",
        FAIL,
        f"exit {attempt.rc} under memory pressure without a memory-error message"
        + _tail_line(attempt.stderr_tail),
    )


def _disk_exit(attempt: Attempt) -> Verdict:
    if attempt.rc == 0:
        return Verdict("fault_exit", SKIP, "finished on the small filesystem: it did not fill")
    if attempt.rc is None:
        return Verdict("fault_exit", FAIL, "did not exit on a full disk")
    if attempt.rc < 0:
        return Verdict("fault_exit", FAIL, f"killed by signal {-attempt.rc} on a full disk")
    if DISK_MESSAGE_RE.search(attempt.stderr_tail):
        return Verdict("fault_exit", PASS, f"clear disk-full error, exit {attempt.rc}")
    return Verdict(
        "fault_exit",
        FAIL,
        f"exit {attempt.rc} on a full disk without saying so" + _tail_line(attempt.stderr_tail),
    )


def corruption(history: History, reference: Reference) -> tuple[Verdict, bool]:
    """The corruption verdict, and whether the outcome was an accepted refusal."""
    damaged = sorted({p for c in history.corruptions for p in c.paths})
    what = ", ".join(f"{c.kind} {'+'.join(c.paths)}" for c in history.corruptions)
    last = history.attempts[-1]
    if last.rc == 0:
        return _after_success(history, reference, what), False
    if last.rc is None or last.timed_out:
        return Verdict("corruption", FAIL, f"hung after {what}"), False
    named = [p for p in damaged if _names_file(last.stderr_tail, p)]
    if named:
        detail = f"refused {what}: exit {last.rc} naming {', '.join(named)}"
        return Verdict("corruption", PASS, detail), True
    return (
        Verdict(
            "corruption",
            FAIL,
            f"exit {last.rc} after {what} without naming the file" + _tail_line(last.stderr_tail),
        ),
        False,
    )


def _after_success(history: History, reference: Reference, what: str) -> Verdict:
    mine, theirs = history.fingerprint, reference.fingerprint
    if mine is not None and theirs is not None:
        if mine == theirs:
            return Verdict("corruption", PASS, f"repaired {what}: fingerprint exact")
        return Verdict(
            "corruption",
            FAIL,
            f"SILENT CORRUPTION: finished after {what} with fingerprint {_short(mine)} "
            f"!= reference {_short(theirs)}",
            critical=True,
        )
    if history.verify_rc == 0:
        return Verdict("corruption", PASS, f"accepted {what}; verify passes (no fingerprint)")
    if history.verify_rc is None:
        return Verdict("corruption", SKIP, f"finished after {what}; nothing to compare")
    return Verdict("corruption", FAIL, f"finished after {what} but verify exit {history.verify_rc}")


def _names_file(text: str, relpath: str) -> bool:
    return PurePath(relpath).name in text


def _short(digest: str) -> str:
    return digest[:12]


def _tail_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return f": {lines[-1].strip()[:200]}" if lines else ""
