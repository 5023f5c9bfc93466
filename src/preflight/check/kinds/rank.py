"""Kill one rank: SIGKILL one worker of an elastic launcher (torchrun) and let it recover.

Only for specs that name a ``launcher`` (e.g. ``torchrun --max-restarts R``); other jobs get
a note (a skipped experiment), never a failure. The launcher, not the harness, must notice
the dead rank, restart the group, and the job must resume from its last committed
checkpoint. The one launcher lifetime is recorded as two attempts, one per incarnation of
the group: the killed one (its progress at the kill) and the restarted one (the progress it
resumed from, its exit), so the usual verdicts apply: completed, valid, exact, lost work per
kill <= one checkpoint interval. ``recover_s`` is the recovery time: from the kill to the
first new progress the restarted group publishes past its resume point.

A rank is a process in the launcher's tree whose environment has RANK while its parent's
does not (the rank's own helpers, e.g. datagen's pool workers, inherit RANK).
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import psutil

from preflight.check.drive.runner import (
    POLL_S,
    SAMPLE_INTERVAL_S,
    STDERR_TAIL_CHARS,
    WINDOW_POLL_S,
    DriveContext,
    job_env,
)
from preflight.check.drive.schedule import FaultExperiment, published_target, stream
from preflight.check.drive.sequence import Injected, Workspace, conclude, skippable
from preflight.check.drive.watch import ProgressProbe, leftover_fields
from preflight.check.history import FAULT_NONE, FAULT_SIGKILL, Attempt, FaultHistory, Reference
from preflight.check.kind import FaultKind, InjectContext, PlanContext
from preflight.workload import Run

ENV_RANK = "RANK"
NO_LAUNCHER = "the spec names no launcher (e.g. torchrun): there is no rank to kill"
KILL_FRACTION_LOW, KILL_FRACTION_HIGH = 0.25, 0.6
TIME_FRACTION_LOW, TIME_FRACTION_HIGH = 0.3, 0.6
TREE_MEMBERS_MAX = 10_000
REAP_TIMEOUT_S = 10.0


def plan(reference: Reference, seed: int, has_launcher: bool) -> list[FaultExperiment]:
    """One kill of one rank, at a seeded progress value (or time), of a seeded rank."""
    if not has_launcher:
        return [FaultExperiment("kill-rank", "rank", {"skip": NO_LAUNCHER})]
    rng = stream(seed, "kill-rank")
    schedule: dict[str, object] = {"rank_pick": round(rng.random(), 6)}
    if reference.total:
        schedule["at_done"] = published_target(
            rng, reference, KILL_FRACTION_LOW, KILL_FRACTION_HIGH
        )
    else:
        fraction = rng.uniform(TIME_FRACTION_LOW, TIME_FRACTION_HIGH)
        schedule["at_s"] = round(fraction * reference.duration_s, 3)
    return [FaultExperiment("kill-rank", "rank", schedule)]


# ---- pure pieces ---------------------------------------------------------------------------


def pick_rank(ranks: dict[int, int], pick: float) -> tuple[int, int]:
    """(rank, pid) chosen by ``pick`` in [0, 1) among the ranks, in rank order (pure)."""
    assert ranks, "no ranks to pick from"
    ordered = sorted(ranks.items())
    index = min(len(ordered) - 1, int(pick * len(ordered)))
    return ordered[index]


def is_rank(env: dict[str, str], parent_env: dict[str, str] | None) -> bool:
    """A rank's top process: RANK set for it but not for its parent (pure)."""
    return ENV_RANK in env and (parent_env is None or ENV_RANK not in parent_env)


# ---- observing the launcher's tree ---------------------------------------------------------


def _environ(proc: psutil.Process) -> dict[str, str] | None:
    try:
        return proc.environ()
    except psutil.Error:
        return None


def find_ranks(launcher_pid: int) -> dict[int, int]:
    """{rank: pid} of the live rank processes under the launcher (empty when none yet)."""
    try:
        tree = psutil.Process(launcher_pid).children(recursive=True)[:TREE_MEMBERS_MAX]
    except psutil.Error:
        return {}
    envs = {proc.pid: _environ(proc) for proc in tree}
    ranks: dict[int, int] = {}
    for proc in tree:
        env = envs.get(proc.pid)
        if env is None:
            continue
        try:
            parent_pid = proc.ppid()
        except psutil.Error:
            continue
        parent_env = envs.get(parent_pid) if parent_pid in envs else None
        if is_rank(env, parent_env):
            try:
                ranks[int(env[ENV_RANK])] = proc.pid
            except ValueError:
                continue
    return ranks


