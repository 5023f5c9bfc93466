"""RUN_DIR layout and its bookkeeping files: config.json, metrics.jsonl, PROGRESS.json.

```
RUN_DIR/config.json           hyper-parameters and their hash (written once; --new rewrites)
RUN_DIR/checkpoints/step-NNNNNNNN/{state.pt, manifest.json}
RUN_DIR/final/{state.pt, manifest.json}    committed final model + optimizer (fingerprinted)
RUN_DIR/metrics.jsonl         one JSON object per logged step, append-only
RUN_DIR/PROGRESS.json         {done, total, unit: "steps", ...}, written atomically
RUN_DIR/data-verified.json    stat stamps of the dataset files this run fully hashed
RUN_DIR/.lock                 held by the live fit
```
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from preflight.durable import (
    BadInputError,
    ConfigDriftError,
    VerifyError,
    atomic_write,
    make_progress,
    read_json,
    write_progress,
)
from preflight.durable.atomic import is_temp_file
from preflight.durable.paths import open_nofollow, refuse_symlink, refuse_symlinks
from preflight_examples.trainer.checkpoint import remove_dir, scan
from preflight_examples.trainer.config import drifted

CONFIG_FORMAT = "preflight-trainer-config/1"
CHECKPOINT_ENTRIES_MAX = 100_000
METRICS_LINE_BYTES_MAX = 1 << 16
# Each write is an atomic replace with two fsyncs (~10 ms here); once a second keeps that
# under 1% of the run while a watcher still sees progress move.
PROGRESS_INTERVAL_S = 1.0


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def final(self) -> Path:
        return self.root / "final"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def progress(self) -> Path:
        return self.root / "PROGRESS.json"

    @property
    def data_verified(self) -> Path:
        return self.root / "data-verified.json"

    @property
    def marker(self) -> Path:
        return self.root / MARKER_NAME


# Everything a fit writes or deletes directly in RUN_DIR (the lock is opened O_NOFOLLOW).
OWNED_NAMES = (
    "config.json",
    "checkpoints",
    "final",
    "metrics.jsonl",
    "PROGRESS.json",
    "data-verified.json",
)
MARKER_NAME = ".preflight-trainer"
MARKER = {"format": "preflight-trainer-run/1"}
# Names a directory may hold before its first fit wrote the marker (the lock, temp files).
PRE_MARKER_NAMES = frozenset({".lock", MARKER_NAME})


def refuse_links(paths: RunPaths) -> None:
    """VerifyError (exit 4) naming the first of RUN_DIR's own files or directories that is
    a symlink: writing or deleting through it would touch files outside the run."""
    refuse_symlinks(paths.root, OWNED_NAMES)
    if paths.checkpoints.is_dir():
        names = [entry.name for entry in os.scandir(paths.checkpoints)]
        refuse_symlinks(paths.checkpoints, names[:CHECKPOINT_ENTRIES_MAX])
    if paths.final.is_dir():
        refuse_symlinks(paths.final, ("manifest.json", "state.pt"))


def _is_legacy_run(paths: RunPaths) -> bool:
    """A run directory from before the marker existed: its config.json is ours."""
    if not paths.config.is_file() or paths.config.is_symlink():
        return False
    try:
        return read_json(paths.config).get("format") == CONFIG_FORMAT
    except (BadInputError, AttributeError):
        return False


def check_ours(paths: RunPaths) -> None:
    """Refuse (exit 2) a non-empty --out that is not a trainer run (no marker): a fit, and
    above all --new, would overwrite or delete someone else's files. Writes nothing."""
    refuse_symlink(paths.marker)
    if paths.root.is_dir() and not paths.marker.exists():
        foreign = sorted(
            entry.name
            for entry in os.scandir(paths.root)
            if entry.name not in PRE_MARKER_NAMES and not is_temp_file(entry.name)
        )
        if foreign and not _is_legacy_run(paths):
            listed = ", ".join(foreign[:5])
            raise BadInputError(
                f"--out {paths.root}: not empty and not a trainer run directory (no "
                f"{MARKER_NAME}; it holds {listed}); choose a new or empty directory"
            )


def claim(paths: RunPaths) -> None:
    """Under the run lock: ``check_ours``, then mark the directory as a trainer run."""
    check_ours(paths)
    if not paths.marker.exists():
        atomic_write(paths.marker, MARKER)


def wipe(paths: RunPaths) -> None:
    """--new: forget the previous run (checkpoints first, so nothing half-old stays valid)."""
    for found in scan(paths.checkpoints, lambda _: None):
        remove_dir(found.path)
    if paths.final.exists():
        remove_dir(paths.final)
    for path in (paths.metrics, paths.progress, paths.config, paths.data_verified):
        path.unlink(missing_ok=True)  # unlink removes a link itself, never its target


