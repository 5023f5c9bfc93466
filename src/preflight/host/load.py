"""How much of this machine its host took away: CPU steal, from /proc/stat.

On a virtual machine the hypervisor runs other guests on the same cores; the time it takes
is "steal". A job that was not given the CPU makes no progress, and a wall-clock verdict
(throughput, stall, alert latency) then describes the host, not the job: this 2-core VM
has seen 60-97% steal for minutes, and a 2 s datagen run took 18 s. The harness records the
steal share of every run, so such a run can be told apart and measured again.

Where /proc/stat or its steal column is missing (not Linux, old kernels), there is no
figure (None), never a guess. A host that freezes the VM (or a container's cgroup) shows no
steal; `FreezeMeter` measures that from inside: the share of a stretch this process tree
could not run at all.

Steal is measured after the fact. Before a measurement, `probe_cpu_share` asks the machine
directly: one busy process per CPU for half a second, each reporting the CPU time it got.
That share falls with steal, with a CPU quota (cgroup cpu.max) and with any other load, and
it is what a job started now would get; `dilation` turns a share into how much longer the
job's seconds will be (the alert experiments stretch their durations by it).
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PROC_STAT = Path("/proc/stat")
READ_BYTES_MAX = 4096  # the aggregate "cpu" line comes first
IDLE_FIELD, IOWAIT_FIELD = 3, 4
STEAL_FIELD = 7  # user nice system idle iowait irq softirq steal guest guest_nice

PROBE_S = 0.5  # long enough to span several scheduler slices, short enough to do often
PROBE_GRACE_S = 30.0  # a spinner's interpreter start-up on a starved machine, bounded
# A share of a CPU at or above this is a machine worth measuring on (quiet: 0.95-1.0).
QUIET_SHARE = 0.75
DILATION_MAX = 4.0  # below a quarter of a CPU, wall-clock tests are not worth running
# A busy loop for argv[1] seconds; prints the CPU time it got over the wall time it spun.
SPIN_SOURCE = """
import sys, time
seconds = float(sys.argv[1])
wall0, cpu0 = time.monotonic(), time.process_time()
while time.monotonic() - wall0 < seconds:
    pass
print((time.process_time() - cpu0) / (time.monotonic() - wall0))
"""


@dataclass(frozen=True)
class Jiffies:
    """The aggregate line's states that tell who had the machine (all CPUs, jiffies)."""

    total: int  # every state up to steal (guest time is in user: not counted twice)
    idle: int
    iowait: int
    steal: int


def parse_jiffies(text: str) -> Jiffies | None:
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
        return Jiffies(sum(values[: STEAL_FIELD + 1]), values[IDLE_FIELD],
                       values[IOWAIT_FIELD], values[STEAL_FIELD])
    return None


def read_jiffies(path: Path = PROC_STAT) -> Jiffies | None:
    try:
        with open(path, "rb") as handle:
            text = handle.read(READ_BYTES_MAX).decode("ascii", errors="replace")
    except OSError:
        return None
    return parse_jiffies(text)


def steal_fraction(before: Jiffies | None, after: Jiffies | None) -> float | None:
    """The host's share of this machine's CPU time between two readings (pure)."""
    if before is None or after is None:
        return None
    total = after.total - before.total
    if total <= 0:
        return None
    return max(0.0, min(1.0, (after.steal - before.steal) / total))


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



