"""Exclusive run lock: ``fcntl.flock`` on ``DIR/.lock``.

The kernel drops a flock when the holding process dies (SIGKILL included), so there are no
stale locks to clean up. The holder's pid, host and start time are written inside only to
make the refusal message useful. Note: a child made by fork() shares the lock; workloads
start workers with spawn/forkserver so a killed parent frees it at once.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import stat
import time
from pathlib import Path
from types import TracebackType

from preflight.durable.errors import BadInputError, LockedError
from preflight.durable.paths import open_nofollow

LOCK_NAME = ".lock"
HOLDER_BYTES_MAX = 4096


class RunLock:
    """``with RunLock(dir):`` holds the directory exclusively or raises ``LockedError``."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        if not self.directory.is_dir():
            raise BadInputError(f"RunLock: {self.directory} is not a directory")
        # O_NOFOLLOW: a planted `.lock -> VICTIM` would otherwise be truncated and
        # overwritten with the holder's details.
        fd = open_nofollow(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _is_regular(fd):
            os.close(fd)
            raise BadInputError(f"RunLock: {self.path} is not a regular file")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise LockedError(str(self.directory), holder) from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _is_regular(fd: int) -> bool:
    return stat.S_ISREG(os.fstat(fd).st_mode)


def _read_holder(fd: int) -> str:
    raw = os.pread(fd, HOLDER_BYTES_MAX, 0)
    try:
        info = json.loads(raw.decode())
        started = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(float(info["started_at"])))
        return f"pid {int(info['pid'])} on {info['host']} since {started}"
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return "unknown holder (lock file unreadable)"
