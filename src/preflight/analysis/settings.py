"""Detector thresholds as named settings, one profile per tier (like Hypothesis profiles).

Every threshold the detectors use lives here, so a reader can see at one glance what
"a leak", "a slowdown" and "a stall" mean at each scale, and a test can pass a different
profile instead of patching constants.
"""

from __future__ import annotations

from dataclasses import dataclass

from preflight.spec import tiers

MIB = 1 << 20


@dataclass(frozen=True)
class LeakSettings:
    """A leak is declared only when all three hold: a significant upward trend (Mann-Kendall
    at `alpha`), a slope whose 95% lower bound exceeds `per_unit_max`, and observed growth
    above `growth_floor` (so allocator noise on a short run cannot be called a leak)."""

    per_unit_max: float  # metric units per progress unit (bytes/unit, fds/unit, ...)
    growth_floor: float  # metric units over the observed run, after warm-up
    warmup_fraction: float = 0.2  # of the progress range: imports, caches, pools fill here
    alpha: float = 0.05
    points_min: int = 8  # fewer distinct progress points: inconclusive, not "no leak"


@dataclass(frozen=True)
class ThroughputSettings:
    """Degraded = the last quarter's median rate is below (1 - degradation_max) of the first
    quarter's AND the rate trends down (Mann-Kendall at `alpha`)."""

    degradation_max: float = 0.2
    warmup_fraction: float = 0.2  # of the run's time span
    alpha: float = 0.05
    windows: int = 30  # rate windows over the measured span
    windows_min: int = 8


@dataclass(frozen=True)
class StallSettings:
    stall_s: float  # longer than this with no progress is a stall


@dataclass(frozen=True)
class DetectorSettings:
    memory: LeakSettings
    open_files: LeakSettings
    threads: LeakSettings
    throughput: ThroughputSettings
    stall: StallSettings

    def leak(self, metric: str) -> LeakSettings:
        """The leak settings for a Sample field (uss_bytes, rss_bytes, open_files, threads)."""
        if metric in ("uss_bytes", "rss_bytes"):
            return self.memory
        if metric in ("open_files", "threads"):
            return getattr(self, metric)
        raise ValueError(f"no leak settings for metric {metric!r}")


def _for_tier(tier: tiers.Tier) -> DetectorSettings:
    return DetectorSettings(
        # 1 KiB per unit of work is far below any real leak worth a launch decision, yet far
        # above the noise of a flat series; the tier's growth floor keeps allocator arenas
        # out of it.
        memory=LeakSettings(per_unit_max=1024.0, growth_floor=tier.memory_growth_floor_bytes),
        open_files=LeakSettings(per_unit_max=0.01, growth_floor=16),
        threads=LeakSettings(per_unit_max=0.01, growth_floor=8),
        throughput=ThroughputSettings(),
        stall=StallSettings(stall_s=tier.stall_s),
    )


PROFILES: dict[str, DetectorSettings] = {t.name: _for_tier(t) for t in tiers.TIERS}


def settings_for(tier: str) -> DetectorSettings:
    tiers.get_tier(tier)
    return PROFILES[tier]
