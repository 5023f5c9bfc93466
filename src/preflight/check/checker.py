"""The verdict checker: a pure function from a recorded fault history to verdicts.

Like a Jepsen checker it never trusts the job: it reads only what the harness observed
(exit codes, published progress, stderr, the fingerprint and verify results) and compares
the outcome with the uninterrupted reference run. docs/contract.md "Statuses" defines them:

- liveness: no attempt ran past its time bound (a hang is killed with its process group),
  and none left processes running outside its group (setsid: killed, named, a failure);
- completed: the job finished after at most R restarts beyond the ones the faults forced;
- valid: ``verify`` exits 0;  exact: the fingerprint equals the reference's;
- lost_work: per kill, progress at the kill minus the progress the resumed run starts from,
  at most one checkpoint interval;
- fault_exit (preflight.check.fault_exit): how the faulted attempt ended (SIGTERM: as the
  spec's ``sigterm`` says — "graceful": exit 75 or 0 after a checkpoint, "any": any exit,
  the resume must be exact; memory -> OOM kill or a clean memory error; disk -> a clear
  error);
- corruption: each damaged file is repaired (then exact) or refused with a non-zero exit and
  a message naming the file. Succeeding with a different fingerprint is silent corruption,
  the one critical verdict — unless a kill-only control from the same stop point gives that
  same fingerprint: then the resume is inexact (the exact verdict), not the damage.

An experiment whose fault was never injected is inconclusive: it can fail (a hang), never
pass. A failure only of the clock (liveness) while the host stole the CPU, or froze the
harness, is inconclusive.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePath

from preflight.check.fault_exit import fault_exit
from preflight.check.history import (
    FAULT_NONE,
    FAULT_SIGKILL,
    FAULT_SIGTERM,
    Attempt,
    FaultHistory,
    Reference,
)
from preflight.check.messages import cause
from preflight.check.verdicts import (
    FAIL,
    PASS,
    SIGTERM_ANY,
    SKIP,
    CheckVerdict,
    lost_work_per_fault,
    short_of_total,
)
from preflight.host import rule as hostrule

LATE_KINDS = ("kill", "rank")  # kinds whose fault is a kill planned on progress
RESTARTS_MAX = 2  # unplanned restarts a job may need after the faults (docs/contract.md "Statuses")


def check(
    history: FaultHistory,
    reference: Reference,
    restarts_max: int = RESTARTS_MAX,
    *,
    sigterm: str = SIGTERM_ANY,
) -> list[CheckVerdict]:
    """All verdicts for one experiment (pure: the same inputs always give the same list)."""
    if history.skipped:
        return [CheckVerdict("experiment", SKIP, history.skipped)]
    if not history.attempts:
        return [CheckVerdict("experiment", FAIL, "no attempt was recorded")]
    verdicts = _all(history, reference, restarts_max, sigterm)
    unearned = _unearned(history, reference)
    if unearned:
        # Whatever passed proves nothing; a failure stands.
        name, why = unearned
        return [CheckVerdict(name, SKIP, f"inconclusive: {why}")] + [
            v for v in verdicts if v.failed
        ]
    return _timing_only(history, verdicts)


def _unearned(history: FaultHistory, reference: Reference) -> tuple[str, str] | None:
    """(verdict name, why) when this experiment tested nothing a resume could be judged on,
    first reason first; None when it did (pure)."""
    if history.injected is False:
        # Nothing was done to the job.
        return "injected", history.injected_detail or "the fault was never injected"
    if reference.progress_missing:
        # Kills planned on time, lost work and "progress reached its total" all rest on
        # progress the job never published.
        return "progress", reference.progress_missing
    late = after_the_work(history, reference)
    if late:
        # A kill of a job that had already done all its work tests no resume.
        return "injected", late
    return None


def after_the_work(history: FaultHistory, reference: Reference) -> str:
    """Why every kill of this experiment landed after the work was done (progress at its
    total), or "" when one landed before it (pure). Kills only: a memory or disk limit
    that bites while the job writes its final output is a real fault."""
    if history.kind not in LATE_KINDS:
        return ""
    kills = [a for a in history.attempts if a.fault in (FAULT_SIGKILL, FAULT_SIGTERM)]
    late = []
    for attempt in kills:
        total = attempt.total or reference.total
        if not total or attempt.fault_at_done is None or attempt.fault_at_done < total:
            return ""
        late.append(f"attempt {attempt.index} at progress {attempt.fault_at_done} of {total}")
    if not late:
        return ""
    return ("the fault landed after the work was done (" + ", ".join(late) + "): "
            "the job had published its total, so no resume was tested")


def _timing_only(history: FaultHistory, verdicts: list[CheckVerdict]) -> list[CheckVerdict]:
    """A liveness failure alone, under heavy host steal or with the harness frozen, describes
    the host: inconclusive."""
    failed = [v for v in verdicts if v.failed]
    steal, frozen = history.host_steal, history.host_frozen
    if [v.name for v in failed] != ["liveness"] or not hostrule.disturbed(steal, frozen):
        return verdicts
    if _left_behind(history):
        return verdicts  # escaped processes are the job's doing, whatever the host did
    detail = f"inconclusive: {failed[0].detail}, under {hostrule.taken_text(steal, frozen)}"
    return [CheckVerdict("liveness", SKIP, detail) if v.failed else v for v in verdicts]


def _all(
    history: FaultHistory, reference: Reference, restarts_max: int, sigterm: str
) -> list[CheckVerdict]:
    verdicts = [liveness(history)]
    if history.fault_exit:
        verdicts.append(fault_exit(history, reference, sigterm))
    refused = False
    if history.corruptions:
        corruption_verdict, refused = corruption(history, reference)
        verdicts.append(corruption_verdict)
    if refused:
        note = "the job refused the damaged file, an accepted outcome"
        verdicts += [CheckVerdict(name, SKIP, note) for name in ("completed", "valid", "exact")]
    else:
        verdicts += [
            completed(history, restarts_max, reference),
            valid(history),
            exact(history, reference),
        ]
    if history.corruptions:
        # A damaged checkpoint may force a restart from scratch; that is a repair, not loss.
        verdicts.append(CheckVerdict("lost_work", SKIP, "checkpoint damaged on purpose"))
    else:
        verdicts.append(lost_work(history, reference))
    return verdicts


def passed(verdicts: Sequence[CheckVerdict]) -> bool:
    return not any(v.failed for v in verdicts)


def liveness(history: FaultHistory) -> CheckVerdict:
    # A process left outside the group (setsid) would outlive the job in production too.
    hung = [a for a in history.attempts if a.timed_out]
    where = ", ".join(f"attempt {a.index} after {a.duration_s:.1f} s" for a in hung)
    problems = [f"ran past its time bound ({where}); group killed"] if hung else []
    for first in _left_behind(history)[:1]:
        problems.append(
            f"attempt {first.index} left {first.leftovers} process(es) running outside its "
            f"process group (killed; first: {first.leftover})"
        )
    if problems:
        return CheckVerdict("liveness", FAIL, "; ".join(problems))
    return CheckVerdict("liveness", PASS, f"{len(history.attempts)} attempt(s), all ended in bound")


def _left_behind(history: FaultHistory) -> list[Attempt]:
    return [a for a in history.attempts if a.leftovers]


def _planned_restarts(history: FaultHistory) -> int:
    return sum(1 for a in history.attempts if a.fault != FAULT_NONE)


def completed(
    history: FaultHistory, restarts_max: int, reference: Reference | None = None
) -> CheckVerdict:
    last = history.attempts[-1]
    restarts = len(history.attempts) - 1
    allowed = _planned_restarts(history) + restarts_max
    if last.rc != 0:
        why = "hung" if last.timed_out else f"exit {last.rc}"
        return CheckVerdict(
            "completed",
            FAIL,
            f"did not finish after {restarts} restart(s): last attempt {why}"
            + _after_fault(history)
            + cause(last.stderr_tail),
        )
    short = short_of_total(last, reference)
    if short is not None:
        return CheckVerdict(
            "completed",
            FAIL,
            f"exit 0 with progress {short[0]}/{short[1]}: it reported success without "
            "finishing the work",
        )
    if restarts > allowed:
        return CheckVerdict("completed", FAIL, f"needed {restarts} restarts, bound is {allowed}")
    return CheckVerdict(
        "completed", PASS, f"finished after {restarts} restart(s) (bound {allowed})"
    )


def valid(history: FaultHistory) -> CheckVerdict:
    if history.attempts[-1].rc != 0:
        return CheckVerdict("valid", SKIP, "not completed, nothing to verify")
    if history.verify_rc is None:
        return CheckVerdict("valid", SKIP, "no verify command in the workload spec")
    if history.verify_rc == 0:
        return CheckVerdict("valid", PASS, "verify exit 0")
    return CheckVerdict("valid", FAIL, f"verify exit {history.verify_rc}")


def exact(history: FaultHistory, reference: Reference) -> CheckVerdict:
    if history.attempts[-1].rc != 0:
        return CheckVerdict("exact", SKIP, "not completed, nothing to compare")
    if reference.fingerprint is None or history.fingerprint is None:
        return CheckVerdict("exact", SKIP, "no fingerprint (no command in the spec, or it failed)")
    if history.fingerprint == reference.fingerprint:
        return CheckVerdict("exact", PASS, f"fingerprint {_short(history.fingerprint)} = reference")
    control = history.control
    same = control is not None and control.fingerprint == history.fingerprint
    why = "; a kill-only resume from the same stop (no damage) gives it too" if same else ""
    return CheckVerdict(
        "exact",
        FAIL,
        f"fingerprint {_short(history.fingerprint)} != reference "
        f"{_short(reference.fingerprint)}{why}",
    )


def lost_work(history: FaultHistory, reference: Reference) -> CheckVerdict:
    losses = lost_work_per_fault(history)
    known = [(i, lost) for i, lost in losses if lost is not None]
    if not losses:
        return CheckVerdict("lost_work", SKIP, "no fault stopped the job")
    if not known:
        return CheckVerdict("lost_work", SKIP, "no resume published its starting progress")
    interval = reference.ckpt_interval
    text = ", ".join(f"attempt {i}: {lost}" for i, lost in known)
    if interval is None:
        return CheckVerdict("lost_work", SKIP, f"lost {text}; checkpoint interval unknown")
    if reference.total and interval >= reference.total:
        # A bound of the whole run cannot fail: no kill loses more than everything.
        return CheckVerdict(
            "lost_work",
            SKIP,
            f"inconclusive: lost {text}, but the bound (one interval = {interval}, "
            f"{reference.ckpt_interval_source or 'source unknown'}) is the whole run "
            f"(total {reference.total}): no loss could exceed it",
        )
    worst = max(lost for _, lost in known)
    status = PASS if worst <= interval else FAIL
    detail = f"lost {text} (bound: one interval = {interval})"
    if status == FAIL:
        detail += _worst_fault_file(history, known, worst)
    return CheckVerdict("lost_work", status, detail)


def _worst_fault_file(
    history: FaultHistory, known: list[tuple[int, int | None]], worst: int
) -> str:
    """ "; first file the fault hit: PATH" from the attempt that lost the most, when it
    names its files (a kill's file in write; a power cut's files, checkpoints first)."""
    index = next(i for i, lost in known if lost == worst)
    attempt = next((a for a in history.attempts if a.index == index), None)
    if attempt is None or not attempt.fault_path:
        return ""
    return f"; first file the fault hit: {attempt.fault_path.split(', ')[0]}"


def corruption(history: FaultHistory, reference: Reference) -> tuple[CheckVerdict, bool]:
    """The corruption verdict, and whether the outcome was an accepted refusal."""
    damaged = sorted({p for c in history.corruptions for p in c.paths})
    what = ", ".join(f"{c.kind} {'+'.join(c.paths)}" for c in history.corruptions)
    last = history.attempts[-1]
    if last.rc == 0:
        return _after_success(history, reference, what), False
    if last.rc is None or last.timed_out:
        return CheckVerdict("corruption", FAIL, f"hung after {what}"), False
    named = [p for p in damaged if _names_file(last.stderr_tail, p)]
    if named:
        detail = f"refused {what}: exit {last.rc} naming {', '.join(named)}"
        return CheckVerdict("corruption", PASS, detail), True
    return (
        CheckVerdict(
            "corruption",
            FAIL,
            f"exit {last.rc} after {what} without naming the file" + cause(last.stderr_tail),
        ),
        False,
    )


def _against_control(history: FaultHistory, what: str) -> CheckVerdict | None:
    """With a kill-only control from the same stop: the damage's own effect (or None)."""
    control, mine = history.control, history.fingerprint
    if control is None or control.fingerprint is None:
        return None
    if control.fingerprint == mine:
        return CheckVerdict(
            "corruption",
            PASS,
            f"accepted {what}: the result equals a kill-only resume from the same stop "
            f"({_short(control.fingerprint)}), so the damage changed nothing; the resume "
            "itself is inexact (see exact)",
        )
    return None