def stored_hyper(paths: RunPaths) -> dict[str, Any]:
    """The hyper-parameters an existing run was started with; VerifyError when unreadable."""
    refuse_symlink(paths.config)
    try:
        stored = read_json(paths.config)
        old = stored["hyper"]
        if not isinstance(old, dict):
            raise TypeError("field 'hyper' is not an object")
    except (BadInputError, KeyError, TypeError) as exc:
        raise VerifyError(
            str(paths.config), f"unreadable run configuration ({exc}); use --new to restart"
        ) from None
    return old


def check_drift(config: Path, stored: dict[str, Any], hyper: dict[str, Any]) -> None:
    """Refuse ``hyper`` for a run started with ``stored`` (read from ``config``) (exit 2)."""
    differing = drifted(stored, hyper)
    if differing:
        raise ConfigDriftError(str(config), differing)


def check_numerics(config: Path, stored: Any, numerics: dict[str, Any]) -> None:
    """Refuse (exit 2) a resume whose thread count or device differs from the run's: both
    change floating-point summation order, so the resumed run could not end bit-identical
    and its fingerprint would match no reference (the exact-resume contract)."""
    if not isinstance(stored, dict):
        raise VerifyError(str(config), "field 'numerics' is not an object; use --new to restart")
    differing = sorted(k for k in numerics if stored.get(k, numerics[k]) != numerics[k])
    if differing:
        raise ConfigDriftError(str(config), differing)


def prepare_config(
    paths: RunPaths,
    hyper: dict[str, Any],
    config_hash: str,
    new: bool,
    numerics: dict[str, Any] | None = None,
) -> None:
    """Record the run's hyper-parameters and numerics (threads, device), or refuse a resume
    that changes them (exit 2)."""
    record = {"format": CONFIG_FORMAT, "config_hash": config_hash, "hyper": hyper}
    if numerics is not None:
        record["numerics"] = numerics
    if paths.config.exists() and not new:
        check_drift(paths.config, stored_hyper(paths), hyper)
        if numerics is None:
            return
        stored = read_json(paths.config).get("numerics")
        if stored is not None:
            check_numerics(paths.config, stored, numerics)
            return
        # A run from before numerics were recorded: record them now, so from here on a
        # resume with other threads is refused.
    elif new:
        wipe(paths)
    atomic_write(paths.config, record)


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN; a non-finite metric is logged as null (and flagged separately)."""
    return value if math.isfinite(value) else None


class MetricsLog:
    """metrics.jsonl: append-only; on resume, lines past the resumed step are cut off."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: Any = None

    def truncate_after(self, step: int) -> int:
        """Cut at the first line that is torn, unreadable or beyond ``step``; lines kept."""
        refuse_symlink(self.path)
        if not self.path.exists():
            return 0
        kept = 0
        offset = 0
        fd = open_nofollow(self.path, os.O_RDWR)
        with open(fd, "rb", closefd=False) as handle:
            for line in handle:
                if not line.endswith(b"\n") or len(line) > METRICS_LINE_BYTES_MAX:
                    break
                try:
                    line_step = json.loads(line)["step"]
                except (ValueError, KeyError, TypeError):
                    break
                if not isinstance(line_step, int) or line_step > step:
                    break
                offset += len(line)
                kept += 1
        try:
            os.ftruncate(fd, offset)  # the file we read, never what a path now names
        finally:
            os.close(fd)
        return kept

    def append(self, record: dict[str, Any]) -> None:
        if self._handle is None:
            fd = open_nofollow(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            self._handle = open(fd, "a", encoding="utf-8")  # noqa: SIM115 - closed below
        self._handle.write(json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n")
        # One flush per line: a kill loses at most the line being written (then cut on resume).
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class ProgressWriter:
    """PROGRESS.json, atomically, at most every ``interval_s`` unless forced (each write
    costs two fsyncs; watchers of short runs ask for a finer interval)."""

    def __init__(
        self, path: Path, total: int, start: int, interval_s: float = PROGRESS_INTERVAL_S
    ) -> None:
        self.path = path
        self.interval_s = interval_s
        self.total = total
        self.start = start
        self.started_s = time.monotonic()
        self.written_s = -math.inf

    def rate_per_s(self, done: int) -> float:
        elapsed_s = time.monotonic() - self.started_s
        return (done - self.start) / elapsed_s if elapsed_s > 0 else 0.0

    def write(self, done: int, state: str = "running", force: bool = False) -> None:
        now_s = time.monotonic()
        if not force and now_s - self.written_s < self.interval_s:
            return
        write_progress(
            self.path, make_progress(done, self.total, "steps", self.rate_per_s(done), state)
        )
        self.written_s = now_s
