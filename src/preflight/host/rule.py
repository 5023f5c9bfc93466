"""The host rule, in one place (pure): when what the machine did while a wall-clock figure was
measured makes that figure the machine's rather than the job's, and how that is written.

Three figures describe the machine over a stretch (preflight.host.watch measures them):
``steal`` (the hypervisor's share of the CPU, /proc/stat), ``frozen`` (the share of the time
the harness could not run at all: a frozen or throttled cgroup shows no steal) and
``neighbours`` (other processes' share of the whole machine, the job's own CPU set apart).
None means "no figure", never zero.

- ``disturbed``: the machine was taken: steal or frozen above HOST_DISTURBED_SHARE, or the
  neighbours above NEIGHBOURS_DISTURBED_SHARE. A wall-clock failure measured then is
  inconclusive (docs/contract.md "Statuses"), never the job's failure.
- ``excused``: a failed throughput or stall verdict is near enough to its limit that a taken
  machine could explain it (EXCUSE_FACTOR); a tenfold slowdown is the job's, whatever the
  machine did.
- ``host_text`` (experiments, soak, tests) and ``attempt_host_text`` (the ``preflight check``
  report's host column) write the figures; ``taken_text`` is the clause a check verdict gives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# A timing measurement is not the job's when the host stole (or froze the harness for) more
# than this share of the time it ran: on a host taking 70% in whole-second bursts a clean
# datagen read a 1.5 s stall and a 0.52 throughput ratio. Quiet hours here show 0-6% steal;
# the bursts that broke runs, 60-97%.
HOST_DISTURBED_SHARE = 0.25
# Other processes using more than half of the machine (a neighbour's build on a 2-core CI
# box) left the job less than the CPU it had when measured alone.
NEIGHBOURS_DISTURBED_SHARE = 0.5
# A wall-clock alarm is excused by a taken machine only when it is within this factor of its
# limit: a throughput ratio of at least half the limit, a stall of at most twice it. A
# tenfold slowdown or a stall four times the limit is the job's, whatever the machine did.
EXCUSE_FACTOR = 2.0
DEGRADATION_DEFAULT = 0.2  # a throughput verdict's limit when its JSON does not say

NOT_MEASURED = "—"


def taken(share: float | None) -> bool:
    """One host figure (steal, or the harness frozen) above HOST_DISTURBED_SHARE."""
    return share is not None and share > HOST_DISTURBED_SHARE


def disturbed(steal: float | None, frozen: float | None,
              neighbours: float | None = None) -> bool:
    """The host (or the job's neighbours) took enough of the machine that a wall-clock
    figure is theirs, not the job's."""
    return (taken(max(steal or 0.0, frozen or 0.0))
            or (neighbours or 0.0) > NEIGHBOURS_DISTURBED_SHARE)


def excused(verdict: Any) -> bool:
    """Whether a failed throughput or stall verdict is small enough that a taken machine
    could explain it (a detector verdict, or its JSON)."""
    fields: Mapping[str, Any] = (verdict.to_json() if hasattr(verdict, "to_json")
                                 else dict(verdict))
    if fields.get("kind") == "throughput":
        floor = (1.0 - float(fields.get("degradation_max", DEGRADATION_DEFAULT))) / EXCUSE_FACTOR
        return float(fields.get("ratio_last_first", 0.0)) >= floor
    if fields.get("kind") == "stall":
        return float(fields.get("longest_stall_s", 0.0)) <= EXCUSE_FACTOR * float(
            fields.get("stall_s", 0.0))
    return False


def host_text(steal: float | None, frozen: float | None,
              neighbours: float | None = None) -> str:
    """"steal 3%, harness frozen 0%, other processes 12% of the machine" (an experiment's
    host figures; the steal is always named, "steal unknown" without a figure)."""
    parts = [f"steal {steal:.0%}" if steal is not None else "steal unknown"]
    if frozen is not None:
        parts.append(f"harness frozen {frozen:.0%}")
    if neighbours is not None:
        parts.append(f"other processes {neighbours:.0%} of the machine")
    return ", ".join(parts)


def attempt_host_text(steal: float | None, frozen: float | None) -> str:
    """"steal 0%, frozen 64%": the ``preflight check`` report's host column; — when
    neither was measured."""
    parts = [f"steal {steal:.0%}"] if steal is not None else []
    if frozen is not None:
        parts.append(f"frozen {frozen:.0%}")
    return ", ".join(parts) or NOT_MEASURED


def taken_text(steal: float | None, frozen: float | None) -> str:
    """"60% host CPU steal and the harness frozen 64% of the time": what a check verdict
    made inconclusive by the host says it was measured under."""
    parts = [f"{steal:.0%} host CPU steal"] if steal is not None else []
    parts += [f"the harness frozen {frozen:.0%} of the time"] if frozen is not None else []
    return " and ".join(parts)
