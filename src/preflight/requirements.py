"""The gate's requirements: each `[tool.preflight.gate]` threshold key, the measurement it
judges, its direction, default bound and unit (docs/contract.md "Gate policy").

A catalog with no I/O and no preflight imports, so the gate (gate/policy.py, which reads a
project's thresholds), the readiness report (which names a requirement's metric) and the
history (which needs to know whether larger is better) read one table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Requirement:
    id: str
    description: str
    metric: str
    comparator: str  # "<=" (value must not exceed) or ">=" (value must reach)
    threshold: float
    unit: str


# key -> (metric suffix, comparator, default threshold, unit, description)
REQUIREMENTS: dict[str, tuple[str, str, float, str, str]] = {
    "max_leak_bytes_per_unit": (
        "leak_bytes_per_unit",
        "<=",
        8192.0,
        "B/unit",
        "memory does not grow with work done (Theil-Sen lower bound)",
    ),
    "max_fd_leak_per_unit": (
        "fd_leak_per_unit",
        "<=",
        0.01,
        "fds/unit",
        "open files do not grow with work done",
    ),
    "min_throughput_ratio": (
        "throughput_ratio",
        ">=",
        0.75,
        "ratio",
        "throughput of the last quarter over the first does not degrade",
    ),
    "max_stall_s": ("stall_s_max", "<=", 30.0, "s", "no stretch without progress"),
    "max_checkpoint_overhead": (
        "checkpoint_overhead",
        "<=",
        0.035,
        "fraction",
        "checkpointing costs little wall time",
    ),
    "max_lost_work_intervals": (
        "lost_work_intervals",
        "<=",
        1.0,
        "intervals",
        "a kill loses at most one checkpoint interval of work",
    ),
    "min_exact_resume": (
        "exact",
        ">=",
        1.0,
        "bool",
        "resumed runs finish bit-identical to an uninterrupted run",
    ),
    "max_silent_corruptions": (
        "silent_corruptions",
        "<=",
        0.0,
        "count",
        "no corrupted input finishes with a different result",
    ),
    "max_lost_items": ("lost_items", "<=", 0.0, "count", "no committed item is lost"),
    "max_duplicate_items": ("duplicate_items", "<=", 0.0, "count", "no item is committed twice"),
    "max_parser_crashes": ("parser_crashes", "<=", 0.0, "count", "no parser crashes on bad input"),
    "max_alert_latency_s": (
        "detection_latency_s", "<=", 5.0, "s",
        "every alert fires within the target after its condition is injected",
    ),
}


def default_requirements() -> tuple[Requirement, ...]:
    """Every requirement at its default threshold."""
    return tuple(
        Requirement(key, description, metric, comparator, default, unit)
        for key, (metric, comparator, default, unit, description) in REQUIREMENTS.items()
    )


def metric_of(requirement_id: str) -> str:
    """The measurement suffix a requirement judges (ids are fixed; unknown ids are their own)."""
    found = REQUIREMENTS.get(requirement_id)
    return found[0] if found else requirement_id


def higher_is_better(name: str, requirements: Sequence[Requirement] | None = None
                     ) -> bool | None:
    """True when a larger value of measurement ``name`` is better by the requirement that
    judges it, None when no requirement does.

    The longest matching requirement metric wins, so ``x.throughput_ratio`` is judged as
    ``throughput_ratio`` even if a shorter metric were also a suffix of it."""
    pool = default_requirements() if requirements is None else requirements
    matching = [r for r in pool if name == r.metric or name.endswith("." + r.metric)]
    if not matching:
        return None
    return max(matching, key=lambda r: len(r.metric)).comparator == ">="
