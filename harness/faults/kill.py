"""Kills: SIGKILL at a seeded time, at a progress value, in storms, inside a checkpoint
write, and SIGTERM as preemption. Works on any job: it needs no fault points, only the
process group and what the job publishes (progress, checkpoint files).
"""

from __future__ import annotations

import signal
import time

from harness.faults.history import Attempt, History, Reference
from harness.faults.runner import (
    Context,
    Trigger,
    build_history,
    resume_until_done,
    run_attempt,
    skipped_history,
)
from harness.faults.schedule import Experiment, progress_target, stream

STORM_KILLS = 3
WINDOW_NTH_MAX = 3
TIME_FRACTION_LOW, TIME_FRACTION_HIGH = 0.15, 0.85


def plan(reference: Reference, seed: int, checkpoint_globs: int) -> list[Experiment]:
    """The kill battery for one seed: each schedule drawn from its own stream."""
    exps = [_at_time(reference, seed)]
    if reference.total:
        exps.append(_at_progress(reference, seed))
    exps.append(_storm(reference, seed))
    exps += [_in_write(reference, seed, i) for i in range(checkpoint_globs)]
    if not checkpoint_globs:
        exps.append(Experiment("kill-write", "kill", {"skip": "the spec names no checkpoints"}))
    exps.append(_preempt(reference, seed))
    return exps


def _time_s(rng_fraction: float, reference: Reference) -> float:
    return round(rng_fraction * reference.duration_s, 3)


def _at_time(reference: Reference, seed: int) -> Experiment:
    rng = stream(seed, "kill-time")
    at_s = _time_s(rng.uniform(TIME_FRACTION_LOW, TIME_FRACTION_HIGH), reference)
    return Experiment("kill-time", "kill", {"triggers": [{"sig": "SIGKILL", "at_s": at_s}]})


def _at_progress(reference: Reference, seed: int) -> Experiment:
    assert reference.total
    rng = stream(seed, "kill-progress")
    done = progress_target(rng, reference.total, 0.2, 0.8)
    return Experiment("kill-progress", "kill", {"triggers": [{"sig": "SIGKILL", "at_done": done}]})


def _storm(reference: Reference, seed: int) -> Experiment:
    """N kills, each in a resumed attempt; by progress when the job publishes a total."""
    rng = stream(seed, "kill-storm")
    triggers: list[dict[str, object]] = []
    if reference.total and reference.total > STORM_KILLS:
        dones = sorted(progress_target(rng, reference.total, 0.1, 0.9) for _ in range(STORM_KILLS))
        triggers = [{"sig": "SIGKILL", "at_done": d} for d in dones]
    else:
        # Without progress, kill each attempt early in its own run: resumes are shorter.
        triggers = [
            {"sig": "SIGKILL", "at_s": _time_s(rng.uniform(0.1, 0.5), reference)}
            for _ in range(STORM_KILLS)
        ]
    return Experiment("kill-storm", "kill", {"triggers": triggers})


def _in_write(reference: Reference, seed: int, glob_index: int) -> Experiment:
    """Kill inside the nth write of the files one checkpoints glob names (or temps of them),
    so each kind of checkpoint file (state, shards) gets its own write-window kill. n is
    drawn among the windows the reference run let the harness see (1 when it saw none:
    polling can miss short writes, so the experiment still tries)."""
    experiment_id = f"kill-write-{glob_index}"
    seen = reference.write_windows[glob_index] if glob_index < len(reference.write_windows) else 0
    nth = stream(seed, experiment_id).randint(1, max(1, min(WINDOW_NTH_MAX, seen)))
    trigger = {"sig": "SIGKILL", "nth_window": nth, "window_glob": glob_index}
    return Experiment(experiment_id, "kill", {"triggers": [trigger]})


def _preempt(reference: Reference, seed: int) -> Experiment:
    rng = stream(seed, "kill-sigterm")
    if reference.total:
        trigger: dict[str, object] = {
            "sig": "SIGTERM",
            "at_done": progress_target(rng, reference.total, 0.2, 0.8),
        }
    else:
        trigger = {"sig": "SIGTERM", "at_s": _time_s(rng.uniform(0.2, 0.8), reference)}
    return Experiment("kill-sigterm", "kill", {"triggers": [trigger], "fault_exit": "preempt"})


def trigger_from(raw: dict[str, object]) -> Trigger:
    sig = signal.Signals[str(raw["sig"])]
    at_s = raw.get("at_s")
    at_done = raw.get("at_done")
    nth = raw.get("nth_window")
    window_glob = raw.get("window_glob")
    return Trigger(
        sig=sig,
        at_s=float(at_s) if isinstance(at_s, int | float) else None,
        at_done=int(at_done) if isinstance(at_done, int) else None,
        nth_window=int(nth) if isinstance(nth, int) else None,
        window_glob=int(window_glob) if isinstance(window_glob, int) else None,
    )


def execute(ctx: Context, exp: Experiment, seed: int) -> History:
    """Run the faulted attempts in order, resume until done, and record the history."""
    if "skip" in exp.schedule:
        return skipped_history(exp, seed)
    started_s = time.monotonic()
    base = ctx.exp_dir(exp.id)
    workdir, logs = base / "work", base / "logs"
    attempts: list[Attempt] = []
    notes: list[str] = []
    for raw in exp.schedule["triggers"]:
        if attempts and attempts[-1].rc == 0:
            notes.append("the job finished before every planned fault fired")
            break
        outcome = run_attempt(
            ctx,
            workdir,
            len(attempts),
            resume=bool(attempts),
            trigger=trigger_from(raw),
            log_dir=logs,
        )
        attempts.append(outcome.attempt)
        notes += [outcome.note] if outcome.note else []
        if outcome.attempt.timed_out:
            break
    resume_until_done(ctx, workdir, attempts, log_dir=logs)
    return build_history(ctx, exp, seed, workdir, attempts, notes, started_s)
