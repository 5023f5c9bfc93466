"""What one experiment is made of beyond its faulted attempts — the prologue and epilogue
every fault kind shares: a fresh workspace, resuming until done, verify and fingerprint,
and the assembled history (with whether the fault was injected at all)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from preflight.check.drive.runner import DriveContext, run_attempt
from preflight.check.drive.schedule import FaultExperiment
from preflight.check.history import FAULT_NONE, Attempt, Corruption, FaultHistory
from preflight.durable.errors import EXIT_STOPPED
from preflight.workload import RunTimeoutError, run_aux

Execute = TypeVar("Execute", bound=Callable[..., FaultHistory])


def skippable(execute: Execute) -> Execute:
    """The prologue every kind's ``execute(ctx, exp, seed, ...)`` shares: a planned skip
    never starts the job and is recorded with its reason."""

    @functools.wraps(execute)
    def run(
        ctx: DriveContext, exp: FaultExperiment, seed: int, *args: object, **kw: object
    ) -> FaultHistory:
        if "skip" in exp.schedule:
            return skipped_history(exp, seed)
        return execute(ctx, exp, seed, *args, **kw)

    return run  # type: ignore[return-value]


@dataclass(frozen=True)
class Workspace:
    """One experiment's scratch: its base folder, the job's workdir and the logs."""

    base: Path
    workdir: Path
    logs: Path
    started_s: float

    @staticmethod
    def open(ctx: DriveContext, exp: FaultExperiment) -> Workspace:
        base = ctx.exp_dir(exp.id)
        return Workspace(base, base / "work", base / "logs", time.monotonic())


@dataclass(frozen=True)
class Injected:
    """Whether the planned fault really happened, and how (or why not)."""

    done: bool
    detail: str = ""


def resume_until_done(
    ctx: DriveContext,
    workdir: Path,
    attempts: list[Attempt],
    *,
    stop_on_failure: bool = False,
    log_dir: Path | None = None,
) -> list[Attempt]:
    """Resume after the faults until exit 0, at most 1 + restarts_max times. A hang ends
    the sequence (the liveness verdict fails); ``stop_on_failure`` ends it at the first
    error exit (a refusal is deterministic: retrying it proves nothing)."""
    for _ in range(1 + ctx.bounds.restarts_max):
        if attempts and attempts[-1].rc == 0:
            break
        if attempts and attempts[-1].timed_out:
            break
        outcome = run_attempt(ctx, workdir, len(attempts), resume=True, log_dir=log_dir)
        attempts.append(outcome.attempt)
        rc = outcome.attempt.rc
        if stop_on_failure and rc not in (0, EXIT_STOPPED):
            break
    return attempts


@dataclass(frozen=True)
class Finish:
    verify_rc: int | None
    fingerprint: str | None
    notes: tuple[str, ...] = ()


def finish(ctx: DriveContext, workdir: Path) -> Finish:
    """Run verify and fingerprint on a completed workdir, side by side (both only read the
    workdir; each is a fresh interpreter whose start-up, e.g. importing torch, dominates),
    each bounded by its own timeout."""
    with ThreadPoolExecutor(2, thread_name_prefix="preflight-finish") as pool:
        verify = pool.submit(_verify, ctx, workdir)
        fingerprint = pool.submit(_fingerprint, ctx, workdir)
        verify_rc, verify_notes = verify.result()
        value, fingerprint_notes = fingerprint.result()
    return Finish(verify_rc, value, (*verify_notes, *fingerprint_notes))


def _verify(ctx: DriveContext, workdir: Path) -> tuple[int | None, list[str]]:
    if ctx.spec.verify is None:
        return None, []
    params = ctx.run_params(workdir)
    try:
        done = run_aux(ctx.spec, ctx.spec.verify, params, ctx.bounds.aux_timeout_s, key="verify")
    except RunTimeoutError as exc:
        return -1, [str(exc)]
    notes = [f"verify: {done.stderr.strip()[-300:]}"] if done.returncode != 0 else []
    return done.returncode, notes


def _fingerprint(ctx: DriveContext, workdir: Path) -> tuple[str | None, list[str]]:
    if ctx.spec.fingerprint is None:
        return None, []
    params = ctx.run_params(workdir)
    try:
        done = run_aux(
            ctx.spec, ctx.spec.fingerprint, params, ctx.bounds.aux_timeout_s, key="fingerprint"
        )
    except RunTimeoutError as exc:
        return None, [str(exc)]
    if done.returncode == 0:
        return done.stdout.strip(), []
    said = done.stderr.strip()[-300:] or "(no stderr)"
    return None, [f"fingerprint {done.args!r} exit {done.returncode}: {said}"]


def recover_s(attempts: list[Attempt]) -> float | None:
    """Seconds from the last fault to the successful exit (the resumed attempts' time)."""
    faulted = [a.index for a in attempts if a.fault != FAULT_NONE]
    if not faulted or not attempts or attempts[-1].rc != 0:
        return None
    return round(sum(a.duration_s for a in attempts if a.index > faulted[-1]), 3)


def build_history(
    ctx: DriveContext,
    exp: FaultExperiment,
    seed: int,
    workdir: Path,
    attempts: list[Attempt],
    notes: list[str],
    started_s: float,
    *,
    corruptions: tuple[Corruption, ...] = (),
    injected: Injected | None = None,
) -> FaultHistory:
    """Finish (verify, fingerprint) a completed workdir and assemble the history."""
    done = finish(ctx, workdir) if attempts and attempts[-1].rc == 0 else None
    injected = injected if injected is not None else injected_by_attempts(attempts)
    return FaultHistory(
        experiment_id=exp.id,
        kind=exp.kind,
        seed=seed,
        schedule=exp.schedule,
        attempts=tuple(attempts),
        corruptions=corruptions,
        verify_rc=done.verify_rc if done else None,
        fingerprint=done.fingerprint if done else None,
        notes=tuple(n for n in notes if n) + (done.notes if done else ()),
        fault_exit=str(exp.schedule.get("fault_exit", "")),
        duration_s=round(time.monotonic() - started_s, 3),
        recover_s=recover_s(attempts),
        injected=injected.done,
        injected_detail=injected.detail,
        host_frozen=ctx.host_frozen(),
    )


def skipped_history(
    exp: FaultExperiment, seed: int, reason: str = "", *, host_frozen: float | None = None
) -> FaultHistory:
    """An experiment that could not run: a note with its reason, never a failure."""
    why = reason or str(exp.schedule.get("skip", "skipped"))
    return FaultHistory(exp.id, exp.kind, seed, exp.schedule, skipped=why, host_frozen=host_frozen)


def injected_by_attempts(attempts: list[Attempt]) -> Injected:
    """The default reading: a fault was injected when some attempt records one."""
    faulted = [a for a in attempts if a.fault != FAULT_NONE]
    if not faulted:
        return Injected(False, "no attempt was faulted: the job ended before the fault")
    return Injected(True, "; ".join(f"attempt {a.index}: {a.armed or a.fault}" for a in faulted))


def conclude(
    ctx: DriveContext,
    exp: FaultExperiment,
    seed: int,
    space: Workspace,
    attempts: list[Attempt],
    notes: list[str],
    *,
    injected: Injected | None = None,
    resume: bool = True,
    stop_on_failure: bool = False,
    corruptions: tuple[Corruption, ...] = (),
    workdir: Path | None = None,
) -> FaultHistory:
    """The shared epilogue: resume until done (unless told not to), then the history."""
    where = workdir or space.workdir
    if resume:
        resume_until_done(ctx, where, attempts, stop_on_failure=stop_on_failure, log_dir=space.logs)
    return build_history(
        ctx,
        exp,
        seed,
        where,
        attempts,
        notes,
        space.started_s,
        corruptions=corruptions,
        injected=injected,
    )
