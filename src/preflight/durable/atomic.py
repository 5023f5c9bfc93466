"""Atomic, durable file replacement.

Protocol: temp file in the destination's directory, write, flush, fsync the file,
``os.replace`` onto the destination, fsync the directory. A reader (or a process resumed
after SIGKILL at any instant) sees the complete old content or the complete new one.
A failed fsync is never retried: after a failed fsync the kernel may have dropped the dirty
pages, so a retry can "succeed" on lost data (the PostgreSQL fsyncgate lesson).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from preflight.durable import faults
from preflight.durable.errors import BadInputError
from preflight.durable.paths import refuse_directory

TEMP_MARK = ".tmp-"


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename or unlink inside ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


def is_temp_file(name: str) -> bool:
    """True for the temp files ``atomic_writer`` leaves behind when killed mid-write."""
    return name.startswith(".") and TEMP_MARK in name


def remove_stale_temps(directory: str | os.PathLike[str]) -> list[str]:
    """Delete temp files left by killed writers in ``directory`` (not recursive)."""
    removed = []
    for entry in os.scandir(directory):
        if is_temp_file(entry.name) and entry.is_file(follow_symlinks=False):
            os.unlink(entry.path)
            removed.append(entry.name)
    return removed


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Yield a binary file; on clean exit it atomically and durably replaces ``path``.

    On any exception the temp file is removed and ``path`` is untouched.
    """
    dest = Path(path)
    if dest.name in ("", ".", ".."):
        raise BadInputError(f"atomic_write: {str(path)!r} is not a file path")
    if not dest.parent.is_dir():
        raise BadInputError(f"atomic_write: directory {str(dest.parent)!r} does not exist")
    refuse_directory(dest)  # os.replace onto a directory fails only after all the writing
    tmp = _temp_path(dest)
    try:
        faults.point("atomic.before_write")
        handle = open(tmp, "xb")  # noqa: SIM115 - closed in every path below
    except OSError as exc:
        raise named(exc, dest) from None
    try:
        yield handle
        handle.flush()
        faults.point("atomic.before_fsync")
        os.fsync(handle.fileno())
        handle.close()
        faults.point("atomic.before_replace")
        os.replace(tmp, dest)
    except OSError as exc:
        _discard(handle, tmp)
        raise named(exc, dest) from None
    except BaseException:
        _discard(handle, tmp)
        raise
    faults.point("atomic.before_dir_fsync")
    fsync_dir(dest.parent)


def _discard(handle: BinaryIO, tmp: Path) -> None:
    # close() flushes again: on a full disk it fails again, and that error (naming no file)
    # would replace the one being reported. The temp file is going away either way.
    with contextlib.suppress(OSError):
        handle.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)


def named(exc: OSError, path: str | os.PathLike[str]) -> OSError:
    """``exc`` with the file named: a write's ENOSPC/EIO carries no filename, and "No space
    left on device" alone does not say which disk filled up."""
    if exc.filename is not None:
        return exc
    return OSError(exc.errno, exc.strerror or str(exc), str(path))


def encode(data: Any) -> bytes:
    """Serialise bytes, str, JSON-able values or numpy arrays (pure; NaN refused in JSON)."""
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, np.ndarray):
        buf = io.BytesIO()
        np.save(buf, data, allow_pickle=False)
        return buf.getvalue()
    try:
        return (json.dumps(data, allow_nan=False, sort_keys=True, indent=1) + "\n").encode()
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"atomic_write: cannot encode {type(data).__name__}: {exc}") from exc


def atomic_write(path: str | os.PathLike[str], data: Any) -> int:
    """Atomically and durably replace ``path`` with ``data``; returns the bytes written.

    numpy arrays are written in ``.npy`` format without pickles, so they can be memory-mapped.
    """
    if isinstance(data, np.ndarray):
        if data.dtype.hasobject:
            raise BadInputError(f"atomic_write: {path}: object arrays cannot be stored")
        with atomic_writer(path) as handle:
            np.save(handle, data, allow_pickle=False)
            return handle.tell()
    payload = encode(data)
    with atomic_writer(path) as handle:
        handle.write(payload)
    return len(payload)
