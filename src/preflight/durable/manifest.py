"""Manifest-last commits: a directory is committed only when ``manifest.json`` verifies.

The manifest lists every file by relative path, size and sha256, plus lineage (git commit,
config hash, package versions, creation time). It is written last and atomically, so a
directory killed at any point before that has no valid manifest and is not committed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from preflight.durable import faults
from preflight.durable.atomic import atomic_write, is_temp_file
from preflight.durable.checksum import sha256_file
from preflight.durable.errors import BadInputError, VerifyError
from preflight.durable.jsonio import read_json, require_fields
from preflight.durable.lock import LOCK_NAME
from preflight.durable.paths import refuse_symlink, resolve_inside

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
FILES_MAX = 100_000
FILE_BYTES_MAX = 1 << 40  # a claimed size above 1 TiB is corruption, not data
MANIFEST_BYTES_MAX = 32 << 20
LINEAGE_PACKAGES = ("preflight", "numpy", "torch")
GIT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    files: tuple[FileEntry, ...]
    lineage: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    format: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "files": [asdict(e) for e in self.files],
            "lineage": self.lineage,
            "meta": self.meta,
        }

    def entry(self, path: str) -> FileEntry | None:
        return next((e for e in self.files if e.path == path), None)


def config_hash(config: dict[str, Any]) -> str:
    """Stable sha256 of a JSON-able configuration (key order does not matter)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


@functools.cache
def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            cwd=Path(__file__).resolve().parent,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


@functools.cache
def _package_versions() -> tuple[tuple[str, str], ...]:
    versions = []
    for name in LINEAGE_PACKAGES:
        try:
            versions.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return tuple(versions)


def lineage(config: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "git_commit": _git_commit(),
        "config_hash": config_hash(config) if config is not None else None,
        "packages": dict(_package_versions()),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _is_bookkeeping(name: str) -> bool:
    return name in (MANIFEST_NAME, LOCK_NAME) or is_temp_file(name)


def list_files(directory: str | os.PathLike[str]) -> list[str]:
    """Every regular file under ``directory`` (relative, sorted), bookkeeping excluded."""
    root = Path(directory)
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in filenames:
            full = Path(dirpath) / name
            if _is_bookkeeping(name) or full.is_symlink() or not full.is_file():
                continue
            found.append(full.relative_to(root).as_posix())
            if len(found) > FILES_MAX:
                raise BadInputError(f"{root}: more than {FILES_MAX} files to commit")
    return sorted(found)


def build_entries(
    directory: str | os.PathLike[str],
    files: list[str] | None = None,
    known: dict[str, FileEntry] | None = None,
) -> list[FileEntry]:
    """Entries for ``files`` (default: all); ``known`` supplies hashes computed while writing."""
    known = known or {}
    entries = []
    for rel in files if files is not None else list_files(directory):
        full = resolve_inside(directory, rel, f"{directory}/{MANIFEST_NAME}")
        size = full.stat().st_size
        hint = known.get(rel)
        if hint is not None and hint.size == size:
            entries.append(hint)
        else:
            entries.append(FileEntry(rel, size, sha256_file(full)))
    return entries


def commit(
    directory: str | os.PathLike[str],
    *,
    files: list[str] | None = None,
    config: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    known: dict[str, FileEntry] | None = None,
) -> Manifest:
    """Write ``manifest.json`` last, atomically; the directory is committed afterwards."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BadInputError(f"manifest commit: {directory} is not a directory")
    entries = build_entries(directory, files, known)
    manifest = Manifest(tuple(entries), lineage(config), dict(meta or {}))
    faults.point("manifest.before_commit")
    atomic_write(directory / MANIFEST_NAME, manifest.to_json())
    faults.point("manifest.after_commit")
    return manifest


def _parse_entry(raw: Any, where: str) -> FileEntry:
    require_fields(raw, where, {"path": str, "size": int, "sha256": str})
    if not 0 <= raw["size"] <= FILE_BYTES_MAX:
        raise BadInputError(f"{where}: size {raw['size']} out of range")
    digest = raw["sha256"]
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise BadInputError(f"{where}: sha256 {digest[:80]!r} is not a hex digest")
    return FileEntry(raw["path"], raw["size"], digest)


def parse(raw: Any, where: str) -> Manifest:
    """Validate the JSON form of a manifest (pure)."""
    require_fields(raw, where, {"format": int, "files": list, "lineage": dict})
    if raw["format"] != FORMAT_VERSION:
        raise BadInputError(f"{where}: unsupported manifest format {raw['format']}")
    if len(raw["files"]) > FILES_MAX:
        raise BadInputError(f"{where}: lists {len(raw['files'])} files, limit {FILES_MAX}")
    entries = [_parse_entry(e, f"{where}: files[{i}]") for i, e in enumerate(raw["files"])]
    if len({e.path for e in entries}) != len(entries):
        raise BadInputError(f"{where}: a file is listed twice")
    meta = raw.get("meta", {})
    if not isinstance(meta, dict):
        raise BadInputError(f"{where}: field 'meta' must be an object")
    return Manifest(tuple(entries), raw["lineage"], meta)


def read(directory: str | os.PathLike[str]) -> Manifest:
    """Read and validate the manifest without checking file contents."""
    path = Path(directory) / MANIFEST_NAME
    refuse_symlink(path, "a manifest is never a link")
    if not path.is_file():
        raise VerifyError(str(path), "no manifest: the directory was never committed")
    try:
        raw = read_json(path, bytes_max=MANIFEST_BYTES_MAX)
        return parse(raw, str(path))
    except BadInputError as exc:
        raise VerifyError(str(path), f"invalid manifest: {exc}") from None


@contextmanager
def _entry_errors(directory: str | os.PathLike[str], entry: FileEntry) -> Iterator[None]:
    """A listed path that escapes the directory, or that the OS refuses to look up (name too
    long, a file where a directory should be), is a bad entry: VerifyError naming it."""
    try:
        yield
    except BadInputError as exc:
        raise VerifyError(str(Path(directory) / entry.path), str(exc)) from None
    except OSError as exc:
        raise VerifyError(
            str(Path(directory) / entry.path)[:300], f"cannot check: {exc.strerror or exc}"
        ) from None


def verify_entry(directory: str | os.PathLike[str], entry: FileEntry) -> None:
    """Check one listed file's containment, size and sha256; raise naming the file."""
    with _entry_errors(directory, entry):
        full = resolve_inside(directory, entry.path, f"{directory}/{MANIFEST_NAME}")
        if full.is_symlink() and not os.path.exists(full):
            raise VerifyError(str(full), "dangling symlink")
        if not full.is_file():
            raise VerifyError(str(full), "listed in the manifest but missing")
        size = full.stat().st_size
        if size != entry.size:
            raise VerifyError(str(full), f"size {size} differs from the manifest's {entry.size}")
        if sha256_file(full) != entry.sha256:
            raise VerifyError(str(full), "sha256 differs from the manifest (corrupt file)")


def verify(directory: str | os.PathLike[str], *, check_hashes: bool = True) -> Manifest:
    """Verify a committed directory; raise ``VerifyError`` naming the first bad file."""
    manifest = read(directory)
    for entry in manifest.files:
        if check_hashes:
            verify_entry(directory, entry)
            continue
        with _entry_errors(directory, entry):
            full = resolve_inside(directory, entry.path, str(directory))
            if not full.is_file() or full.stat().st_size != entry.size:
                raise VerifyError(str(full), "missing or wrong size")
    return manifest


def is_committed(directory: str | os.PathLike[str]) -> bool:
    try:
        verify(directory)
    except VerifyError:
        return False
    return True
