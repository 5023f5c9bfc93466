"""Readiness experiments: the gate's evidence, as harness code driven by the workload spec.

Each experiment runs the job (I/O), records a frozen observation, and judges it with a pure
function into a Finding (pass, fail, inconclusive, not applicable). ``for_spec(spec)`` lists
a workload's experiments in the order they run; ``preflight.experiments.schedule`` runs them
(the cheap ones side by side, the wall-clock ones alone) for ``preflight gate``."""

from __future__ import annotations

from preflight.experiments.accounting import Accounting, Retry
from preflight.experiments.base import (
    FAIL,
    INCONCLUSIVE,
    NOT_APPLICABLE,
    PASS,
    STATUSES,
    Context,
    Experiment,
    Finding,
    Measurement,
)
from preflight.experiments.faults import FaultBattery
from preflight.experiments.lifecycle import Completion, Drift, Exclusion
from preflight.experiments.overhead import Overhead
from preflight.experiments.stability import Stability
from preflight.spec.parse import WorkloadSpec
from preflight.spec.readiness import KNOWN_FAULTS


def for_spec(spec: WorkloadSpec) -> list[Experiment]:
    """Every experiment for ``spec`` (applicable or not), filtered by readiness.experiments
    ("faults" names every battery)."""
    batteries: list[Experiment] = [FaultBattery(kind) for kind in KNOWN_FAULTS]
    every: list[Experiment] = [Completion(), Exclusion(), Drift(), Accounting(), Retry(),
                               *batteries, Stability(), Overhead()]
    chosen = spec.readiness.experiments
    if chosen is None:
        return [e for e in every if not isinstance(e, FaultBattery)
                or e.kind in spec.readiness.faults]
    return [e for e in every if e.name in chosen or e.name.split(".")[0] in chosen]


__all__ = [
    "FAIL", "INCONCLUSIVE", "NOT_APPLICABLE", "PASS", "STATUSES", "Context", "Experiment",
    "Finding", "Measurement", "for_spec",
]