@dataclass
class _RankObserved:
    """What one launcher lifetime showed, in monotonic seconds since the start."""

    start_done: int | None = None
    last_done: int | None = None
    total: int | None = None
    kill_s: float | None = None
    kill_done: int | None = None
    killed: tuple[int, int] | None = None  # (rank, pid)
    before_pids: frozenset[int] = frozenset()
    restart_s: float | None = None  # a new rank process appeared
    resume_done: int | None = None  # first progress the restarted group published
    resume_s: float | None = None  # when that was seen
    first_step_s: float | None = None  # first progress past the resume point
    notes: list[str] = field(default_factory=list)

    def see(self, progress: tuple[int, int] | None) -> None:
        if progress is None:
            return
        done, total = progress
        if self.start_done is None:
            self.start_done = done
        self.last_done = done
        self.total = total or self.total


def _kill_due(schedule: dict[str, object], elapsed_s: float, seen: _RankObserved) -> bool:
    at_done, at_s = schedule.get("at_done"), schedule.get("at_s")
    if isinstance(at_done, int):
        return seen.last_done is not None and seen.last_done >= at_done
    return isinstance(at_s, int | float) and elapsed_s >= at_s


def _try_kill(run: Run, schedule: dict[str, object], seen: _RankObserved, elapsed_s: float) -> None:
    ranks = find_ranks(run.pid)
    if not ranks:
        return  # the group is (re)starting; try again at the next poll
    pick = schedule.get("rank_pick", 0.0)
    rank, pid = pick_rank(ranks, float(pick) if isinstance(pick, int | float) else 0.0)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    seen.kill_s, seen.kill_done, seen.killed = elapsed_s, seen.last_done, (rank, pid)
    seen.before_pids = frozenset(ranks.values())


class _Progress:
    """Progress published after a point in time: a value counts once the file changed."""

    def __init__(self, run: Run, path: Path | None) -> None:
        self.probe = ProgressProbe(run, path)

    def rebase(self) -> None:
        self.probe = ProgressProbe(self.probe.run, self.probe.path)

    def read(self) -> tuple[int, int] | None:
        return self.probe.read()


def _after_kill(run: Run, progress: _Progress, seen: _RankObserved, elapsed_s: float) -> None:
    """Follow the restart: new rank processes, then the resume point, then a new step."""
    if seen.restart_s is None:
        ranks = find_ranks(run.pid)
        if ranks and not set(ranks.values()) & seen.before_pids:
            seen.restart_s = elapsed_s
            progress.rebase()  # what the killed group wrote last is not the resume point
        return
    value = progress.read()
    if value is None:
        return
    seen.see(value)
    done = value[0]
    if seen.resume_done is None:
        seen.resume_done, seen.resume_s = done, elapsed_s
    elif done > seen.resume_done and seen.first_step_s is None:
        seen.first_step_s = elapsed_s


def _drive(
    ctx: DriveContext, run: Run, schedule: dict[str, object]
) -> tuple[_RankObserved, int | None]:
    """Poll the launcher until it exits (bounded); kill one rank when due."""
    seen = _RankObserved()
    progress = _Progress(run, ctx.spec.progress_path(run.params))
    started_s = time.monotonic()
    deadline_s = started_s + ctx.bounds.attempt_timeout_s
    while time.monotonic() < deadline_s:  # bounded by the attempt's time limit
        rc = run.poll()
        elapsed_s = time.monotonic() - started_s
        if seen.kill_s is None:
            seen.see(progress.read())
            if rc is None and _kill_due(schedule, elapsed_s, seen):
                _try_kill(run, schedule, seen, elapsed_s)
        else:
            _after_kill(run, progress, seen, elapsed_s)
        if rc is not None:
            return seen, rc
        # Finely while the restarted group's first progress is due: it may come and go fast.
        fine = seen.kill_s is not None and seen.first_step_s is None
        time.sleep(WINDOW_POLL_S if fine else POLL_S)
    rc = run.wait(0.001)  # past the bound: marks it timed out and kills the group
    return seen, None if run.timed_out else rc


