"""Process groups and the processes a job leaves behind: the kernel kills the job if the
harness dies (PR_SET_PDEATHSIG), a group is killed whole, and every process a run starts
carries a token in its environment so that one which escaped its group (setsid) is still
found and killed."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

TEXT_BYTES_MAX = 16 << 20  # stdout_text()/stderr_text() return at most the last this-many
PARENT_GONE_EXIT = 125
# Every process of a Run carries this variable (inherited through fork/exec, setsid and
# double forks alike), so a descendant that left the process group is still found.
ENV_RUN_TOKEN = "PREFLIGHT_RUN_TOKEN"
ENVIRON_BYTES_MAX = 1 << 20  # /proc/PID/environ read at most this far
LEFTOVER_SCAN_PIDS_MAX = 100_000  # a host with more processes is scanned this far
LEFTOVER_KILL_WAIT_S = 5.0
LEFTOVER_POLL_S = 0.02


_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    # Resolved once in the parent: the forked child must not dlopen or look up symbols.
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_PRCTL = _load_prctl()


def _child_setup(parent_pid: int, preexec: Callable[[], None] | None) -> Callable[[], None]:
    """Runs in the child after setsid, before exec."""

    def setup() -> None:
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # The harness may have died between fork and prctl; then nobody would kill us.
        if os.getppid() != parent_pid:
            os._exit(PARENT_GONE_EXIT)
        if preexec is not None:
            preexec()

    return setup


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _kill_group(pgid: int, sig: int) -> bool:
    """Signal a whole process group; False when no member is left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def _tail_text(path: Path, bytes_max: int = TEXT_BYTES_MAX) -> str:
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            handle.seek(max(0, size - bytes_max))
            return handle.read(bytes_max).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def _read_tail(handle: IO[bytes], bytes_max: int = TEXT_BYTES_MAX) -> str:
    """The last ``bytes_max`` of an open temporary file, as text."""
    size = handle.seek(0, os.SEEK_END)
    handle.seek(max(0, size - bytes_max))
    return handle.read(bytes_max).decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Leftover:
    """A process the job left running after it ended (outside its process group)."""

    pid: int
    cmdline: str


def _has_token(pid: int, needle: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            environ = handle.read(ENVIRON_BYTES_MAX)
    except OSError:  # gone, or another user's
        return False
    return needle in b"\0" + environ


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read(4096)
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode("utf-8", errors="replace").strip()[:200]


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read(1024)
    except OSError:
        return False
    return stat.rpartition(b")")[2].split()[:1] != [b"Z"]


def tagged_processes(token: str, exclude: frozenset[int] = frozenset()) -> list[int]:
    """Live processes whose environment carries ``ENV_RUN_TOKEN=token`` (bounded scan)."""
    needle = f"\0{ENV_RUN_TOKEN}={token}\0".encode()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    pids = [int(e) for e in entries[:LEFTOVER_SCAN_PIDS_MAX] if e.isdigit()]
    me = os.getpid()
    return [
        pid
        for pid in pids
        if pid != me and pid not in exclude and _has_token(pid, needle) and _alive(pid)
    ]


def kill_leftovers(token: str, group: int) -> list[Leftover]:
    """SIGKILL every live process carrying ``token`` outside process group ``group`` (its
    members are the group kill's); what was found (bounded wait)."""
    found = [
        Leftover(pid, _cmdline(pid)) for pid in tagged_processes(token) if _pgid(pid) != group
    ]
    for item in found:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(item.pid, signal.SIGKILL)
    deadline = time.monotonic() + LEFTOVER_KILL_WAIT_S
    while any(_alive(item.pid) for item in found) and time.monotonic() < deadline:
        time.sleep(LEFTOVER_POLL_S)
    return found
