"""What the machine did while a wall-clock experiment ran: the host's steal, and how much of
the machine other processes (neighbours on a shared CI box) used beside the job. A timing
failure measured under either is the machine's, not the job's: inconclusive."""

from __future__ import annotations

import os

from harness.hostload import Jiffies, read_jiffies

__all__ = ["Jiffies", "neighbour_share", "read_jiffies"]


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
