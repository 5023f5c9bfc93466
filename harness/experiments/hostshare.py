"""What the machine did while a wall-clock experiment ran: the host's steal, and how much of
the machine other processes (neighbours on a shared CI box) used beside the job. A timing
failure measured under either is the machine's, not the job's: inconclusive."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC_STAT = Path("/proc/stat")
READ_BYTES_MAX = 1 << 16
# /proc/stat's aggregate "cpu" line: user nice system idle iowait irq softirq steal ...
IDLE, IOWAIT, STEAL = 3, 4, 7


@dataclass(frozen=True)
class Jiffies:
    total: int  # every state up to steal
    idle: int
    iowait: int
    steal: int


def parse_stat(text: str) -> Jiffies | None:
    """The aggregate CPU times of /proc/stat's text (pure); None when unreadable."""
    for line in text.splitlines():
        fields = line.split()
        if fields[:1] != ["cpu"]:
            continue
        try:
            values = [int(v) for v in fields[1:STEAL + 2]]
        except ValueError:
            return None
        if len(values) <= STEAL:
            return None
        return Jiffies(sum(values[:STEAL + 1]), values[IDLE], values[IOWAIT], values[STEAL])
    return None


def read_stat(path: Path = PROC_STAT) -> Jiffies | None:
    try:
        with open(path, "rb") as handle:
            return parse_stat(handle.read(READ_BYTES_MAX).decode("ascii", errors="replace"))
    except OSError:
        return None


def neighbour_share(before: Jiffies | None, after: Jiffies | None, job_cpu_s: float,
                    ticks_per_s: float | None = None) -> float | None:
    """The share of the whole machine's CPU time that processes other than the job used
    between two readings (pure): busy time less the job's own, over all CPUs' time."""
    if before is None or after is None:
        return None
    total = after.total - before.total
    if total <= 0:
        return None
    idle = (after.idle - before.idle) + (after.iowait - before.iowait)
    steal = after.steal - before.steal
    ticks = ticks_per_s or float(os.sysconf("SC_CLK_TCK"))
    others = (total - idle - steal) - job_cpu_s * ticks
    return max(0.0, min(1.0, others / total))
