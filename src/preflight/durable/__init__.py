"""durable: crash-safe storage shared by the workloads.

Atomic writes, streaming checksums, manifest-last commits, an exclusive run lock, a SQLite
work ledger, bounded JSON reading and named fault points.
"""

from preflight.durable import faults, manifest
from preflight.durable.atomic import atomic_write, atomic_writer, fsync_dir, remove_stale_temps
from preflight.durable.checksum import sha256_bytes, sha256_file
from preflight.durable.errors import (
    BadInputError,
    ConfigDriftError,
    DurableError,
    LockedError,
    VerifyError,
)
from preflight.durable.jsonio import loads_strict, read_json
from preflight.durable.ledger import Ledger
from preflight.durable.lock import RunLock
from preflight.durable.manifest import Manifest, config_hash
from preflight.durable.paths import check_relpath, resolve_inside
from preflight.durable.progress import RateMeter, make_progress, read_progress, write_progress

__all__ = [
    "BadInputError",
    "ConfigDriftError",
    "DurableError",
    "Ledger",
    "LockedError",
    "Manifest",
    "RateMeter",
    "RunLock",
    "VerifyError",
    "atomic_write",
    "atomic_writer",
    "check_relpath",
    "config_hash",
    "faults",
    "fsync_dir",
    "loads_strict",
    "make_progress",
    "manifest",
    "read_json",
    "read_progress",
    "remove_stale_temps",
    "resolve_inside",
    "sha256_bytes",
    "sha256_file",
    "write_progress",
]
