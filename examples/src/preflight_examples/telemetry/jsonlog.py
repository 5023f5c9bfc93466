"""JSON-lines structured logs: one object per line, ready to ship as they are.

Every line carries ``ts`` (ISO 8601, UTC, milliseconds), ``level``, ``job``, ``run_id``,
``step`` (the job's progress count when the line was written, once known) and ``msg``,
then the caller's fields. Non-finite floats become the strings "nan", "inf", "-inf": a log
shipper expects strict JSON, and a NaN loss is exactly the line someone will search for.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

LEVELS = ("debug", "info", "warning", "error")
MSG_CHARS_MAX = 4096
FIELD_CHARS_MAX = 4096
FIELDS_MAX = 64
RESERVED = frozenset({"ts", "level", "job", "run_id", "step", "msg"})
STDERR = "-"


def clean(value: Any, depth: int = 0) -> Any:
    """Strict-JSON values: non-finite floats named, long strings cut, depth bounded."""
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return value[:FIELD_CHARS_MAX]
    if depth < 4 and isinstance(value, Mapping):
        return {str(k)[:128]: clean(v, depth + 1) for k, v in list(value.items())[:FIELDS_MAX]}
    if depth < 4 and isinstance(value, list | tuple):
        return [clean(v, depth + 1) for v in value[:FIELDS_MAX]]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        try:
            return clean(value.item(), depth + 1)
        except (TypeError, ValueError, RuntimeError):
            pass
    return str(value)[:FIELD_CHARS_MAX]


def format_ts(t_s: float) -> str:
    return datetime.fromtimestamp(t_s, UTC).isoformat(timespec="milliseconds")


def parse_ts(text: str) -> float:
    """Unix seconds from a line's ``ts`` (the inverse of format_ts)."""
    return datetime.fromisoformat(text).timestamp()


def make_record(
    t_s: float,
    level: str,
    job: str,
    run_id: str,
    step: int | None,
    msg: str,
    fields: Mapping[str, Any],
) -> dict[str, Any]:
    """One log record (pure). Caller fields never overwrite the envelope."""
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {LEVELS}, got {level!r}")
    record: dict[str, Any] = {"ts": format_ts(t_s), "level": level, "job": job, "run_id": run_id}
    if step is not None:
        record["step"] = step
    record["msg"] = str(msg)[:MSG_CHARS_MAX]
    for key, value in list(fields.items())[:FIELDS_MAX]:
        if key not in RESERVED:
            record[str(key)[:128]] = clean(value)
    return record


class JsonLog:
    """Writes records to stderr (path "-") or appends them to a file. Thread-safe; each
    line is written and flushed whole, so a kill never leaves half a line behind a whole
    one (at most the last line is torn, and readers skip lines that do not parse)."""

    def __init__(
        self,
        path: str,
        *,
        job: str,
        run_id: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.job = job
        self.run_id = run_id
        self.step: int | None = None
        self._clock = clock
        self._lock = threading.Lock()
        self._owned: TextIO | None = None
        if path == STDERR:
            self._stream: TextIO = sys.stderr
        else:
            directory = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(directory):
                raise ValueError(f"--log-json: directory {directory!r} does not exist")
            self._owned = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
            self._stream = self._owned

    def log(self, level: str, msg: str, **fields: Any) -> dict[str, Any]:
        record = make_record(self._clock(), level, self.job, self.run_id, self.step, msg, fields)
        line = json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n"
        with self._lock:
            try:
                self._stream.write(line)
                self._stream.flush()
            except (OSError, ValueError):
                # A full disk or closed stderr must not take the job down with it; the
                # metrics still report, and the job's own errors surface by exit code.
                pass
        return record

    def close(self) -> None:
        with self._lock:
            if self._owned is not None:
                self._owned.close()
                self._owned = None
                self._stream = sys.stderr


def read_records(text: str) -> list[dict[str, Any]]:
    """The JSON objects in a log text; other lines (tracebacks, torn tails) are skipped."""
    records = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            records.append(value)
    return records
