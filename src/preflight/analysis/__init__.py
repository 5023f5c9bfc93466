"""Pure analyses over recorded runs: leaks, throughput, stalls (see settings for limits)."""

from preflight.analysis.leak import LeakVerdict, leak_from_xy, leak_verdict
from preflight.analysis.settings import (
    PROFILES,
    DetectorSettings,
    LeakSettings,
    StallSettings,
    ThroughputSettings,
    settings_for,
)
from preflight.analysis.throughput import (
    StallVerdict,
    ThroughputVerdict,
    stall_from_series,
    stall_verdict,
    throughput_from_series,
    throughput_verdict,
)

__all__ = [
    "PROFILES",
    "DetectorSettings",
    "LeakSettings",
    "LeakVerdict",
    "StallSettings",
    "StallVerdict",
    "ThroughputSettings",
    "ThroughputVerdict",
    "leak_from_xy",
    "leak_verdict",
    "settings_for",
    "stall_from_series",
    "stall_verdict",
    "throughput_from_series",
    "throughput_verdict",
]
