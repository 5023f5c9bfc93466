"""Containment checks for paths read from files (manifests, bundles, ledgers, specs)."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from durable.errors import BadInputError

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
