"""LazyFS-style FUSE layer: a passthrough over a backing dir whose un-fsynced data lives
only in this process's memory, so a crash (the process killed) leaves in the backing dir
exactly what the job made durable.

Fault model (docs/powerloss.md, "FUSE mode"):

- **Data.** Writes and truncations of a file are kept in a per-inode page cache (4 KiB
  pages, as LazyFS). ``fsync``/``fdatasync`` write the file's pages to the backing file and
  fsync it. Reads merge the cache over the backing file. Data written through ``mmap``
  reaches this layer as ``write`` calls (the kernel writes back the FUSE mount's dirty pages),
  so it is covered too, from the moment the kernel writes it back.
- **Names.** Simplification, as LazyFS: create, rename, unlink, mkdir and rmdir go through to
  the backing dir at once, in order (ext4's journal behaviour, the trace mode's
  ``keep-names``). A file created and renamed but never fsynced therefore survives a crash
  with the name and zero (or its old durable) bytes: the classic zero-length file.
- **Crash.** `LazyMount.crash` SIGKILLs the server: the page cache dies with it and the mount
  goes (``auto_unmount``). A clean `LazyMount.close` unmounts and flushes the cache first, as
  a clean shutdown of a real file system would.

Not seen: ``sync(2)``/``syncfs(2)`` (libfuse 3.14 gets no request for them; data stays
pending, which is stricter than a real disk); hard and symbolic links and extended
attributes are not served (ENOSYS).

    python -m preflight.check.kinds.powerloss.lazyfs BACKING MOUNTPOINT   # serve in the foreground

The harness starts, crashes and unmounts it through `LazyMount`
(preflight.check.kinds.powerloss.lazymount; also importable from here).
"""

from __future__ import annotations

import errno
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

PAGE = 4096
CACHE_BYTES_MAX = 1 << 30  # more pending data than this fails the write (ENOSPC)
STAT_KEYS = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_ino", "st_blocks")


@dataclass
class Pending:
    """One inode's un-durable state: its size now, the smallest size it had since its last
    fsync (backing bytes past ``low`` were truncated away: they read as zeros), the pages
    written since, and a private fd on the backing file so a flush needs no path."""

    fd: int
    size: int
    low: int
    pages: dict[int, bytearray] = field(default_factory=dict)
    mtime_ns: int = 0

    def backing_page(self, index: int) -> bytearray:
        """Page ``index`` as the backing file holds it below ``low``, zeros past it."""
        start = index * PAGE
        valid = max(0, min(PAGE, self.low - start))
        data = os.pread(self.fd, valid, start) if valid else b""
        return bytearray(data.ljust(PAGE, b"\0"))

    def write(self, data: bytes, offset: int) -> None:
        end = offset + len(data)
        pos = offset
        while pos < end:
            index, within = divmod(pos, PAGE)
            page = self.pages.get(index)
            if page is None:
                page = self.pages[index] = self.backing_page(index)
            take = min(PAGE - within, end - pos)
            page[within : within + take] = data[pos - offset : pos - offset + take]
            pos += take
        self.size = max(self.size, end)
        self.mtime_ns = time.time_ns()

    def read(self, size: int, offset: int) -> bytes:
        end = min(offset + size, self.size)
        out = bytearray()
        pos = offset
        while pos < end:
            index, within = divmod(pos, PAGE)
            page = self.pages.get(index) or self.backing_page(index)
            take = min(PAGE - within, end - pos)
            out += page[within : within + take]
            pos += take
        return bytes(out)

    def truncate(self, length: int) -> None:
        if length < self.size:
            last = length // PAGE
            for index in [i for i in self.pages if i > last or (i == last and length % PAGE == 0)]:
                del self.pages[index]
            if last in self.pages:
                page = self.pages[last]
                page[length % PAGE :] = bytes(PAGE - length % PAGE)
            self.low = min(self.low, length)
        self.size = length
        self.mtime_ns = time.time_ns()

    def flush(self) -> None:
        """Make this state the backing file's durable content."""
        os.ftruncate(self.fd, self.low)  # what was truncated away must read as zeros
        os.ftruncate(self.fd, self.size)
        for index, page in sorted(self.pages.items()):
            start = index * PAGE
            if start < self.size:
                os.pwrite(self.fd, bytes(page[: self.size - start]), start)
        os.fsync(self.fd)


def _fuse_error(code: int) -> OSError:
    return OSError(code, os.strerror(code))  # mfusepy answers an OSError with its errno


