"""Crash points: kill the job at each fault point it passes (and at a later hit), resume.

The reference run lists the points with PREFLIGHT_FAULTS_TRACE; each experiment arms one
``point:kill@N`` through PREFLIGHT_FAULTS, so the job dies at exactly that instruction.
A job that passes no points gets a note (a skipped experiment), not a failure.
"""

from __future__ import annotations

from preflight.check.drive.runner import DriveContext, run_attempt
from preflight.check.drive.schedule import FaultExperiment, stream
from preflight.check.drive.sequence import Injected, Workspace, conclude, skippable
from preflight.check.history import FAULT_POINT, Attempt, FaultHistory, Reference
from preflight.check.kind import FaultKind, InjectContext, PlanContext

HITS_PER_POINT_MAX = 2  # the first hit and one seeded later hit
EXPERIMENTS_MAX = 24  # a job with many points gets a seeded sample of them
NO_POINTS = "the job passes no fault points (PREFLIGHT_FAULTS_TRACE stayed empty)"


def plan(reference: Reference, seed: int, action: str = "kill") -> list[FaultExperiment]:
    """One experiment per (point, hit): hit 1, and a seeded hit in 2..hits when there are
    more; at most EXPERIMENTS_MAX, sampled by the seed, in first-hit order."""
    if not reference.points:
        return [FaultExperiment("crashpoints", "crashpoints", {"skip": NO_POINTS})]
    rng = stream(seed, f"crashpoints-{action}")
    planned = []
    for name in reference.points:
        hits = reference.point_hits.get(name, 1)
        nths = [1] + ([rng.randint(2, hits)] if hits >= 2 else [])
        planned += [(name, nth) for nth in nths[:HITS_PER_POINT_MAX]]
    if len(planned) > EXPERIMENTS_MAX:
        keep = sorted(rng.sample(range(len(planned)), EXPERIMENTS_MAX))
        planned = [planned[i] for i in keep]
    return [
        FaultExperiment(f"crash-{name}@{nth}", "crashpoints", {"armed": f"{name}:{action}@{nth}"})
        for name, nth in planned
    ]


@skippable
def execute(ctx: DriveContext, exp: FaultExperiment, seed: int) -> FaultHistory:
    space = Workspace.open(ctx, exp)
    armed = str(exp.schedule["armed"])
    first = run_attempt(
        ctx, space.workdir, 0, resume=False, fault=FAULT_POINT, armed=armed, log_dir=space.logs
    ).attempt
    attempts: list[Attempt] = [first]
    if first.rc == 0:
        why = f"{armed} never fired: the job finished unharmed (hit count per process)"
        injected = Injected(False, why)
    else:
        injected = Injected(True, f"{armed} fired: exit {first.rc}")
    return conclude(ctx, exp, seed, space, attempts, [], injected=injected)


class Crashpoints(FaultKind):
    name = "crashpoints"

    def plan(self, ctx: PlanContext) -> list[FaultExperiment]:
        return plan(ctx.reference, ctx.seed)

    def inject(self, ctx: InjectContext, experiment: FaultExperiment) -> FaultHistory:
        return execute(ctx.run, experiment, ctx.seed)


KIND = Crashpoints()
