"""Confirming wall-clock alarms with a second, independent run.

Throughput and stall verdicts are measured in wall time. On a shared machine, a burst of CPU
steal or disk writeback can slow a second of a short run, and that reads as decay or a stall
(a 2 s datagen run read last/first 0.77, p=0.01, in CI; 1 run in 30 here reads below 0.8).
A defect in the job reproduces in every run; the host's noise does not. So a timing alarm
stands only if an independent re-run raises it too. Verdicts that do not depend on the
clock (memory, open files per unit of work) must pass in every run.

Pure: the stability experiment (preflight.experiments.stability) makes the runs; an alarm
that stands while the host took the CPU is inconclusive there, not the job's failure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Protocol, TypeVar

TIMING_DETECTORS = frozenset({"throughput", "stall"})


class DetectorVerdict(Protocol):
    """What confirm needs of any detector verdict (preflight.analysis: leak, throughput, stall)."""

    ok: bool
    reason: str


V = TypeVar("V", bound=DetectorVerdict)


def below_bound(verdict: V, value: float, minimum: float, what: str) -> V:
    """A figure the gate bounds, read as an alarm when it misses the bound (pure).

    The throughput detector calls a low ratio noise when its trend is not significant
    (under 10% steal a 3 s datagen run read 0.52, p=0.17); the gate judges the figure
    itself. Marked failed, the figure goes through the same confirmation as any timing
    alarm: it stands only if a second run also misses the bound."""
    if not verdict.ok or value >= minimum:
        return verdict
    return _with_reason(verdict, f"{verdict.reason}; {what} {value:.2f} below the gate's "
                                 f"bound {minimum:g}", ok=False)


def confirm(first: Mapping[str, V], second: Mapping[str, V]) -> dict[str, V]:
    """Each detector's standing verdict over two runs of the same job.

    Timing detectors: the alarm stands only if both runs raise it; an alarm that did not
    reproduce is kept in the reason. Other detectors: the worse of the two."""
    if set(first) != set(second):
        raise ValueError(f"different detectors: {sorted(first)} and {sorted(second)}")
    standing: dict[str, V] = {}
    for name, one in first.items():
        two = second[name]
        if name in TIMING_DETECTORS:
            standing[name] = _timing(one, two)
        else:
            standing[name] = two if one.ok else one
    return standing


def _timing(first: V, second: V) -> V:
    if first.ok:
        return first
    if not second.ok:
        return _with_reason(second, f"{second.reason}; reproduced (first run: {first.reason})")
    return _with_reason(second, f"{second.reason}; first run read {first.reason}, not reproduced")


def _with_reason(verdict: V, reason: str, **changes: object) -> V:
    if dataclasses.is_dataclass(verdict) and not isinstance(verdict, type):
        return dataclasses.replace(verdict, reason=reason, **changes)  # type: ignore[return-value]
    return verdict
