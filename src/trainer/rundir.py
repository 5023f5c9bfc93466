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

from durable import (
    BadInputError,
    ConfigDriftError,
    VerifyError,
    atomic_write,
    make_progress,
    read_json,
    write_progress,
)
from trainer.checkpoint import remove_dir, scan
from trainer.config import drifted

CONFIG_FORMAT = "preflight-trainer-config/1"
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


def wipe(paths: RunPaths) -> None:
    """--new: forget the previous run (checkpoints first, so nothing half-old stays valid)."""
    for found in scan(paths.checkpoints, lambda _: None):
        remove_dir(found.path)
    if paths.final.exists():
        remove_dir(paths.final)
    for path in (paths.metrics, paths.progress, paths.config, paths.data_verified):
        path.unlink(missing_ok=True)


def stored_hyper(paths: RunPaths) -> dict[str, Any]:
    """The hyper-parameters an existing run was started with; VerifyError when unreadable."""
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


def prepare_config(paths: RunPaths, hyper: dict[str, Any], config_hash: str, new: bool) -> None:
    """Record the run's hyper-parameters, or refuse a resume that changes them (exit 2)."""
    if paths.config.exists() and not new:
        check_drift(paths.config, stored_hyper(paths), hyper)
        return
    if new:
        wipe(paths)
    atomic_write(
        paths.config, {"format": CONFIG_FORMAT, "config_hash": config_hash, "hyper": hyper}
    )


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
        if not self.path.exists():
            return 0
        kept = 0
        offset = 0
        with open(self.path, "rb") as handle:
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
        os.truncate(self.path, offset)
        return kept

    def append(self, record: dict[str, Any]) -> None:
        if self._handle is None:
            self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed below
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