def cpu_count() -> int:
    """The CPUs this process may run on (its affinity, where the OS tells)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _spinner_share(output: str) -> float | None:
    try:
        share = float(output.strip())
    except ValueError:
        return None
    return share if share == share else None  # NaN: no figure


def probe_cpu_share(seconds: float = PROBE_S, processes: int | None = None) -> float | None:
    """The share of a CPU a busy process gets now (0-1): one spinner per CPU for ``seconds``,
    the mean of their CPU time over wall time; None when no spinner reported (bounded)."""
    count = processes or cpu_count()
    argv = [sys.executable, "-c", SPIN_SOURCE, f"{seconds:g}"]
    spinners = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for _ in range(count)
    ]
    deadline = time.monotonic() + seconds + PROBE_GRACE_S
    shares: list[float] = []
    try:
        for spinner in spinners:
            try:
                out, _ = spinner.communicate(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return None
            share = _spinner_share(out or "")
            if spinner.returncode == 0 and share is not None:
                shares.append(share)
    finally:
        for spinner in spinners:
            if spinner.poll() is None:
                spinner.kill()
                spinner.wait()
    if not shares:
        return None
    return max(0.0, min(1.0, sum(shares) / len(shares)))


def dilation(share: float | None) -> float:
    """How many times longer a job's wall-clock seconds run on a machine that gives a busy
    process ``share`` of a CPU (pure): 1 on a quiet machine or without a figure, at most
    DILATION_MAX."""
    if share is None or share >= QUIET_SHARE:
        return 1.0
    return min(DILATION_MAX, 1.0 / max(share, 1.0 / DILATION_MAX))


FREEZE_TICK_S = 0.02
# A tick this much later than asked: the process could not run (scheduler slices are
# milliseconds; the host's steal and a frozen cgroup take whole seconds).
FREEZE_LATE_S = 0.1
FREEZE_JOIN_S = 5.0
FREEZE_READY_S = 30.0  # the child's interpreter start-up on a starved machine, bounded
FREEZE_ELAPSED_MIN_S = 1.0  # shorter stretches give no figure: one hiccup would be all of it


class FreezeMeter:
    """How much of a stretch of wall time the machine did not run this harness at all: a
    small child process sleeps FREEZE_TICK_S at a time and adds up every lateness above
    FREEZE_LATE_S. It sees the host's steal where /proc/stat shows none (a container's
    cgroup frozen or throttled, a nested VM), and does not count the fine-grained sharing
    of a busy machine, which the jobs here survive. A process, not a thread: a thread waits
    for the harness's GIL, and read 1.2 s "frozen" beside a busy trainer on a quiet host."""

    def __init__(self, tick_s: float = FREEZE_TICK_S, late_s: float = FREEZE_LATE_S) -> None:
        self.tick_s, self.late_s = tick_s, late_s
        self.frozen_s = 0.0
        self._last = 0.0
        self._elapsed: float | None = None  # None: no measurement
        self._child: subprocess.Popen[str] | None = None

    def tick(self, now: float) -> None:
        """Account for one tick seen at ``now`` (pure over the clock)."""
        late = now - self._last - self.tick_s
        if late > self.late_s:
            self.frozen_s += late
        self._last = now

    def __enter__(self) -> FreezeMeter:
        argv = [sys.executable, "-c", TICKER_SOURCE, f"{self.tick_s:g}", f"{self.late_s:g}"]
        try:
            self._child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                           stderr=subprocess.DEVNULL, text=True)
        except OSError:
            self._child = None
            return self
        # The stretch starts when the child ticks: its interpreter start-up took over 1.2 s
        # on a fresh clone under steal, and the block had ended before its first tick.
        ready, _, _ = select.select([self._child.stdout], [], [], FREEZE_READY_S)
        if not ready or self._child.stdout is None or not self._child.stdout.readline():
            self._child.kill()
            self._child.wait()
            self._child = None
        return self

    def __exit__(self, *exc: object) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        try:
            out, _ = child.communicate(input="", timeout=FREEZE_JOIN_S)  # EOF: report
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            return
        fields = (out or "").split()
        try:
            self.frozen_s, self._elapsed = float(fields[0]), float(fields[1])
        except (IndexError, ValueError):
            self.frozen_s, self._elapsed = 0.0, None

    @property
    def fraction(self) -> float | None:
        if self._elapsed is None or self._elapsed < FREEZE_ELAPSED_MIN_S:
            return None
        return min(1.0, self.frozen_s / self._elapsed)


def ticker_main(argv: list[str]) -> None:
    """The FreezeMeter's child: tick until stdin closes, then print 'frozen_s elapsed_s'."""
    meter = FreezeMeter(float(argv[0]), float(argv[1]))
    started = meter._last = time.monotonic()
    print("ticking", flush=True)
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], meter.tick_s)
        meter.tick(time.monotonic())
        if ready:
            break
    print(f"{meter.frozen_s} {time.monotonic() - started}", flush=True)


TICKER_SOURCE = "import sys; from preflight.host.load import ticker_main; ticker_main(sys.argv[1:])"
