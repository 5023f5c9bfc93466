"""Confirming wall-clock alarms with a second, independent run.

Throughput and stall verdicts are measured in wall time. On a shared machine, a burst of CPU
steal or disk writeback can slow a second of a short run, and that reads as decay or a stall
(a 2 s datagen run read last/first 0.77, p=0.01, in CI; 1 run in 30 here reads below 0.8).
A defect in the job reproduces in every run; the host's noise does not. So a timing alarm
stands only if an independent re-run raises it too. Verdicts that do not depend on the
clock (memory, open files per unit of work) must pass in every run.

A confirming run during which the host took much of the CPU (harness.hostload) proves
nothing either way about the clock, so one more run is made (at most RUNS_MAX in all).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Protocol, TypeVar

from harness import hostload

TIMING_DETECTORS = frozenset({"throughput", "stall"})
RUNS_MAX = 3


class Verdict(Protocol):
    ok: bool
    reason: str


V = TypeVar("V", bound=Verdict)


def needs_rerun(verdicts: Mapping[str, Verdict]) -> bool:
    """True when only timing detectors failed: a re-run can still clear them. A failed
    clock-free detector fails the run whatever a re-run shows."""
    failed = {name for name, verdict in verdicts.items() if not verdict.ok}
    return bool(failed) and failed <= TIMING_DETECTORS


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


def settle(
    run_once: Callable[[], tuple[Mapping[str, V], hostload.Disturbance | float | None]],
    runs_max: int = RUNS_MAX,
    probe: Callable[[], float | None] = hostload.probe_cpu_share,
) -> tuple[dict[str, V], list[str]]:
    """Run until the verdicts are settled: (standing verdicts, one note per extra run).

    ``run_once`` makes one run and returns its verdicts and what the host did during it
    (a hostload.Disturbance, or the steal share alone). A second run confirms or clears
    timing alarms; a third is made only when the second also alarmed on a starved
    machine (hostload.starved)."""
    assert runs_max >= 1
    first, _steal = run_once()
    standing = dict(first)
    notes: list[str] = []
    for number in range(2, runs_max + 1):
        if not needs_rerun(standing):
            break
        again, steal = run_once()
        standing = confirm(standing, again)
        notes.append(f"run {number}: host {_host(steal)}")
        still_alarmed = any(not standing[name].ok for name in TIMING_DETECTORS & set(standing))
        if not (still_alarmed and hostload.starved(steal, probe)):
            break
    return standing, notes


def _host(seen: hostload.Disturbance | float | None) -> str:
    if isinstance(seen, hostload.Disturbance):
        return str(seen)
    return "steal unknown" if seen is None else f"steal {seen:.0%}"
