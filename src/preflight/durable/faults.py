"""Named fault points, armed only through the environment.

``point("atomic.before_replace")`` is a no-op unless ``PREFLIGHT_FAULTS`` names it, e.g.
``PREFLIGHT_FAULTS="atomic.before_replace:kill@2,ledger.before_commit:raise"``.
Actions: ``kill`` (SIGKILL self), ``raise`` (OSError), ``enospc`` (OSError ENOSPC),
``memoryerror`` (MemoryError), ``nan`` (returns True so the caller can plant a NaN),
``sleep=S`` (sleeps S seconds, at most 600). ``@N`` fires on the Nth hit (default 1).
With ``PREFLIGHT_FAULTS_TRACE=FILE`` every hit appends the point's name to FILE, so a
harness can list the points a job passes without knowing the job.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import time
from dataclasses import dataclass

from preflight.durable.errors import BadInputError

ENV_FAULTS = "PREFLIGHT_FAULTS"
ENV_TRACE = "PREFLIGHT_FAULTS_TRACE"
ACTIONS = ("kill", "raise", "enospc", "memoryerror", "nan", "sleep")
SLEEP_S_MAX = 600.0
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


@dataclass(frozen=True)
class FaultRule:
    point: str
    action: str
    nth_hit: int = 1
    sleep_s: float = 0.0


def parse_faults(spec: str) -> dict[str, FaultRule]:
    """Parse ``name:action[=arg][@N],...`` into rules keyed by point name (pure)."""
    rules: dict[str, FaultRule] = {}
    for raw in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, rest = raw.partition(":")
        if not sep or not _NAME_RE.match(name):
            raise BadInputError(f"{ENV_FAULTS}: bad entry {raw!r}: expected name:action[@N]")
        action, _, nth = rest.partition("@")
        action, _, arg = action.partition("=")
        if action not in ACTIONS:
            raise BadInputError(f"{ENV_FAULTS}: unknown action {action!r} in {raw!r}")
        if nth and (not nth.isdigit() or int(nth) < 1):
            raise BadInputError(f"{ENV_FAULTS}: bad hit count {nth!r} in {raw!r}")
        sleep_s = 0.0
        if action == "sleep":
            try:
                sleep_s = float(arg)
            except ValueError:
                raise BadInputError(f"{ENV_FAULTS}: sleep needs seconds in {raw!r}") from None
            if not 0 <= sleep_s <= SLEEP_S_MAX:
                raise BadInputError(f"{ENV_FAULTS}: sleep must be in [0, {SLEEP_S_MAX}]")
        rules[name] = FaultRule(name, action, int(nth) if nth else 1, sleep_s)
    return rules


class _State:
    """Per-process hit counters; re-read when the environment string changes (tests)."""

    def __init__(self) -> None:
        self.spec: str | None = None
        self.rules: dict[str, FaultRule] = {}
        self.hits: dict[str, int] = {}

    def refresh(self) -> None:
        spec = os.environ.get(ENV_FAULTS, "")
        if spec != self.spec:
            self.spec = spec
            self.rules = parse_faults(spec)
            self.hits = {}


_state = _State()


def _trace(name: str) -> None:
    path = os.environ.get(ENV_TRACE)
    if not path:
        return
    # O_APPEND writes of one short line are atomic, so concurrent workers never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (name + "\n").encode())
    finally:
        os.close(fd)


def point(name: str) -> bool:
    """Pass the fault point ``name``; fire its armed action on the configured hit.

    Returns True only for the ``nan`` action (the caller plants a non-finite value).
    """
    _trace(name)
    _state.refresh()
    rule = _state.rules.get(name)
    if rule is None:
        return False
    count = _state.hits.get(name, 0) + 1
    _state.hits[name] = count
    if count != rule.nth_hit:
        return False
    return _fire(rule)


def _fire(rule: FaultRule) -> bool:
    if rule.action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(10)  # SIGKILL is asynchronous only in theory; never continue past it.
    if rule.action == "raise":
        raise OSError(errno.EIO, f"injected fault at {rule.point}")
    if rule.action == "enospc":
        raise OSError(errno.ENOSPC, f"injected ENOSPC at {rule.point}")
    if rule.action == "memoryerror":
        raise MemoryError(f"injected MemoryError at {rule.point}")
    if rule.action == "sleep":
        time.sleep(rule.sleep_s)
        return False
    return rule.action == "nan"
