"""Power loss: cut the power at a durability boundary, lose what was never made durable.

A SIGKILL keeps the page cache; a power cut does not. Each experiment runs the job under
strace (trace mode, `preflight.check.kinds.powerloss.trace`), stops it at the entry of one of the
fsync/fdatasync/rename calls it makes under its work dir (a seeded sample of those a
traced census run saw), rebuilds the work dir as the cut leaves it (`durable_state`, one
of three modes: drop, keep-names, torn; docs/powerloss.md), then resumes it and is judged
with kill's verdicts. Two more experiments cut the power right after the job's clean exit:
a finished job must stay finished. The notes of each experiment name every file the cut
took or changed.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from preflight.check.drive.runner import DriveContext, run_attempt
from preflight.check.drive.schedule import FaultExperiment, stream
from preflight.check.drive.sequence import Injected, Workspace, conclude, skipped_history
from preflight.check.drive.watch import is_checkpoint_write
from preflight.check.history import FAULT_SIGKILL, Attempt, FaultHistory, Reference
from preflight.check.kind import FaultKind, InjectContext, PlanContext
from preflight.check.kinds.powerloss import trace as trace
from preflight.check.kinds.powerloss.durable_state import MODES

NAME = "powerloss"
POINTS_MAX = 6  # crash points per seed; with the 2 after-exit cuts, 8 experiments
EXIT_MODES = ("drop", "keep-names")
ARMED_FILES_MAX = 4
NO_POINTS = "the job made no fsync, fdatasync or rename under its work dir (traced census)"


def plan(reference: Reference, seed: int) -> list[FaultExperiment]:
    """POINTS_MAX crash points, one per equal slice of the job's durability calls (the
    position inside each slice drawn by the seed), each with a mode so that every mode
    gets two; then a cut after the clean exit in the drop and keep-names modes."""
    if reference.rc != 0:
        return [FaultExperiment("powerloss", NAME, {"skip": "the reference run failed"})]
    rng = stream(seed, NAME)
    modes = [MODES[i % len(MODES)] for i in range(POINTS_MAX)]
    rng.shuffle(modes)
    exps = []
    for i, mode in enumerate(modes):
        fraction = round((i + rng.random()) / POINTS_MAX, 4)
        exps.append(FaultExperiment(f"powerloss-{i}-{mode}", NAME, {"at": fraction, "mode": mode}))
    exps += [
        FaultExperiment(f"powerloss-exit-{m}", NAME, {"at": "exit", "mode": m}) for m in EXIT_MODES
    ]
    return exps


def crash_point(ctx: DriveContext, at: object) -> tuple[trace.Point | None, str]:
    """((syscall, n), where) for a planned fraction of the census's crash points; None
    for a cut after the exit. A census with no points raises LookupError."""
    if at == "exit":
        return None, "after the job's exit"
    assert isinstance(at, float) and 0.0 <= at < 1.0, at
    events = checkpoint_first(ctx, trace.census(ctx).events)
    if not events:
        raise LookupError(NO_POINTS)
    name, n, path = events[min(len(events) - 1, int(at * len(events)))]
    return (name, n), f"before {name} {path} (its thread's {name} #{n})"


def checkpoint_first(
    ctx: DriveContext, events: tuple[tuple[str, int, str], ...]
) -> tuple[tuple[str, int, str], ...]:
    """The crash points on checkpoint files (or their temps) when there are any: a job's
    advisory files (progress, logs) are renamed far more often and would crowd them out."""
    root = Path("/census")
    globs = ctx.spec.checkpoint_globs(ctx.run_params(root))
    chosen = tuple(e for e in events if is_checkpoint_write(str(root / e[2]), globs))
    return chosen or events


def execute(ctx: DriveContext, exp: FaultExperiment, seed: int) -> FaultHistory:
    """Run to the crash point under strace, cut the power, resume until done, record."""
    if "skip" in exp.schedule:
        return skipped_history(exp, seed, host_frozen=ctx.host_frozen())
    reason = trace.unavailable()
    if reason:
        return skipped_history(exp, seed, reason, host_frozen=ctx.host_frozen())
    try:
        point, where = crash_point(ctx, exp.schedule["at"])
    except LookupError as exc:
        return skipped_history(exp, seed, str(exc), host_frozen=ctx.host_frozen())
    space = Workspace.open(ctx, exp)
    space.logs.mkdir(parents=True)
    space.workdir.mkdir()
    before = trace.read_tree(space.workdir)
    trace_path = space.logs / "attempt-0.strace"
    traced = trace.run_traced(
        ctx, space.workdir, 0, point=point, trace_path=trace_path, log_dir=space.logs
    )
    if traced.attempt.timed_out:
        never = Injected(False, f"the job hung before {where}")
        return conclude(ctx, exp, seed, space, [traced.attempt], [], injected=never, resume=False)
    notes: list[str] = []
    if point is not None and not traced.crashed:
        notes.append(f"the job ended before {where}; the power was cut after it ended")
        where = "after the job's exit"
    mode = str(exp.schedule["mode"])
    state = trace.cut_power(
        space.workdir, before, trace_path, ctx.spec.spec_dir, mode, f"{seed}:{exp.id}"
    )
    globs = ctx.spec.checkpoint_globs(ctx.run_params(space.workdir))
    first = [
        f
        for f in state.findings
        if is_checkpoint_write(str(space.workdir / f.split(": ", 1)[0]), globs)
    ]
    ordered = first + [f for f in state.findings if f not in first]
    attempts = [_record(traced.attempt, mode, where, ordered)]
    notes += [f"power cut ({mode}) {where}"] + [f"lost by the cut: {f}" for f in state.findings]
    if attempts[0].rc == 0:
        # It had finished: a finished job must still be finished (or redo it) after a cut.
        attempts.append(run_attempt(ctx, space.workdir, 1, resume=True, log_dir=space.logs).attempt)
    cut = Injected(True, attempts[0].armed)
    return conclude(ctx, exp, seed, space, attempts, notes, injected=cut)


def _record(attempt: Attempt, mode: str, where: str, findings: list[str]) -> Attempt:
    """The attempt as the checker sees a kill; ``fault_path`` and the description name the
    files the cut took, so a failing verdict names them."""
    files = [f.split(": ", 1)[0] for f in findings if ": " in f and not f.startswith("...")]
    took = f"; took {', '.join(files[:ARMED_FILES_MAX])}" if files else "; took nothing"
    return replace(
        attempt,
        fault=FAULT_SIGKILL,
        armed=f"power cut ({mode}) {where}{took}",
        fault_path=", ".join(files[:ARMED_FILES_MAX]),
    )


class PowerLoss(FaultKind):
    """The FaultKind (preflight.check.kind) the registry registers as ``KIND``."""

    name = NAME

    def plan(self, ctx: PlanContext) -> list[FaultExperiment]:
        return plan(ctx.reference, ctx.seed)

    def inject(self, ctx: InjectContext, experiment: FaultExperiment) -> FaultHistory:
        return execute(ctx.run, experiment, ctx.seed)


KIND = PowerLoss()
