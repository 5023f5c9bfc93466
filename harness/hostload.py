"""How much of this machine its host took away: CPU steal, from /proc/stat.

On a virtual machine the hypervisor runs other guests on the same cores; the time it takes
is "steal". A job that was not given the CPU makes no progress, and a wall-clock verdict
(throughput, stall, alert latency) then describes the host, not the job: this 2-core VM
has seen 60-97% steal for minutes, and a 2 s datagen run took 18 s. The harness records the
steal share of every run, so such a run can be told apart and measured again.

Where /proc/stat or its steal column is missing (not Linux, old kernels), there is no
figure (None), never a guess.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

PROC_STAT = Path("/proc/stat")
READ_BYTES_MAX = 4096  # the aggregate "cpu" line comes first
STEAL_FIELD = 7  # user nice system idle iowait irq softirq steal guest guest_nice
# Above this share of the machine's CPU time taken by the host, a run's clock says more about
# the host than the job. Quiet hours here show 0-6%; the bursts that broke runs, 60-97%.
STEAL_DISTURBED = 0.25

T = TypeVar("T")


@dataclass(frozen=True)
class CpuTimes:
    steal: int  # jiffies, all CPUs
    total: int  # jiffies, all CPUs, every state except guest time (counted in user)


def parse_cpu_line(text: str) -> CpuTimes | None:
    """The aggregate CPU times from /proc/stat's text (pure); None without a steal column."""
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0] != "cpu":
            continue
        try:
            values = [int(v) for v in fields[1:]]
        except ValueError:
            return None
        if len(values) <= STEAL_FIELD:
            return None
        return CpuTimes(steal=values[STEAL_FIELD], total=sum(values[: STEAL_FIELD + 1]))
    return None


def read_cpu_times(path: Path = PROC_STAT) -> CpuTimes | None:
    try:
        with open(path, "rb") as handle:
            text = handle.read(READ_BYTES_MAX).decode("ascii", errors="replace")
    except OSError:
        return None
    return parse_cpu_line(text)


def steal_fraction(before: CpuTimes | None, after: CpuTimes | None) -> float | None:
    """The host's share of this machine's CPU time between two readings (pure)."""
    if before is None or after is None:
        return None
    total = after.total - before.total
    if total <= 0:
        return None
    return max(0.0, min(1.0, (after.steal - before.steal) / total))


def disturbed(fraction: float | None) -> bool:
    return fraction is not None and fraction > STEAL_DISTURBED


def measure_settled(
    measure: Callable[[int], T], passed: Callable[[T], bool], attempts_max: int = 3
) -> tuple[T, list[float | None]]:
    """``measure(attempt)`` again while it failed and the host took the CPU during it (at
    most ``attempts_max`` in all): (the last result, the steal share of each attempt).

    A failure on a quiet host is the job's and is returned at once; a pass is a pass
    whatever the host did."""
    assert attempts_max >= 1
    shares: list[float | None] = []
    for attempt in range(1, attempts_max + 1):
        before = read_cpu_times()
        result = measure(attempt)
        shares.append(steal_fraction(before, read_cpu_times()))
        if passed(result) or not disturbed(shares[-1]):
            break
    return result, shares
