"""RunLock: exclusive across processes, freed when the holder is SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from preflight.durable import BadInputError, LockedError, RunLock

HOLD_CODE = (
    "import sys, time\n"
    "from preflight.durable import RunLock\n"
    "lock = RunLock(sys.argv[1]).acquire()\n"
    "print('held', flush=True)\n"
    "time.sleep(60)\n"
)
WAIT_S = 30.0


def _start_holder(directory) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_CODE, str(directory)], stdout=subprocess.PIPE, text=True
    )
    line = proc.stdout.readline()  # bounded by the holder's own 60 s sleep
    assert line.strip() == "held"
    return proc


def test_second_process_refused_naming_holder(tmp_path):
    holder = _start_holder(tmp_path)
    try:
        with pytest.raises(LockedError) as info:
            RunLock(tmp_path).acquire()
        assert f"pid {holder.pid}" in str(info.value)
    finally:
        holder.kill()
        holder.wait(timeout=WAIT_S)


def test_sigkilled_holder_frees_the_lock(tmp_path):
    holder = _start_holder(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=WAIT_S)
    deadline = time.monotonic() + WAIT_S
    while True:  # the kernel releases the flock when the process is reaped
        try:
            lock = RunLock(tmp_path).acquire()
            break
        except LockedError:
            assert time.monotonic() < deadline, "lock not freed after SIGKILL"
            time.sleep(0.05)
    assert lock.held
    lock.release()


def test_same_process_second_lock_refused_then_released(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(LockedError):
            RunLock(tmp_path).acquire()
    with RunLock(tmp_path) as again:
        assert again.held


def test_missing_directory(tmp_path):
    with pytest.raises(BadInputError, match="not a directory"):
        RunLock(tmp_path / "missing").acquire()
