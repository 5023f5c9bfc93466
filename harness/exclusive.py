"""Timing tests run alone: a readers-writer lock across pytest-xdist workers.

A test marked ``timing`` measures a wall-time ratio (checkpoint overhead, throughput over a
run). On this 2-core machine a concurrent test on the other worker moves such a ratio by
10-25%, far more than the 3.5% being judged. So every other test holds the machine lock
shared, and a timing test holds it exclusively: it starts once the running tests have
finished, and no test starts while it runs.

Two lock files (flock, so a crashed worker releases them): a writer first takes the
turnstile and keeps it, so readers that arrive later queue behind it instead of starving
it; then it waits for the readers already running to leave. Every wait is bounded and
polled, since flock itself has no timeout.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

POLL_S = 0.05
WAIT_S_DEFAULT = 3600.0  # longer than any test the gate runs: a bound, not a schedule


class MachineLockTimeout(TimeoutError):
    pass


def _flock(path: Path, mode: int, deadline_s: float, what: str) -> int:
    """An fd holding ``mode`` (LOCK_SH/LOCK_EX) on ``path``; polled until ``deadline_s``."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() > deadline_s:
                    raise MachineLockTimeout(f"{path}: {what} not granted in time") from None
                time.sleep(POLL_S)
    except BaseException:
        os.close(fd)
        raise


def _release(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


@contextmanager
def hold(directory: Path, exclusive: bool, wait_s: float = WAIT_S_DEFAULT) -> Iterator[None]:
    """Hold the machine shared (ordinary tests) or exclusively (timing tests)."""
    directory.mkdir(parents=True, exist_ok=True)
    turnstile, machine = directory / "turnstile.lock", directory / "machine.lock"
    deadline_s = time.monotonic() + wait_s
    gate = _flock(turnstile, fcntl.LOCK_EX, deadline_s, "the turnstile")
    if exclusive:
        try:
            fd = _flock(machine, fcntl.LOCK_EX, deadline_s, "the machine, exclusively")
        except BaseException:
            _release(gate)
            raise
        try:
            yield
        finally:
            _release(fd)
            _release(gate)
        return
    try:
        fd = _flock(machine, fcntl.LOCK_SH, deadline_s, "the machine, shared")
    finally:
        _release(gate)  # passed through: the next reader (or a queued writer) may go
    try:
        yield
    finally:
        _release(fd)


def lock_dir(worker_basetemp: Path, worker: str | None) -> Path | None:
    """Where one run's xdist workers meet: beside their per-worker temp directories
    (``.../pytest-N/popen-gw0``), which pytest cleans up. None outside xdist."""
    if not worker:
        return None
    return worker_basetemp.parent / "preflight-machine"


class Holder:
    """One process's hold on the machine lock, which a block may upgrade.

    A test holds the machine for its whole run protocol: setup, call and teardown, so the
    module and session fixtures it sets up (a trained model, a started server) count as
    load too. A fixture that measures asks to be alone inside a test that only shares the
    machine: the share is given up, the machine taken exclusively, and the share taken
    back afterwards (flock has no atomic upgrade, and asking for both would wait forever
    on ourselves). With no directory (outside xdist) nothing is held."""

    def __init__(self, directory: Path | None, wait_s: float = WAIT_S_DEFAULT) -> None:
        self.directory = directory
        self.wait_s = wait_s
        self.mode: str | None = None  # None, "shared" or "alone"
        self._stack = ExitStack()

    def _take(self, alone: bool) -> None:
        assert self.mode is None, f"already holding the machine ({self.mode})"
        if self.directory is not None:
            self._stack.enter_context(hold(self.directory, alone, self.wait_s))
        self.mode = "alone" if alone else "shared"

    def _give_back(self) -> None:
        self._stack.close()
        self.mode = None

    @contextmanager
    def test(self, alone: bool) -> Iterator[None]:
        """Hold the machine for one test: alone for a timing test, else shared."""
        self._take(alone)
        try:
            yield
        finally:
            self._give_back()

    @contextmanager
    def alone(self) -> Iterator[None]:
        """Run the block with no other test of the run beside it."""
        if self.mode == "alone":
            yield
            return
        previous = self.mode
        if previous is not None:
            self._give_back()
        self._take(True)
        try:
            yield
        finally:
            self._give_back()
            if previous is not None:
                self._take(False)
