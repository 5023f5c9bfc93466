"""Detection latency: from the moment a condition was injected to the first alert.

Two ways to know the injection time, both on the job's Unix clock (same host):
- the job logs it: a JSON log line {"msg": "fault injected", "fault": NAME, "ts": ...}
  written just before the defect is planted (fixtures/telemetry_job.py does this for its
  flag-planted defects: loss explosion, memory balloon, checkpoint stop);
- a durable fault point fires it (PREFLIGHT_FAULTS, e.g. trainer.loss:nan@5): the job needs
  no change; the Watcher brackets the Nth hit in the PREFLIGHT_FAULTS_TRACE file
  (watch.TraceWatch) and the earlier bound is used, so latency is never underestimated.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from preflight.alerts.evaluate import Alert

INJECTED_MSG = "fault injected"
LOG_BYTES_MAX = 64 << 20
LOG_LINE_CHARS_MAX = 64 << 10


@dataclass(frozen=True)
class Injection:
    t_s: float  # Unix seconds
    how: str  # "log:<fault>" or "trace:<point>@<nth>"
    uncertainty_s: float = 0.0  # the true time lies in [t_s, t_s + uncertainty_s]

    def to_json(self) -> dict[str, Any]:
        return {"t_s": self.t_s, "how": self.how, "uncertainty_s": self.uncertainty_s}


def read_log_records(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects in a --log-json file (the last LOG_BYTES_MAX bytes); lines that are
    not JSON objects (tracebacks, a torn last line) are skipped."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - LOG_BYTES_MAX))
            data = handle.read(LOG_BYTES_MAX)
    except OSError:
        return []
    records = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line.startswith("{") or len(line) > LOG_LINE_CHARS_MAX:
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            records.append(value)
    return records


def injection_from_log(records: Iterable[Mapping[str, Any]], fault: str) -> Injection | None:
    """The first "fault injected" record for `fault` (pure)."""
    for record in records:
        if record.get("msg") == INJECTED_MSG and record.get("fault") == fault:
            ts = record.get("ts")
            if not isinstance(ts, str):
                continue
            try:
                return Injection(datetime.fromisoformat(ts).timestamp(), f"log:{fault}")
            except ValueError:
                continue
    return None


def detection_latency_s(injection: Injection | None, alert: Alert | None) -> float | None:
    """Seconds from injection to the first alert; None when either is missing. A negative
    value means the alert fired before the injection: a false alarm, not a fast detector."""
    if injection is None or alert is None:
        return None
    return alert.t_s - injection.t_s


def summarize(latencies_s: Sequence[float]) -> dict[str, float | int | None]:
    if not latencies_s:
        return {"n": 0, "median_s": None, "max_s": None, "min_s": None}
    return {
        "n": len(latencies_s),
        "median_s": statistics.median(latencies_s),
        "max_s": max(latencies_s),
        "min_s": min(latencies_s),
    }