class LazyFS:
    """The mfusepy Operations: every path is relative to ``root`` (the backing dir); file
    handles are fds on backing files; ``pending`` maps an inode to its un-durable state."""

    use_ns = True

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)
        self.pending: dict[int, Pending] = {}
        self.inodes: dict[int, int] = {}  # fh -> inode
        self._mutex = threading.Lock()

    def _path(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    # ---- the page cache ----------------------------------------------------------------

    def _state(self, fh: int) -> Pending:
        """The inode's pending state, made from the backing file on its first change."""
        ino = self.inodes[fh]
        state = self.pending.get(ino)
        if state is None:
            if PAGE * sum(len(p.pages) for p in self.pending.values()) > CACHE_BYTES_MAX:
                raise _fuse_error(errno.ENOSPC)
            size = os.fstat(fh).st_size
            fd = os.open(f"/proc/self/fd/{fh}", os.O_RDWR)
            state = self.pending[ino] = Pending(fd, size, size)
        return state

    def _drop(self, ino: int) -> None:
        state = self.pending.pop(ino, None)
        if state is not None:
            os.close(state.fd)

    def _drop_if_last_name(self, full: str) -> None:
        """An inode whose last name goes can't be reached after a crash: forget its data."""
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            return
        if st.st_nlink <= 1:
            self._drop(st.st_ino)

    def flush_all(self) -> None:
        with self._mutex:
            for ino in list(self.pending):
                self.pending[ino].flush()
                self._drop(ino)

    def crash(self) -> None:
        """Lose every un-durable byte (what a SIGKILL of the server also does)."""
        with self._mutex:
            for ino in list(self.pending):
                self._drop(ino)

    # ---- attributes and directories ----------------------------------------------------

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        st = os.lstat(self._path(path))
        attrs: dict[str, Any] = {key: getattr(st, key) for key in STAT_KEYS}
        attrs.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
        with self._mutex:
            state = self.pending.get(st.st_ino)
            if state is not None:
                attrs["st_size"] = state.size
                attrs["st_mtime"] = max(st.st_mtime_ns, state.mtime_ns)
        return attrs

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._path(path))]

    def access(self, path: str, amode: int) -> int:
        if not os.access(self._path(path), amode):
            raise _fuse_error(errno.EACCES)
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        sv = os.statvfs(self._path(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files")
        return {key: getattr(sv, key) for key in (*keys, "f_flag", "f_frsize", "f_namemax")}

    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._path(path), mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        os.lchown(self._path(path), uid, gid)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        os.utime(self._path(path), ns=times, follow_symlinks=False)
        return 0

    def readlink(self, path: str) -> str:
        return os.readlink(self._path(path))

    # ---- names: through at once, in order (see the module's docstring) ------------------

    def mkdir(self, path: str, mode: int) -> int:
        os.mkdir(self._path(path), mode)
        return 0

    def rmdir(self, path: str) -> int:
        os.rmdir(self._path(path))
        return 0

    def unlink(self, path: str) -> int:
        full = self._path(path)
        with self._mutex:
            self._drop_if_last_name(full)
            os.unlink(full)
        return 0

    def rename(self, old: str, new: str) -> int:
        source, target = self._path(old), self._path(new)
        with self._mutex:
            if os.path.lexists(target) and not os.path.samefile(source, target):
                self._drop_if_last_name(target)
            os.rename(source, target)
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        fd = os.open(self._path(path), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return 0

    # ---- file data -----------------------------------------------------------------------

    def _open(self, full: str, flags: int, mode: int = 0o644) -> int:
        """A backing fd, read-write when it can be (an fsync on a read-only fd must still
        flush); O_TRUNC becomes a pending truncation, O_APPEND is the kernel's business."""
        bare = flags & ~(os.O_TRUNC | os.O_APPEND | os.O_ACCMODE | os.O_EXCL | os.O_CREAT)
        if flags & os.O_CREAT:
            os.close(os.open(full, os.O_WRONLY | os.O_CREAT | (flags & os.O_EXCL), mode))
        try:
            fh = os.open(full, bare | os.O_RDWR)
        except PermissionError:
            fh = os.open(full, bare | (flags & os.O_ACCMODE))
        with self._mutex:
            self.inodes[fh] = os.fstat(fh).st_ino
            if flags & os.O_TRUNC:
                self._state(fh).truncate(0)
        return fh

    def open(self, path: str, flags: int) -> int:
        return self._open(self._path(path), flags)

    def create(self, path: str, mode: int, flags: int = os.O_WRONLY) -> int:
        return self._open(self._path(path), flags | os.O_CREAT, mode)

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        with self._mutex:
            state = self.pending.get(self.inodes[fh])
            if state is not None:
                return state.read(size, offset)
        return os.pread(fh, size, offset)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        with self._mutex:
            self._state(fh).write(data, offset)
        return len(data)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        fd = os.open(self._path(path), os.O_RDONLY) if fh is None else fh
        try:
            with self._mutex:
                if fh is None:
                    self.inodes[fd] = os.fstat(fd).st_ino
                self._state(fd).truncate(length)
        finally:
            if fh is None:
                self.inodes.pop(fd, None)
                os.close(fd)
        return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        with self._mutex:
            ino = self.inodes[fh]
            state = self.pending.get(ino)
            if state is not None:
                state.flush()
                self._drop(ino)
            else:
                os.fsync(fh)
        return 0

    def release(self, path: str, fh: int) -> int:
        with self._mutex:
            ino = self.inodes.pop(fh)
            if os.fstat(fh).st_nlink == 0 and ino not in self.inodes.values():
                self._drop(ino)  # the inode number may be reused by a new file
            os.close(fh)
        return 0

    def destroy(self, path: str) -> None:
        self.flush_all()  # a clean unmount is a clean shutdown


def serve(backing: str, mountpoint: str) -> None:
    """Mount in the foreground until unmounted (or killed: a crash)."""
    from mfusepy import FUSE

    FUSE(LazyFS(backing), mountpoint, foreground=True, auto_unmount=True, fsname="lazyfs")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: python -m {__package__}.lazyfs BACKING MOUNTPOINT")
    serve(sys.argv[1], sys.argv[2])
