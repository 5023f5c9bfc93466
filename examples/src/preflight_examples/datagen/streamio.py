"""Large sequential file I/O with hashing: the one place raw bytes meet the disk.

Writing: bytes are gathered into page-aligned 8 MiB chunks and handed to a writer thread
that hashes them and writes them, with O_DIRECT where the filesystem allows. O_DIRECT
matters here: copying 6 GB through the page cache costs about a CPU-second per GB on this
class of machine, which the renderers need, and the data is not read back soon.
Reading: chunks are hashed with the file hash and the content hash on two threads
(hashlib releases the GIL), so verification runs at about the speed of one hash.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import mmap
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from preflight.durable.atomic import named

ALIGN_BYTES = 4096
# 1 MiB chunks: small enough that the hash and write of a shard's last chunk (which the
# shard's commit must wait for) take about a millisecond, large enough for full disk speed.
CHUNK_BYTES = 1 << 20
BUFFERS = 4
# A chunk that cannot be written in this long means a hung disk, not a slow one.
WRITE_WAIT_S_MAX = 600.0
ENV_NO_DIRECT = "DATAGEN_NO_DIRECT_IO"


# Chunk buffers are reused across files: first-touching 16 MiB of fresh pages for every
# shard costs milliseconds per shard, which is most of the checkpoint overhead.
_spare_buffers: dict[int, list[mmap.mmap]] = {}
SPARE_BUFFERS_MAX = 2 * BUFFERS


def _take_buffer(chunk_bytes: int) -> mmap.mmap:
    spare = _spare_buffers.get(chunk_bytes)
    return spare.pop() if spare else mmap.mmap(-1, chunk_bytes)


def _give_back(chunk_bytes: int, buffer: mmap.mmap) -> None:
    spare = _spare_buffers.setdefault(chunk_bytes, [])
    if len(spare) < SPARE_BUFFERS_MAX:
        spare.append(buffer)
    else:
        buffer.close()


def _set_direct(fd: int, enabled: bool) -> bool:
    """Turn O_DIRECT on or off for ``fd``; False when the filesystem refuses it."""
    if not hasattr(os, "O_DIRECT"):
        return False
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    wanted = flags | os.O_DIRECT if enabled else flags & ~os.O_DIRECT
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, wanted)
    except OSError:
        return False
    return True


class HashingWriter:
    """Append bytes to ``fd`` through a writer thread, computing their sha256 on the way.

    Use ``write`` any number of times, then ``close`` (returns size and hex digest) or,
    on an error path, ``abort``. The caller owns ``fd`` (and fsyncs it). A failed write is
    re-raised as an OSError with ``path`` as its filename (errno kept).
    """

    def __init__(
        self, fd: int, *, chunk_bytes: int = CHUNK_BYTES, path: str | os.PathLike[str] = ""
    ) -> None:
        if chunk_bytes <= 0 or chunk_bytes % ALIGN_BYTES:
            raise ValueError(f"chunk_bytes must be a positive multiple of {ALIGN_BYTES}")
        self._fd = fd
        self._path = path  # named in write errors: ENOSPC from os.write carries no file
        self._chunk_bytes = chunk_bytes
        self._digest = hashlib.sha256()
        self._size = 0
        self._error: BaseException | None = None
        self._direct = not os.environ.get(ENV_NO_DIRECT) and _set_direct(fd, True)
        self._free: queue.Queue[mmap.mmap] = queue.Queue()
        # Anonymous mmaps are page-aligned, as O_DIRECT requires of the memory it writes from.
        self._buffers = [_take_buffer(chunk_bytes) for _ in range(BUFFERS)]
        for buffer in self._buffers:
            self._free.put(buffer)
        self._full: queue.Queue[tuple[mmap.mmap, int] | None] = queue.Queue()
        self._current: mmap.mmap | None = None
        self._fill = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="datagen-writer", daemon=True)
        self._thread.start()

    @property
    def direct(self) -> bool:
        return self._direct

    def write(self, data: Any) -> None:
        if self._closed:
            raise ValueError("HashingWriter: write after close")
        view = memoryview(data).cast("B")
        offset = 0
        while offset < len(view):  # bounded: every pass copies at least one byte
            if self._current is None:
                self._current = self._take_free()
                self._fill = 0
            take = min(len(view) - offset, self._chunk_bytes - self._fill)
            self._current[self._fill : self._fill + take] = view[offset : offset + take]
            self._fill += take
            offset += take
            if self._fill == self._chunk_bytes:
                self._full.put((self._current, self._fill))
                self._current = None

    def close(self) -> tuple[int, str]:
        """Write what is buffered, wait for the thread; return (bytes written, sha256 hex)."""
        if self._current is not None and self._fill:
            self._full.put((self._current, self._fill))
            self._current = None
        self._finish()
        if self._error is not None:
            raise self._error
        return self._size, self._digest.hexdigest()

    def abort(self) -> None:
        self._current = None
        self._finish()

    def _finish(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._full.put(None)
        self._thread.join(WRITE_WAIT_S_MAX)
        if self._thread.is_alive():
            raise TimeoutError(f"writer thread did not finish within {WRITE_WAIT_S_MAX} s")
        for buffer in self._buffers:
            _give_back(self._chunk_bytes, buffer)
        self._buffers = []

    def _take_free(self) -> mmap.mmap:
        if self._error is not None:
            raise self._error
        try:
            return self._free.get(timeout=WRITE_WAIT_S_MAX)
        except queue.Empty:
            raise TimeoutError(f"no chunk was written within {WRITE_WAIT_S_MAX} s") from None

    def _run(self) -> None:
        while True:  # ends at the sentinel, which close() and abort() always send
            item = self._full.get()
            if item is None:
                return
            buffer, length = item
            try:
                if self._error is None:
                    view = memoryview(buffer)[:length]
                    self._digest.update(view)
                    self._write_all(view)
                    self._size += length
            except OSError as exc:  # re-raised in the producer thread, naming the file
                self._error = named(exc, self._path) if self._path else exc
            except BaseException as exc:  # re-raised in the producer thread
                self._error = exc
            finally:
                self._free.put(buffer)

    def _write_all(self, view: memoryview) -> None:
        tail = len(view) % ALIGN_BYTES
        if self._direct and tail:
            # The last, partial chunk: whole blocks go direct, only the tail is buffered
            # (O_DIRECT writes whole blocks), so the final fsync has almost nothing to do.
            self._write_some(view[: len(view) - tail])
            self._direct = not _set_direct(self._fd, False)
            view = view[len(view) - tail :]
        self._write_some(view)

    def _write_some(self, view: memoryview) -> None:
        written = 0
        while written < len(view):  # bounded: each write makes progress or raises
            try:
                count = os.write(self._fd, view[written:])
            except OSError as exc:
                if exc.errno != errno.EINVAL or not self._direct:
                    raise
                # The filesystem accepted the flag but not the write: fall back for good.
                self._direct = not _set_direct(self._fd, False)
                if self._direct:
                    raise
                continue
            if count <= 0:
                raise OSError(errno.EIO, "write returned no progress")
            written += count
            if self._direct and written % ALIGN_BYTES:
                self._direct = not _set_direct(self._fd, False)


def _open_for_reading(path: str | os.PathLike[str]) -> int:
    """A read-only fd, with O_DIRECT where the filesystem allows: verification reads every
    byte once, and a page-cache copy would cost as much CPU as the hash."""
    flags = os.O_RDONLY | os.O_CLOEXEC
    if not os.environ.get(ENV_NO_DIRECT) and hasattr(os, "O_DIRECT"):
        try:
            return os.open(path, flags | os.O_DIRECT)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
    return os.open(path, flags)


def _read_into(fd: int, buffer: mmap.mmap) -> int:
    try:
        return os.readv(fd, [buffer])
    except OSError as exc:
        if exc.errno != errno.EINVAL or not _set_direct(fd, False):
            raise
        return os.readv(fd, [buffer])  # the filesystem refused a direct read: buffered


class _Reader:
    """Reads a file into page-aligned chunk buffers ahead of the hashing, on a thread."""

    def __init__(self, fd: int, chunk_bytes: int) -> None:
        self._fd = fd
        self._chunk_bytes = chunk_bytes
        self._buffers = [_take_buffer(chunk_bytes) for _ in range(BUFFERS)]
        self._free: queue.Queue[mmap.mmap] = queue.Queue()
        for buffer in self._buffers:
            self._free.put(buffer)
        self._full: queue.Queue[tuple[mmap.mmap, int] | BaseException | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="datagen-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():  # ends at end of file, on error or on close
                buffer = self._free.get(timeout=WRITE_WAIT_S_MAX)
                count = _read_into(self._fd, buffer)
                if not count:
                    break
                self._full.put((buffer, count))
        except BaseException as exc:  # handed to the consumer
            self._full.put(exc)
            return
        self._full.put(None)

    def chunks(self) -> Any:
        """Yield (buffer, byte count); give each buffer back with ``release``."""
        while True:  # ends at the reader's end-of-file sentinel or its error
            try:
                item = self._full.get(timeout=WRITE_WAIT_S_MAX)
            except queue.Empty:
                raise TimeoutError(f"no data was read within {WRITE_WAIT_S_MAX} s") from None
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def release(self, buffer: mmap.mmap) -> None:
        self._free.put(buffer)

    def close(self) -> None:
        self._stop.set()
        for buffer in self._buffers:  # unblock a reader waiting for a free buffer
            self._free.put(buffer)
        self._thread.join(WRITE_WAIT_S_MAX)
        if not self._thread.is_alive():
            for buffer in self._buffers:
                _give_back(self._chunk_bytes, buffer)
        self._buffers = []


def hash_file(
    path: str | os.PathLike[str],
    *,
    skip_bytes: int = 0,
    content: Any | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> str:
    """sha256 hex of the whole file; ``content`` (a hashlib object), if given, is also fed
    every byte after the first ``skip_bytes`` (the data without its header)."""
    digest = hashlib.sha256()
    position = 0
    fd = _open_for_reading(path)
    try:
        reader = _Reader(fd, chunk_bytes)
        try:
            with ThreadPoolExecutor(1) as pool:
                for buffer, count in reader.chunks():
                    with memoryview(buffer) as whole:
                        chunk = whole[:count]
                        pending = None
                        if content is not None and position + count > skip_bytes:
                            pending = pool.submit(
                                content.update, chunk[max(skip_bytes - position, 0) :]
                            )
                        digest.update(chunk)
                        if pending is not None:
                            pending.result()
                        chunk.release()
                    position += count
                    reader.release(buffer)
        finally:
            reader.close()
    finally:
        os.close(fd)
    return digest.hexdigest()
