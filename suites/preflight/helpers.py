"""Shared constants and helpers for the harness's own tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from preflight.analysis.confirm import TIMING_DETECTORS
from preflight.host.rule import disturbed, host_text
from preflight.host.watch import HostWatch

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures"
FIXTURE_SPECS = FIXTURES / "workloads.toml"
TELEMETRY_SPEC = FIXTURES / "telemetry.toml"  # the alert rules' fixture job
# Fast sampling: the planted jobs run for a second or two and the detectors need points.
FIXTURE_SAMPLE_INTERVAL_S = 0.02


def write_spec(directory: Path, text: str, name: str = "workloads.toml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


@dataclass
class HostSeen:
    """What the host did during a block: the steal share (/proc/stat) and the share of the
    time this process tree could not run at all (the product's HostWatch; it sees a frozen
    cgroup, which shows no steal). None where there was no figure."""

    steal: float | None = None
    frozen: float | None = None

    @property
    def disturbed(self) -> bool:
        """The product's rule (preflight.host.rule.disturbed)."""
        return disturbed(self.steal, self.frozen)

    def __str__(self) -> str:
        return host_text(self.steal, self.frozen)


@contextmanager
def watching_host() -> Iterator[HostSeen]:
    """``with watching_host() as host: ...``; ``host`` is filled in when the block ends."""
    seen = HostSeen()
    with HostWatch() as machine:
        yield seen
    seen.steal, seen.frozen = machine.steal, machine.frozen


def standing_status(name: str, ok: bool, conclusive: bool, host: HostSeen) -> str:
    """One detector's verdict read as the gate reads it (pure): "failed" for an alarm that
    stands, "inconclusive" for an alarm of a wall-clock detector (TIMING_DETECTORS) under a
    disturbed host (docs/contract.md) or a verdict without enough points, else "passed"."""
    if not ok:
        return "inconclusive" if name in TIMING_DETECTORS and host.disturbed else "failed"
    return "passed" if conclusive else "inconclusive"
