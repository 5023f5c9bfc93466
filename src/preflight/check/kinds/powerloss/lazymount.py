"""The harness's side of the LazyFS-style FUSE layer (preflight.check.kinds.powerloss.lazyfs):
whether a mount can be made here, the layer as a child process (`LazyMount`), its power
cut (`LazyMount.crash`: SIGKILL, the page cache dies with it) and its clean unmount."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

MOUNT_TIMEOUT_S = 10.0
UNMOUNT_TIMEOUT_S = 10.0
POLL_S = 0.02
SERVER_MODULE = "preflight.check.kinds.powerloss.lazyfs"  # python -m SERVER BACKING MOUNT


def mounted(path: Path) -> bool:
    """From the mount table: ``os.path.ismount`` says False for a mount whose server died
    (its stat fails with ENOTCONN), which is exactly the mount that must still go."""
    target = os.path.realpath(path)
    with open("/proc/self/mounts") as table:
        return any(
            line.split()[1].replace("\\040", " ") == target for line in table if line.strip()
        )


def unavailable() -> str:
    """Why a FUSE mount can't be made here ("" when it may: `LazyMount` proves it)."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing (no FUSE in this kernel or container)"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is not installed (apt-get install fuse3)"
    try:
        import mfusepy  # noqa: F401  (loads libfuse: an OSError when it is missing)
    except ImportError:
        return "mfusepy is not installed (pip install '.[fuse]')"
    except OSError as exc:
        return f"libfuse cannot be loaded: {exc} (apt-get install fuse3)"
    return ""


class LazyMount:
    """The layer as a child process: ``with LazyMount(backing, mnt) as m: ... m.crash()``."""

    def __init__(self, backing: Path, mountpoint: Path, log: Path | None = None) -> None:
        self.backing, self.mountpoint = backing, mountpoint
        self.log = log or mountpoint.with_name(mountpoint.name + ".lazyfs.log")
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LazyMount:
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", SERVER_MODULE, str(self.backing)]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([*argv, str(self.mountpoint)], stderr=log, stdout=log)
        deadline = time.monotonic() + MOUNT_TIMEOUT_S
        while not mounted(self.mountpoint):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.crash()
                tail = self.log.read_text(errors="replace")[-600:]
                raise OSError(f"lazyfs did not mount {self.mountpoint}: {tail.strip()}")
            time.sleep(POLL_S)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def crash(self) -> None:
        """The power cut: the server dies with its cache; the mount goes with it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(UNMOUNT_TIMEOUT_S)
        self._unmount(lazy=True)

    def close(self) -> None:
        """A clean unmount: the server flushes its cache and exits."""
        if self.proc is None or self.proc.poll() is not None:
            self._unmount(lazy=True)
            return
        self._unmount(lazy=False)
        try:
            self.proc.wait(UNMOUNT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.crash()

    def _unmount(self, lazy: bool) -> None:
        """Bounded; a busy mount is detached lazily so that no stuck mount outlives us."""
        if not mounted(self.mountpoint):
            return
        argv = ["fusermount3", "-u", *(["-z"] if lazy else []), str(self.mountpoint)]
        subprocess.run(argv, capture_output=True, timeout=UNMOUNT_TIMEOUT_S)
        if mounted(self.mountpoint):  # fusermount3 may have lost a race with auto_unmount
            subprocess.run(
                ["umount", "-l", str(self.mountpoint)], timeout=UNMOUNT_TIMEOUT_S, check=False
            )
