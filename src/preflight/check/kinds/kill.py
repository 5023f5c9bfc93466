"""Kills: SIGKILL at a seeded point, in storms, inside a checkpoint write, and SIGTERM as
preemption. Works on any job: it needs no fault points, only the process group and what
the job publishes (progress, checkpoint files).

Kills are planned on progress (units done) whenever the job publishes a total: a time
fraction of the reference run lands elsewhere on a machine loaded differently (before the
first checkpoint, say). Only a job without published progress is killed at a time.
A write-window kill draws its window among all the reference run saw (every window is
reachable), and counts as injected only when the kill landed inside a write.
"""

from __future__ import annotations

import signal

from preflight.check.drive.runner import DriveContext, Trigger, run_attempt
from preflight.check.drive.schedule import FaultExperiment, published_target, stream
from preflight.check.drive.sequence import Injected, Workspace, conclude, skippable
from preflight.check.history import Attempt, FaultHistory, Reference
from preflight.check.kind import FaultKind, InjectContext, PlanContext

STORM_KILLS = 3
TIME_FRACTION_LOW, TIME_FRACTION_HIGH = 0.15, 0.85


def plan(reference: Reference, seed: int, checkpoint_globs: int) -> list[FaultExperiment]:
    """The kill battery for one seed: each schedule drawn from its own stream."""
    exps = [_at_time(reference, seed)]
    if reference.total:
        exps.append(_at_progress(reference, seed))
    exps.append(_storm(reference, seed))
    exps += [_in_write(reference, seed, i) for i in range(checkpoint_globs)]
    if not checkpoint_globs:
        exps.append(
            FaultExperiment("kill-write", "kill", {"skip": "the spec names no checkpoints"})
        )
    exps.append(_preempt(reference, seed))
    return exps


def _time_s(rng_fraction: float, reference: Reference) -> float:
    return round(rng_fraction * reference.duration_s, 3)


def past_first_checkpoint(reference: Reference, low: float, high: float) -> tuple[float, float]:
    """The fraction range [low, high] of the work, moved past the first checkpoint when
    the interval is known and leaves room (a kill before it only tests a fresh start)."""
    assert reference.total
    interval = reference.ckpt_interval or 0
    first = (interval + 1) / reference.total
    if first >= high:
        return low, high
    return max(low, first), high


def _at_time(reference: Reference, seed: int) -> FaultExperiment:
    """SIGKILL at a seeded point of the run: on progress when published, else a time."""
    rng = stream(seed, "kill-time")
    if reference.total:
        low, high = past_first_checkpoint(reference, TIME_FRACTION_LOW, TIME_FRACTION_HIGH)
        trigger: dict[str, object] = {
            "sig": "SIGKILL",
            "at_done": published_target(rng, reference, low, high),
        }
    else:
        fraction = rng.uniform(TIME_FRACTION_LOW, TIME_FRACTION_HIGH)
        trigger = {"sig": "SIGKILL", "at_s": _time_s(fraction, reference)}
    return FaultExperiment("kill-time", "kill", {"triggers": [trigger]})


def _at_progress(reference: Reference, seed: int) -> FaultExperiment:
    assert reference.total
    rng = stream(seed, "kill-progress")
    low, high = past_first_checkpoint(reference, 0.2, 0.8)
    done = published_target(rng, reference, low, high)
    return FaultExperiment(
        "kill-progress", "kill", {"triggers": [{"sig": "SIGKILL", "at_done": done}]}
    )


def _storm(reference: Reference, seed: int) -> FaultExperiment:
    """N kills, each in a resumed attempt; by progress when the job publishes a total."""
    rng = stream(seed, "kill-storm")
    triggers: list[dict[str, object]] = []
    if reference.total and reference.total > STORM_KILLS:
        dones = sorted(published_target(rng, reference, 0.1, 0.9) for _ in range(STORM_KILLS))
        triggers = [{"sig": "SIGKILL", "at_done": d} for d in dones]
    else:
        # Without progress, kill each attempt early in its own run: resumes are shorter.
        triggers = [
            {"sig": "SIGKILL", "at_s": _time_s(rng.uniform(0.1, 0.5), reference)}
            for _ in range(STORM_KILLS)
        ]
    return FaultExperiment("kill-storm", "kill", {"triggers": triggers})


