"""What the machine did while a wall-clock experiment ran: the host's steal, and how much of
the machine other processes (neighbours on a shared CI box) used beside the job. A timing
failure measured under either is the machine's, not the job's: inconclusive."""

from __future__ import annotations

import os

from preflight.host.load import FreezeMeter, Jiffies, read_jiffies, steal_fraction

__all__ = ["Jiffies", "MachineWatch", "neighbour_share", "read_jiffies"]


class MachineWatch:
    """What the machine did over a stretch of wall time: ``with MachineWatch() as machine:``
    reads /proc/stat and runs a FreezeMeter around the block; after it, ``steal``, ``frozen``
    (the meter's share; ``meter.frozen_s`` in seconds) and ``neighbours(job_cpu_s)``."""

    def __init__(self) -> None:
        self.meter = FreezeMeter()
        self.before: Jiffies | None = None
        self.after: Jiffies | None = None

    def __enter__(self) -> MachineWatch:
        self.before = read_jiffies()
        self.meter.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.meter.__exit__(*exc)
        self.after = read_jiffies()

    @property
    def steal(self) -> float | None:
        return steal_fraction(self.before, self.after)

    @property
    def frozen(self) -> float | None:
        return self.meter.fraction

    def neighbours(self, job_cpu_s: float) -> float | None:
        """Other processes' share of the machine, the job's ``job_cpu_s`` set apart."""
        return neighbour_share(self.before, self.after, job_cpu_s)


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
