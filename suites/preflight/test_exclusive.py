"""suites.timing_plugin's machine lock: timing tests hold the machine alone; others share it;
a queued writer is not starved by readers that arrive after it; every wait is bounded.
Ordered by the lock files' own state, never by how long a thread took to get somewhere."""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

import pytest

from suites import timing_plugin as exclusive

BOUND_S = 30.0  # a bound on each wait in this test, never a speed expectation


def _in_thread(
    directory: Path, exclusive_: bool, log: list[str], name: str, release: threading.Event
) -> threading.Thread:
    def body() -> None:
        with exclusive.hold(directory, exclusive_, wait_s=BOUND_S):
            log.append(f"{name} in")
            release.wait(BOUND_S)
            log.append(f"{name} out")

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread


def _wait_for(log: list[str], entry: str) -> None:
    event = threading.Event()
    for _ in range(int(BOUND_S / 0.01)):
        if entry in log:
            return
        event.wait(0.01)
    raise AssertionError(f"{entry!r} never happened: {log}")


def _locked(path: Path) -> bool:
    """Someone holds ``path`` exclusively (a probe that takes nothing it finds free)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing the description drops a lock the probe took
    return False


def _wait_until_locked(path: Path) -> None:
    event = threading.Event()
    for _ in range(int(BOUND_S / 0.01)):
        if _locked(path):
            return
        event.wait(0.01)
    raise AssertionError(f"{path} was never taken")


def test_writer_waits_for_readers_and_later_readers_queue_behind_it(tmp_path: Path) -> None:
    log: list[str] = []
    go_r1, go_w, go_r2 = threading.Event(), threading.Event(), threading.Event()
    r1 = _in_thread(tmp_path, False, log, "r1", go_r1)
    _wait_for(log, "r1 in")
    w = _in_thread(tmp_path, True, log, "w", go_w)
    _wait_until_locked(tmp_path / "turnstile.lock")  # the writer holds it, waiting for r1
    r2 = _in_thread(tmp_path, False, log, "r2", go_r2)
    threading.Event().wait(0.2)  # a chance to break the order, if the lock allowed it
    assert log == ["r1 in"]  # the writer waits for r1; r2 waits behind the writer
    go_r1.set()
    _wait_for(log, "w in")
    assert "r2 in" not in log  # nothing starts while the timing test runs
    go_w.set()
    _wait_for(log, "r2 in")
    go_r2.set()
    for thread in (r1, w, r2):
        thread.join(BOUND_S)
    assert log == ["r1 in", "r1 out", "w in", "w out", "r2 in", "r2 out"]


def test_readers_share(tmp_path: Path) -> None:
    with exclusive.hold(tmp_path, False, wait_s=BOUND_S):
        with exclusive.hold(tmp_path, False, wait_s=BOUND_S):
            pass


def test_wait_is_bounded(tmp_path: Path) -> None:
    with exclusive.hold(tmp_path, False, wait_s=BOUND_S):
        with pytest.raises(exclusive.MachineLockTimeout, match="machine"):
            with exclusive.hold(tmp_path, True, wait_s=0.2):
                pass
    with exclusive.hold(tmp_path, True, wait_s=BOUND_S):  # the timed-out writer let go
        pass


def test_no_lock_outside_xdist(tmp_path: Path) -> None:
    assert exclusive.lock_dir(tmp_path / "popen-gw0", None) is None
    assert exclusive.lock_dir(tmp_path / "popen-gw0", "gw0") == tmp_path / "preflight-machine"
