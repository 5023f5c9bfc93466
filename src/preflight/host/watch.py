"""What the machine did while a job ran: one ``HostWatch`` per Run (preflight.run.job starts
it with the job and stops it when the job ends), its figures a frozen ``HostFigures``.

- steal: the hypervisor's share of the CPU, from /proc/stat (preflight.host.load);
- frozen: the share of the time the harness could not run at all (a FreezeMeter child: a
  frozen or throttled cgroup shows no steal). It costs a small process per watch, so a Run
  measures it only when asked: ``Run(..., watch_frozen=True)``, or for Runs a WorkloadHandle
  starts, inside ``with watching_frozen():``;
- neighbours: other processes' share of the whole machine, the job's own CPU set apart.

What the figures mean for a verdict is preflight.host.rule."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from preflight.host import rule
from preflight.host.load import FreezeMeter, Jiffies, neighbour_share, read_jiffies, steal_fraction

_FROZEN_ASKED: ContextVar[bool] = ContextVar("preflight_watch_frozen", default=False)


@contextmanager
def watching_frozen() -> Iterator[None]:
    """Runs started in this block (in this thread) also measure the harness frozen."""
    token = _FROZEN_ASKED.set(True)
    try:
        yield
    finally:
        _FROZEN_ASKED.reset(token)


def frozen_asked() -> bool:
    return _FROZEN_ASKED.get()


@dataclass(frozen=True)
class HostFigures:
    """The machine over one stretch; None: no figure (not measured, or no /proc/stat)."""

    steal: float | None = None
    frozen: float | None = None
    neighbours: float | None = None
    frozen_s: float = 0.0  # the harness frozen, in seconds (0 when not measured)

    @property
    def disturbed(self) -> bool:
        return rule.disturbed(self.steal, self.frozen, self.neighbours)

    def __str__(self) -> str:
        return rule.host_text(self.steal, self.frozen, self.neighbours)


class HostWatch:
    """``start()`` / ``stop()`` around a stretch (or ``with HostWatch() as machine:``); then
    ``figures(job_cpu_s)``, or ``steal``, ``frozen``, ``neighbours(job_cpu_s)`` and
    ``meter.frozen_s``. ``frozen=False`` measures steal and neighbours only."""

    def __init__(self, *, frozen: bool = True) -> None:
        self.meter: FreezeMeter | None = FreezeMeter() if frozen else None
        self.before: Jiffies | None = None
        self.after: Jiffies | None = None
        self._running = False

    def start(self) -> HostWatch:
        # The meter first: its child's start-up is the harness's, not a neighbour's.
        if self.meter is not None:
            self.meter.__enter__()
        self.before, self._running = read_jiffies(), True
        return self

    def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        self.after = read_jiffies()
        if self.meter is not None:
            self.meter.__exit__(None, None, None)

    def __enter__(self) -> HostWatch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def steal(self) -> float | None:
        return steal_fraction(self.before, self.after)

    @property
    def frozen(self) -> float | None:
        return None if self.meter is None or self._running else self.meter.fraction

    def neighbours(self, job_cpu_s: float) -> float | None:
        """Other processes' share of the machine, the job's ``job_cpu_s`` set apart."""
        return neighbour_share(self.before, self.after, job_cpu_s)

    def figures(self, job_cpu_s: float) -> HostFigures:
        frozen_s = self.meter.frozen_s if self.meter is not None and not self._running else 0.0
        return HostFigures(self.steal, self.frozen, self.neighbours(job_cpu_s), frozen_s)