def _in_write(reference: Reference, seed: int, glob_index: int) -> FaultExperiment:
    """Kill inside the nth write of the files one checkpoints glob names (or of temp files
    renamed onto them), so each kind of checkpoint file gets its own write-window kill. n is
    drawn among every window the reference run saw (1 when it saw none)."""
    experiment_id = f"kill-write-{glob_index}"
    seen = reference.write_windows[glob_index] if glob_index < len(reference.write_windows) else 0
    nth = stream(seed, experiment_id).randint(1, max(1, seen))
    trigger: dict[str, object] = {"sig": "SIGKILL", "nth_window": nth, "window_glob": glob_index}
    temps = [[kind, index] for kind, index in reference.write_temps if index == glob_index]
    if temps:
        trigger["temps"] = temps
    return FaultExperiment(experiment_id, "kill", {"triggers": [trigger]})


def _preempt(reference: Reference, seed: int) -> FaultExperiment:
    rng = stream(seed, "kill-sigterm")
    if reference.total:
        low, high = past_first_checkpoint(reference, 0.2, 0.8)
        trigger: dict[str, object] = {
            "sig": "SIGTERM",
            "at_done": published_target(rng, reference, low, high),
        }
    else:
        trigger = {"sig": "SIGTERM", "at_s": _time_s(rng.uniform(0.2, 0.8), reference)}
    return FaultExperiment("kill-sigterm", "kill", {"triggers": [trigger], "fault_exit": "preempt"})


def trigger_from(raw: dict[str, object]) -> Trigger:
    sig = signal.Signals[str(raw["sig"])]
    at_s = raw.get("at_s")
    at_done = raw.get("at_done")
    nth = raw.get("nth_window")
    window_glob = raw.get("window_glob")
    temps = raw.get("temps")
    return Trigger(
        sig=sig,
        at_s=float(at_s) if isinstance(at_s, int | float) else None,
        at_done=int(at_done) if isinstance(at_done, int) else None,
        nth_window=int(nth) if isinstance(nth, int) else None,
        window_glob=int(window_glob) if isinstance(window_glob, int) else None,
        temps=tuple((str(k), int(i)) for k, i in temps) if isinstance(temps, list) else (),
    )


def injected(triggers: list[Trigger], attempts: list[Attempt]) -> Injected:
    """How many planned kills fired; a window kill counts only inside a write (pure)."""
    fired = [a for a in attempts if a.fault]
    windowed = [t for t in triggers if t.nth_window is not None]
    if windowed:
        inside = [a for a in fired if a.in_write_window]
        if not inside:
            return Injected(False, "no kill landed inside a checkpoint write")
        return Injected(True, f"killed while writing {inside[0].fault_path}")
    if not fired:
        return Injected(False, "the job finished before the first planned signal")
    detail = f"{len(fired)} of {len(triggers)} planned signal(s) sent"
    return Injected(True, detail + "; " + "; ".join(a.armed for a in fired))


@skippable
def execute(ctx: DriveContext, exp: FaultExperiment, seed: int) -> FaultHistory:
    """Run the faulted attempts in order, resume until done, and record the history."""
    space = Workspace.open(ctx, exp)
    attempts: list[Attempt] = []
    notes: list[str] = []
    triggers = [trigger_from(raw) for raw in exp.schedule["triggers"]]
    for trigger in triggers:
        if attempts and attempts[-1].rc == 0:
            notes.append("the job finished before every planned fault fired")
            break
        outcome = run_attempt(
            ctx,
            space.workdir,
            len(attempts),
            resume=bool(attempts),
            trigger=trigger,
            log_dir=space.logs,
        )
        attempts.append(outcome.attempt)
        notes += [outcome.note] if outcome.note else []
        if outcome.attempt.timed_out:
            break
    return conclude(ctx, exp, seed, space, attempts, notes, injected=injected(triggers, attempts))


class Kill(FaultKind):
    name = "kill"

    def plan(self, ctx: PlanContext) -> list[FaultExperiment]:
        return plan(ctx.reference, ctx.seed, len(ctx.spec.checkpoints))

    def inject(self, ctx: InjectContext, experiment: FaultExperiment) -> FaultHistory:
        return execute(ctx.run, experiment, ctx.seed)


KIND = Kill()
