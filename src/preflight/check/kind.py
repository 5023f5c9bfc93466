"""The fault-kind contract: what `preflight check` needs from each kind of fault.

A fault kind plans experiments from what the reference run taught (pure, from the seed)
and injects one experiment into the job, returning the recorded FaultHistory the pure checker
judges. Both get frozen contexts, so a kind cannot change what the others see.

    class MyKind(FaultKind):
        name = "mykind"
        def plan(self, ctx: PlanContext) -> list[FaultExperiment]: ...
        def inject(self, ctx: InjectContext, experiment: FaultExperiment) -> FaultHistory: ...

Register it with ``preflight.check.registry.register``; each of ours is its module's
``KIND``, registered by preflight/check/registry.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from preflight.check.drive.runner import DriveContext
from preflight.check.drive.schedule import FaultExperiment
from preflight.check.history import FaultHistory, Reference
from preflight.spec.parse import WorkloadSpec


@dataclass(frozen=True)
class PlanContext:
    """What planning may read: the workload, the reference run, the seed."""

    spec: WorkloadSpec
    reference: Reference
    seed: int


@dataclass(frozen=True)
class InjectContext:
    """What an injection runs with: the shared run context (spec, sizes, scratch, bounds),
    the reference run and the seed."""

    run: DriveContext
    reference: Reference
    seed: int


@runtime_checkable
class FaultKind(Protocol):
    name: str

    def plan(self, ctx: PlanContext) -> list[FaultExperiment]: ...

    def inject(self, ctx: InjectContext, experiment: FaultExperiment) -> FaultHistory: ...
