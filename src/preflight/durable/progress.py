"""The PROGRESS.json contract (docs/contract.md): done, total, unit, rate, ETA, state,
updated_at."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from preflight.durable.atomic import atomic_write
from preflight.durable.errors import BadInputError
from preflight.durable.jsonio import read_json, require_fields

STATES = ("running", "done", "failed", "stopped")
PROGRESS_BYTES_MAX = 1 << 20


@dataclass(frozen=True)
class ProgressInfo:
    done: int
    total: int
    unit: str
    rate_per_s: float
    eta_s: float | None
    state: str
    updated_at: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def make_progress(
    done: int, total: int, unit: str, rate_per_s: float, state: str = "running"
) -> ProgressInfo:
    """Build a validated progress record; the ETA follows from rate and remaining work."""
    if not (isinstance(done, int) and isinstance(total, int) and 0 <= done <= total):
        raise BadInputError(f"progress: need 0 <= done <= total, got done={done} total={total}")
    if state not in STATES:
        raise BadInputError(f"progress: state must be one of {STATES}, got {state!r}")
    rate = float(rate_per_s) if rate_per_s == rate_per_s and rate_per_s >= 0 else 0.0
    eta = (total - done) / rate if rate > 0 else (0.0 if done == total else None)
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
    return ProgressInfo(done, total, unit, rate, eta, state, stamp)


def write_progress(path: str | os.PathLike[str], info: ProgressInfo) -> None:
    atomic_write(path, info.to_json())


def read_progress(path: str | os.PathLike[str]) -> ProgressInfo:
    """Read and validate a PROGRESS.json; errors name the file and field."""
    where = str(path)
    raw = read_json(path, bytes_max=PROGRESS_BYTES_MAX)
    require_fields(raw, where, {"done": int, "total": int, "updated_at": str})
    if not 0 <= raw["done"] <= raw["total"]:
        raise BadInputError(f"{where}: need 0 <= done <= total, got {raw['done']}/{raw['total']}")
    state = raw.get("state", "running")
    if state not in STATES:
        raise BadInputError(f"{where}: field 'state' must be one of {STATES}")
    rate = raw.get("rate_per_s", 0.0)
    if rate is None:
        rate = 0.0
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate < float("inf"):
        raise BadInputError(f"{where}: field 'rate_per_s' must be a number >= 0, got {rate!r:.40}")
    eta = raw.get("eta_s")
    return ProgressInfo(
        raw["done"],
        raw["total"],
        str(raw.get("unit", "items")),
        float(rate),
        float(eta) if isinstance(eta, int | float) and not isinstance(eta, bool) else None,
        state,
        raw["updated_at"],
    )


class RateMeter:
    """Rate over this process's lifetime, so a resumed run's ETA ignores earlier runs."""

    def __init__(self, done_at_start: int) -> None:
        self.done_at_start = done_at_start
        self.started = time.monotonic()

    def rate_per_s(self, done: int) -> float:
        elapsed = time.monotonic() - self.started
        return (done - self.done_at_start) / elapsed if elapsed > 0 else 0.0
