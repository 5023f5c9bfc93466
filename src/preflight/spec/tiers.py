"""Scale tiers: small < 10pct < production, and how sizes are derived for each.

A tier is a named setting, not a number scattered through tests: `--scale` picks the highest
tier to run, every readiness test carries the tier it runs at, and the sizes of a tier come
from the workload spec (10pct derived from production unless the spec gives it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

MIB = 1 << 20


@dataclass(frozen=True)
class Tier:
    """Everything that differs by tier, in one place."""

    name: str
    rank: int  # order of cost: a tier runs when its rank is at most the selected one's
    meaning: str
    run_timeout_s: float  # default bound on one workload run at this tier
    test_timeout_s: float  # bound on one readiness test (pytest-timeout)
    suite_timeout_s: float  # bound on a project's pytest suites run by the gate
    fuzz_examples: int  # hypothesis examples per parser in the security fuzz suites
    # Detectors (preflight.analysis.settings): a stretch without progress that is a stall,
    # and the memory growth below which no leak is called (allocators wander more at size).
    stall_s: float
    memory_growth_floor_bytes: float
    # Alert thresholds (preflight.alerts.rules.PROFILES): seconds-long runs get the fast ones.
    alert_profile: str

    @property
    def slow(self) -> bool:
        """Tiers above small take minutes to days, so they carry the `slow` marker."""
        return self.rank > 0


# Suite bounds are far above the usual figures (small: 3 min, 10pct: 9 min): a host that
# takes 70% of the CPU triples them. Small-tier jobs report progress many times a second,
# so a second of silence is a stall there; a real checkpoint can take minutes.
TIERS: tuple[Tier, ...] = (
    Tier("small", 0, "functional, seconds: fixed tiny sizes from the workload spec",
         run_timeout_s=300.0, test_timeout_s=120.0, suite_timeout_s=2400.0, fuzz_examples=60,
         stall_s=1.0, memory_growth_floor_bytes=1.0 * MIB, alert_profile="small"),
    Tier("10pct", 1, "the pre-launch rehearsal: 10% of every production size",
         run_timeout_s=6 * 3600.0, test_timeout_s=900.0, suite_timeout_s=3600.0,
         fuzz_examples=2_000, stall_s=120.0, memory_growth_floor_bytes=16.0 * MIB,
         alert_profile="production"),
    Tier("production", 2, "the real run: the production sizes in the workload spec",
         run_timeout_s=72 * 3600.0, test_timeout_s=12 * 3600.0, suite_timeout_s=6 * 3600.0,
         fuzz_examples=20_000, stall_s=600.0, memory_growth_floor_bytes=64.0 * MIB,
         alert_profile="production"),
)
TIER_NAMES: tuple[str, ...] = tuple(t.name for t in TIERS)
DEFAULT_TIER = "small"
DERIVED_TIER = "10pct"
DERIVED_FROM_TIER = "production"
# 10pct = production / 10, rounded half up, never below one unit of work.
DERIVED_DIVISOR = 10
DERIVED_MIN = 1

_BY_NAME = {t.name: t for t in TIERS}


def get_tier(name: str) -> Tier:
    """The tier called `name`; a ValueError lists the valid names."""
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown tier {name!r}; choose one of {', '.join(TIER_NAMES)}") from None


def selected_tiers(scale: str) -> tuple[str, ...]:
    """The tiers that run under `--scale scale`: it and every cheaper one, in order."""
    ceiling = get_tier(scale).rank
    return tuple(t.name for t in TIERS if t.rank <= ceiling)


def is_selected(tier: str, scale: str) -> bool:
    return get_tier(tier).rank <= get_tier(scale).rank


def derive_size(production_size: int) -> int:
    """10% of a production size, rounded half up in integers (no float surprises), >= 1."""
    return max(DERIVED_MIN, (production_size + DERIVED_DIVISOR // 2) // DERIVED_DIVISOR)


def derive_10pct(production: Mapping[str, int]) -> dict[str, int]:
    """The 10pct sizes for a table of production sizes."""
    return {name: derive_size(size) for name, size in production.items()}


class HasParams(Protocol):
    def params(self, tier: str) -> dict[str, int]: ...


@dataclass(frozen=True)
class TierContext:
    """What the `tier` fixture gives a test: the tier it runs at and the session's scale."""

    tier: Tier
    scale: str  # the highest tier selected for the session (--scale)

    @property
    def name(self) -> str:
        return self.tier.name

    def sizes(self, spec: HasParams) -> dict[str, int]:
        """The workload's sizes at this tier."""
        return spec.params(self.tier.name)