def _after_success(history: FaultHistory, reference: Reference, what: str) -> CheckVerdict:
    mine, theirs = history.fingerprint, reference.fingerprint
    if mine is not None and theirs is not None:
        if mine == theirs:
            return CheckVerdict("corruption", PASS, f"repaired {what}: fingerprint exact")
        controlled = _against_control(history, what)
        if controlled is not None:
            return controlled
        return CheckVerdict(
            "corruption",
            FAIL,
            f"SILENT CORRUPTION: finished after {what} with fingerprint {_short(mine)} "
            f"!= reference {_short(theirs)}",
            critical=True,
        )
    if history.verify_rc == 0:
        return CheckVerdict("corruption", PASS, f"accepted {what}; verify passes (no fingerprint)")
    if history.verify_rc is None:
        return CheckVerdict("corruption", SKIP, f"finished after {what}; nothing to compare")
    return CheckVerdict(
        "corruption", FAIL, f"finished after {what} but verify exit {history.verify_rc}"
    )


def _names_file(text: str, relpath: str) -> bool:
    return PurePath(relpath).name in text


def _short(digest: str) -> str:
    return digest[:12]


def _after_fault(history: FaultHistory) -> str:
    """ " after a kill while writing PATH" when the fault landed inside a write."""
    paths = [a.fault_path for a in history.attempts if a.fault_path]
    return f" after a kill while writing {paths[-1]}" if paths else ""
