"""The machine's figures beside a job, under their earlier names: ``MachineWatch`` is
preflight.host.watch.HostWatch, ``neighbour_share`` is preflight.host.load's. Kept for
preflight.soak.command, which wraps its Run in a MachineWatch; a Run now carries its own
figures (``run.host``)."""

from __future__ import annotations

from preflight.host.load import Jiffies, neighbour_share, read_jiffies
from preflight.host.watch import HostWatch as MachineWatch

__all__ = ["Jiffies", "MachineWatch", "neighbour_share", "read_jiffies"]
