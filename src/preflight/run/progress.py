"""Progress followers: what a running job says it has done, from its progress file or from
its stdout through the spec's regex. Every read is bounded."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROGRESS_FILE_BYTES_MAX = 1 << 20
STDOUT_TAIL_BYTES_MAX = 1 << 20  # read per progress poll
STDOUT_LINE_BYTES_MAX = 64 << 10  # a longer "line" is not a progress line


@dataclass(frozen=True)
class JobProgress:
    done: int
    total: int  # 0 when the job does not report a total


# The name preflight.workload re-exports (durable.ledger has a Progress of its own).
Progress = JobProgress


class FileProgress:
    """Progress from a JSON file the job replaces atomically; a torn or absent file keeps
    the last good value rather than inventing one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last: JobProgress | None = None
        self._lock = threading.Lock()

    def read(self) -> JobProgress | None:
        with self._lock:
            parsed = self._parse()
            if parsed is not None:
                self._last = parsed
            return self._last

    def _parse(self) -> JobProgress | None:
        # Read here, not through durable.read_json: that import pulls in numpy, and the
        # first sample must not wait for it. The size bound is the same idea.
        try:
            with open(self.path, "rb") as handle:
                data = handle.read(PROGRESS_FILE_BYTES_MAX + 1)
        except OSError:
            return None
        if len(data) > PROGRESS_FILE_BYTES_MAX:
            return None
        try:
            raw = json.loads(data)
        except (ValueError, RecursionError):
            return None
        return _progress_from(raw.get("done"), raw.get("total")) if isinstance(raw, dict) else None


def _progress_from(done: Any, total: Any) -> JobProgress | None:
    if isinstance(done, bool) or not isinstance(done, int) or done < 0:
        return None
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        total = 0
    return JobProgress(done, total)


class RegexProgress:
    """Progress from the last stdout line matching a regex (group 1 done, group 2 total).

    Tails the captured stdout file incrementally, a bounded chunk per call."""

    def __init__(self, stdout_path: Path, pattern: str) -> None:
        self.path = stdout_path
        self.regex = re.compile(pattern.encode())
        self._offset = 0
        self._partial = b""
        self._last: JobProgress | None = None
        self._lock = threading.Lock()

    def read(self) -> JobProgress | None:
        """The latest value (what a sampler wants)."""
        with self._lock:
            self._follow()
            return self._last

    def read_all(self) -> list[JobProgress]:
        """Every value printed since the last call, in order: a resumed run's first line is
        its resume point even when later lines came before the harness looked."""
        with self._lock:
            return self._follow()

    def _follow(self) -> list[JobProgress]:
        values: list[JobProgress] = []
        for line in self._new_lines():
            match = self.regex.search(line)
            if match is None:
                continue
            total = int(match.group(2)) if self.regex.groups == 2 else 0
            parsed = _progress_from(int(match.group(1)), total)
            if parsed is not None:
                values.append(parsed)
                self._last = parsed
        return values

    def _new_lines(self) -> list[bytes]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read(STDOUT_TAIL_BYTES_MAX)
        except OSError:
            return []
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > STDOUT_LINE_BYTES_MAX:
            self._partial = b""
        return lines


class NoProgress:
    def read(self) -> JobProgress | None:
        return None


def unpublished(progress: str | None, progress_regex: str | None) -> str:
    """Why a run whose spec names a progress source published none: names the spec key
    and its value; "" when the spec names none (then no progress is expected) (pure)."""
    if progress is not None:
        return f"no progress published: the spec's 'progress' file {progress} was never written"
    if progress_regex is not None:
        return (f"no progress published: the spec's 'progress_regex' {progress_regex!r} "
                "matched no stdout line")
    return ""
