"""Containment checks for paths read from files (manifests, bundles, ledgers, specs)."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from preflight.durable.errors import BadInputError, VerifyError

RELPATH_CHARS_MAX = 1024


def check_relpath(rel: str, where: str) -> PurePosixPath:
    """Validate a relative POSIX path from a file: no absolute path, no '..', no NUL (pure)."""
    if not isinstance(rel, str) or not rel:
        raise BadInputError(f"{where}: path must be a non-empty string, got {rel!r}")
    if len(rel) > RELPATH_CHARS_MAX or "\x00" in rel or "\\" in rel:
        raise BadInputError(f"{where}: path {rel[:80]!r} has forbidden characters or length")
    pure = PurePosixPath(rel)
    if pure.is_absolute():
        raise BadInputError(f"{where}: absolute path {rel!r} is not allowed")
    if any(part in ("..", "") for part in pure.parts) or rel.startswith("./"):
        raise BadInputError(f"{where}: path {rel!r} escapes its directory")
    return pure


def resolve_inside(root: str | os.PathLike[str], rel: str, where: str) -> Path:
    """Join ``rel`` under ``root`` and refuse it if any symlink leads outside ``root``.

    ``root`` itself may be a symlink (a run directory placed on another disk): containment is
    checked against its resolved location.
    """
    pure = check_relpath(rel, where)
    root_real = Path(os.path.realpath(root))
    target = Path(os.path.realpath(root_real / pure))
    if target != root_real and root_real not in target.parents:
        raise BadInputError(f"{where}: {rel!r} resolves outside {root} (symlink escape)")
    return root_real / pure


def is_symlink(path: str | os.PathLike[str]) -> bool:
    """lstat-based: True for a symlink (dangling or not), False when absent."""
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def refuse_symlink(path: str | os.PathLike[str], what: str = "") -> None:
    """VerifyError (exit 4) when ``path`` is a symlink: nothing a run owns inside its
    directory is ever a link, and following one would write or delete outside it."""
    if is_symlink(path):
        label = f" ({what})" if what else ""
        raise VerifyError(
            str(path),
            f"is a symlink{label}; refusing to follow it out of the run directory "
            "(move it away and rerun)",
        )


def refuse_symlinks(root: str | os.PathLike[str], names: Iterable[str]) -> None:
    """``refuse_symlink`` for each of ``names`` directly inside ``root`` (``root`` itself
    may be a symlink: a run directory placed on another disk is supported)."""
    for name in names:
        refuse_symlink(Path(root) / name)


def open_nofollow(path: str | os.PathLike[str], flags: int, mode: int = 0o644) -> int:
    """``os.open`` with O_NOFOLLOW|O_CLOEXEC; a symlink, a directory where the file should
    be, or a file we may not open is a VerifyError naming it (exit 4, never a traceback)."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise VerifyError(
                str(path), "is a symlink; refusing to follow it out of the run directory"
            ) from None
        if exc.errno in (errno.EISDIR, errno.EACCES, errno.EPERM):
            raise VerifyError(
                str(path), f"cannot be opened: {exc.strerror} (move it away and rerun)"
            ) from None
        raise


def refuse_directory(path: str | os.PathLike[str]) -> None:
    """VerifyError (exit 4) when a file a run writes is a directory: replacing or opening
    it would fail with a bare IsADirectoryError."""
    if os.path.isdir(path) and not os.path.islink(path):
        raise VerifyError(str(path), "is a directory, expected a file (move it away and rerun)")
