"""The Watcher: scrapes a running job's metrics on a short interval, records every
snapshot, evaluates the rules as they arrive, and brackets fault-point hits in time.

Scrape sources: the job's --metrics-file (FileSource) or its endpoint (HttpSource). The
time of a snapshot is when the harness read it: a rule cannot have fired earlier than the
harness could see its data, so detection latency is measured on the harness's side.
Every loop, read and join is bounded; a history that reaches `snapshots_max` stops
recording and says so in `errors` (the verdicts built on it are then inconclusive).
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from preflight.alerts.evaluate import Alert, Evaluator
from preflight.alerts.rules import RULES, Rule, Thresholds
from preflight.alerts.snapshot import (
    EXPOSITION_BYTES_MAX,
    ExpositionError,
    Snapshot,
    parse_exposition,
)

POLL_S_DEFAULT = 0.1
POLL_S_MIN = 0.005
SNAPSHOTS_MAX = 36_000  # an hour at the default interval
HTTP_TIMEOUT_S = 1.0
JOIN_TIMEOUT_S = 10.0
TRACE_READ_BYTES_MAX = 1 << 20  # per poll
TRACE_LINE_BYTES_MAX = 256  # fault point names are at most 128 chars


class FileSource:
    """The job's textfile; it is replaced atomically, so a read is never torn."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def read(self) -> str | None:
        try:
            with open(self.path, "rb") as handle:
                data = handle.read(EXPOSITION_BYTES_MAX + 1)
        except OSError:
            return None  # not written yet (or between runs): nothing to record
        return data.decode("utf-8", errors="replace")

    def describe(self) -> str:
        return str(self.path)


class HttpSource:
    """The job's /metrics endpoint; a refused or slow scrape records nothing."""

    def __init__(self, url: str, timeout_s: float = HTTP_TIMEOUT_S) -> None:
        self.url = url
        self.timeout_s = timeout_s

    def read(self) -> str | None:
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout_s) as response:
                data = response.read(EXPOSITION_BYTES_MAX + 1)
        except (urllib.error.URLError, OSError, ValueError):
            return None
        return data.decode("utf-8", errors="replace")

    def describe(self) -> str:
        return self.url


class TraceWatch:
    """When did a fault point's Nth hit happen? durable appends each hit's name to the
    PREFLIGHT_FAULTS_TRACE file, without a time; polling it brackets the hit between the
    last poll that had fewer than N hits and the first that had N. `injected_at_s` is
    that earlier bound, so a latency measured from it is never an underestimate."""

    def __init__(self, path: str | Path, point: str, nth: int = 1) -> None:
        if nth < 1:
            raise ValueError(f"TraceWatch: nth must be >= 1, got {nth}")
        self.path = Path(path)
        self.point = point
        self.nth = nth
        self.hits = 0
        self.injected_at_s: float | None = None
        self.uncertainty_s: float | None = None
        self._offset = 0
        self._partial = b""
        self._before_s: float | None = None

    def arm(self, now_s: float) -> None:
        """Start bracketing: hits seen at the first poll happened after `now_s`."""
        self._before_s = now_s

    def poll(self, now_s: float) -> None:
        if self.injected_at_s is not None:
            return
        if self._before_s is None:
            self._before_s = now_s
        for line in self._new_lines():
            if line.strip() == self.point.encode():
                self.hits += 1
        if self.hits >= self.nth:
            self.injected_at_s = self._before_s
            self.uncertainty_s = now_s - self._before_s
        else:
            self._before_s = now_s

    def _new_lines(self) -> list[bytes]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read(TRACE_READ_BYTES_MAX)
        except OSError:
            return []
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > TRACE_LINE_BYTES_MAX:
            self._partial = b""
        return lines


@dataclass(frozen=True)
class WatchResult:
    history: tuple[Snapshot, ...]
    fired: dict[str, Alert]
    parse_errors: int
    errors: tuple[str, ...]

    @property
    def watched_s(self) -> float:
        """Time between the first and the last snapshot: how long the rules had data."""
        return self.history[-1].t_s - self.history[0].t_s if len(self.history) > 1 else 0.0


class Watcher:
    def __init__(
        self,
        source: FileSource | HttpSource,
        thresholds: Thresholds,
        *,
        rules: Sequence[Rule] = RULES,
        poll_s: float = POLL_S_DEFAULT,
        snapshots_max: int = SNAPSHOTS_MAX,
        traces: Sequence[TraceWatch] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not poll_s >= POLL_S_MIN:
            raise ValueError(f"Watcher: poll_s must be >= {POLL_S_MIN}, got {poll_s}")
        self.source = source
        self.poll_s = poll_s
        self.snapshots_max = snapshots_max
        self.traces = tuple(traces)
        self._clock = clock
        self._evaluator = Evaluator(thresholds, rules)
        self._history: list[Snapshot] = []
        self._parse_errors = 0
        self._errors: list[str] = []
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Watcher:
        if self._thread is not None:
            raise RuntimeError("Watcher: already started")
        now_s = self._clock()
        for trace in self.traces:
            trace.arm(now_s)
        self._thread = threading.Thread(target=self._loop, name="alert-watcher", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.poll_s)

    def poll_once(self) -> list[Alert]:
        """One scrape: trace brackets, then the snapshot and the rules. Returns new alerts."""
        now_s = self._clock()
        for trace in self.traces:
            trace.poll(now_s)
        text = self.source.read()
        if text is None:
            return []
        with self._lock:
            try:
                snapshot = parse_exposition(text, now_s)
            except ExpositionError as exc:
                self._parse_errors += 1
                if self._parse_errors == 1:
                    self._errors.append(f"{self.source.describe()}: {exc}")
                return []
            if len(self._history) >= self.snapshots_max:
                if not any("snapshots_max" in e for e in self._errors):
                    self._errors.append(f"stopped recording at snapshots_max={self.snapshots_max}")
                return []
            if self._history and now_s < self._history[-1].t_s:
                self._errors.append("the wall clock went back; snapshot dropped")
                return []
            self._history.append(snapshot)
            fired = self._evaluator.feed(self._history, len(self._history) - 1)
            if fired:
                self._lock.notify_all()
            return fired

    def wait_for(self, keys: Sequence[str], timeout_s: float) -> bool:
        """True once every rule in `keys` has fired; False after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while not all(k in self._evaluator.fired for k in keys):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
            return True

    def stop(self) -> WatchResult:
        """Stop polling, take one last scrape (the job's final textfile), and report."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT_S)
            if self._thread.is_alive():
                self._errors.append(f"watcher thread still alive {JOIN_TIMEOUT_S} s after stop")
            else:
                self.poll_once()
        return self.result()

    def result(self) -> WatchResult:
        with self._lock:
            return WatchResult(
                tuple(self._history),
                dict(self._evaluator.fired),
                self._parse_errors,
                tuple(self._errors),
            )

    def __enter__(self) -> Watcher:
        return self if self._thread is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
