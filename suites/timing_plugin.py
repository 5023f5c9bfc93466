"""This repository's own test scheduling, loaded by the root conftest (never by the plugin
users install): a test marked `timing` runs an experiment that measures wall time (the
readiness suites' stability, overhead and alert experiments), so under pytest-xdist it
holds the machine alone and runs after the others. `preflight gate` does not need any of
it: it schedules its own experiments (preflight.experiments.schedule), and a wall-clock
figure taken while the host took the CPU is inconclusive there, not a failure.

The lock is a readers-writer lock across xdist workers: every other test holds the machine
shared, a timing test exclusively. Two lock files (flock, so a crashed worker releases
them): a writer first takes the turnstile and keeps it, so readers that arrive later queue
behind it instead of starving it; then it waits for the readers already running to leave.
Every wait is bounded and polled, since flock itself has no timeout.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pytest

POLL_S = 0.05
WAIT_S_DEFAULT = 3600.0  # longer than any test the suites run: a bound, not a schedule


class MachineLockTimeout(TimeoutError):
    pass


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "timing: measures wall time; runs alone (no other test of the run starts while it "
        "runs) and after the other tests",
    )


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Timing tests last: each waits for the machine to itself, and at the end the other
    # worker has less left to wait for.
    items[:] = sorted(items, key=lambda item: item.get_closest_marker("timing") is not None)


# tryfirst: outside pytest-timeout's wrapper, so the wait for the machine is not counted
# against the test's own timeout (it is bounded by the lock's wait instead). Inside it, a
# test queued behind a neighbour's timing tests timed out in this hook and took its xdist
# worker down with an INTERNALERROR.
@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Under xdist: a timing test holds the machine alone, every other test shares it, from
    its setup (including the module and session fixtures it is first to need, which count
    as load) to its teardown."""
    directory = _lock_dir(item.config)
    alone = item.get_closest_marker("timing") is not None
    with nullcontext() if directory is None else hold(directory, alone):
        return (yield)


def _lock_dir(config: pytest.Config) -> Path | None:
    # Beside the xdist workers' temp directories, which pytest cleans up; tmp_path_factory
    # is the tmp_path fixture's own factory, set at configure time.
    factory = getattr(config, "_tmp_path_factory", None)
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return None if factory is None else lock_dir(factory.getbasetemp(), worker)


def lock_dir(worker_basetemp: Path, worker: str | None) -> Path | None:
    """Where one run's xdist workers meet: beside their per-worker temp directories
    (``.../pytest-N/popen-gw0``). None outside xdist: nothing runs beside a test there."""
    if not worker:
        return None
    return worker_basetemp.parent / "preflight-machine"


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
