"""Scale tiers: small < 10pct < production, and how sizes are derived for each.

A tier is a named setting, not a number scattered through tests: `--scale` picks the highest
tier to run, every readiness test carries the tier it runs at, and the sizes of a tier come
from the workload spec (10pct derived from production unless the spec gives it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Tier:
    name: str
    rank: int  # order of cost: a tier runs when its rank is at most the selected one's
    meaning: str
    run_timeout_s: float  # default bound on one workload run at this tier

    @property
    def slow(self) -> bool:
        """Tiers above small take minutes to days, so they carry the `slow` marker."""
        return self.rank > 0


TIERS: tuple[Tier, ...] = (
    Tier("small", 0, "functional, seconds: fixed tiny sizes from the workload spec", 300.0),
    Tier("10pct", 1, "the pre-launch rehearsal: 10% of every production size", 6 * 3600.0),
    Tier("production", 2, "the real run: the production sizes in the workload spec", 72 * 3600.0),
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