def _attempts(seen: _RankObserved, run: Run, rc: int | None, stderr_tail: str) -> list[Attempt]:
    """One attempt per incarnation of the group (see the module docstring)."""
    total_s = round(run.duration_s, 3)
    if seen.killed is None or seen.kill_s is None:
        return [
            Attempt(
                0,
                False,
                start_done=seen.start_done,
                last_done=seen.last_done,
                rc=rc,
                timed_out=run.timed_out,
                duration_s=total_s,
                stderr_tail=stderr_tail,
            )
        ]
    rank, pid = seen.killed
    killed = Attempt(
        0,
        False,
        fault=FAULT_SIGKILL,
        armed=f"SIGKILL rank {rank} (pid {pid}) at progress {seen.kill_done}",
        start_done=seen.start_done,
        last_done=seen.kill_done,
        fault_at_done=seen.kill_done,
        rc=None if seen.restart_s is not None else rc,
        timed_out=run.timed_out and seen.restart_s is None,
        duration_s=round(seen.kill_s, 3),
        stderr_tail="" if seen.restart_s is not None else stderr_tail,
    )
    if seen.restart_s is None:
        return [killed]
    restarted = Attempt(
        1,
        True,
        fault=FAULT_NONE,
        start_done=seen.resume_done,
        last_done=seen.last_done,
        rc=rc,
        timed_out=run.timed_out,
        duration_s=round(max(0.0, total_s - seen.restart_s), 3),
        stderr_tail=stderr_tail,
    )
    return [killed, restarted]


@skippable
def execute(ctx: DriveContext, exp: FaultExperiment, seed: int) -> FaultHistory:
    """One launcher lifetime with one rank killed; the launcher must restart the group."""
    space = Workspace.open(ctx, exp)
    run = Run(
        ctx.spec,
        space.workdir,
        ctx.params,
        env=job_env(),
        sample_interval_s=SAMPLE_INTERVAL_S,
        log_dir=space.logs,
    )
    with run:  # on the way out the whole group is killed, always
        seen, rc = _drive(ctx, run, exp.schedule)
        stderr_tail = run.stderr_text()[-STDERR_TAIL_CHARS:]
    attempts = _attempts(seen, run, rc, stderr_tail)
    # One group for both incarnations: what it left behind is found when the last one ends.
    attempts[-1] = replace(attempts[-1], **leftover_fields(run))
    notes = _notes(seen, rc)
    if seen.killed is None:
        injected = Injected(False, notes[0])
    else:
        injected = Injected(True, attempts[0].armed)
    # The launcher restarts the group itself: the harness never resumes a rank kill.
    history = conclude(ctx, exp, seed, space, attempts, notes, injected=injected, resume=False)
    # recover_s of a rank kill is its recovery time: from the kill to the first new step.
    return replace(history, recover_s=recovery_time_s(seen))


def recovery_time_s(seen: _RankObserved) -> float | None:
    """From the kill to the first new step (pure). A restarted group can resume and do the
    rest of the work between two polls of a loaded machine; its first value seen is then
    already past the killed group's last one, and when it was seen bounds the recovery."""
    if seen.kill_s is None:
        return None
    first_step_s = seen.first_step_s
    if first_step_s is None and _resumed_past_the_kill(seen):
        first_step_s = seen.resume_s
    return None if first_step_s is None else round(first_step_s - seen.kill_s, 3)


def _resumed_past_the_kill(seen: _RankObserved) -> bool:
    return (
        seen.resume_done is not None
        and seen.kill_done is not None
        and seen.resume_done > seen.kill_done
    )


def _notes(seen: _RankObserved, rc: int | None) -> list[str]:
    if seen.killed is None:
        return ["the job ended before a rank could be killed (or no rank process was seen)"]
    rank, _ = seen.killed
    if seen.restart_s is None:
        return [f"killed rank {rank}; the launcher did not restart the group (exit {rc})"]
    assert seen.kill_s is not None
    text = f"killed rank {rank}; group restarted after {seen.restart_s - seen.kill_s:.2f} s"
    if seen.first_step_s is not None:
        text += f", first new step {seen.first_step_s - seen.kill_s:.2f} s after the kill"
    elif _resumed_past_the_kill(seen) and seen.resume_s is not None:
        text += (
            f", first progress seen {seen.resume_s - seen.kill_s:.2f} s after the kill was "
            f"already past the killed group's {seen.kill_done} (at {seen.resume_done})"
        )
    return [text]


class Rank(FaultKind):
    name = "rank"

    def plan(self, ctx: PlanContext) -> list[FaultExperiment]:
        return plan(ctx.reference, ctx.seed, bool(ctx.spec.launcher))

    def inject(self, ctx: InjectContext, experiment: FaultExperiment) -> FaultHistory:
        return execute(ctx.run, experiment, ctx.seed)


KIND = Rank()
