"""Experiments and their seeds: every fault schedule is a pure function of (seed, name).

An experiment's random choices come from its own generator, seeded by the check's seed and
a stable stream name, so replaying one experiment (``--only ID``) draws exactly what it drew
inside the full battery, whatever ran before it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from preflight.check.history import KINDS, KNOWN_KINDS, Reference

SEED_MAX = (1 << 63) - 1


@dataclass(frozen=True)
class FaultExperiment:
    """One planned fault run: an id stable for a (workload, seed), its kind, its schedule."""

    id: str
    kind: str
    schedule: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert self.kind in KNOWN_KINDS, f"unknown fault kind {self.kind!r}"
        assert self.id and " " not in self.id, f"bad experiment id {self.id!r}"


def stream(seed: int, name: str) -> random.Random:
    """A generator for one named stream of choices (string seeds hash deterministically)."""
    assert 0 <= seed <= SEED_MAX, f"seed must be in [0, {SEED_MAX}]"
    return random.Random(f"preflight:{seed}:{name}")


def parse_kinds(text: str) -> tuple[str, ...]:
    """``kill,corrupt`` -> the kinds in battery order; ValueError names an unknown one."""
    asked = [part.strip() for part in text.split(",") if part.strip()]
    known = [*KINDS, *sorted(KNOWN_KINDS - set(KINDS))]  # registered kinds after ours
    unknown = [k for k in asked if k not in KNOWN_KINDS]
    if unknown or not asked:
        raise ValueError(
            f"unknown fault kind(s) {unknown or [text]}; choose from {','.join(known)}"
        )
    return tuple(k for k in known if k in asked)


def progress_target(rng: random.Random, total: int, low: float, high: float) -> int:
    """A progress value in [low*total, high*total], at least 1 and below total when possible."""
    assert 0.0 <= low <= high <= 1.0
    lo = max(1, int(total * low))
    hi = max(lo, min(total - 1, int(total * high)))
    return rng.randint(lo, hi)


def reachable(target: int, published: tuple[int, ...], total: int) -> int:
    """``target`` moved down onto a progress value the reference run published, when the
    job publishes so coarsely that the first value at or past ``target`` is its total: a
    kill waiting for ``target`` would fire only after the work was done (pure). Unchanged
    when the reference published nothing, or a value in [target, total)."""
    if not published or any(target <= v < total for v in published):
        return target
    below = [v for v in published if 0 < v < min(target, total)]
    return max(below) if below else target


def published_target(rng: random.Random, reference: Reference, low: float, high: float) -> int:
    """A progress target in [low, high] of the reference's total, on a value the job really
    publishes before its total (a kill waiting for the total tests no resume)."""
    assert reference.total
    done = progress_target(rng, reference.total, low, high)
    return reachable(done, reference.published, reference.total)
