"""Live progress of a running check: the current experiment, done/total and an ETA.

On a terminal one status line is redrawn every second; elsewhere (CI logs, pipes) a plain
line is printed when an experiment starts and at least every ``PLAIN_EVERY_S`` while it
runs, so a long experiment never looks like a hang. The text is a pure function of the
numbers (:func:`status_line`); the clock is injectable for tests.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

PLAIN_EVERY_S = 10.0
TTY_EVERY_S = 1.0


def eta_s(done: int, total: int, durations: list[float], current_s: float) -> float | None:
    """Seconds left: the median experiment time for each one not finished, less what the
    current one has already run (pure). None before any experiment finished."""
    if not durations:
        return None
    typical = statistics.median(durations)
    left = max(0, total - done) * typical
    return max(0.0, left - min(current_s, typical))


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    minutes, sec = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{sec:02d}s"


def status_line(
    done: int, total: int, current: str, current_s: float, durations: list[float]
) -> str:
    """e.g. ``[3/27] kill-write-0 running 4s; ETA 1m40s`` (pure)."""
    eta = eta_s(done, total, durations, current_s)
    return f"[{done + 1}/{total}] {current} running {_clock(current_s)}; ETA {_clock(eta)}"


class Live:
    """Reports progress from a daemon thread while the main thread runs experiments."""

    def __init__(
        self,
        total: int,
        *,
        quiet: bool = False,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.clock = clock
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s = TTY_EVERY_S if self.tty else PLAIN_EVERY_S
        self.done = 0
        self.current = ""
        self.current_at = clock()
        self.durations: list[float] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Live:
        if not self.quiet:
            self._thread = threading.Thread(target=self._loop, name="preflight-live", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * TTY_EVERY_S)
        if self.tty and not self.quiet:
            self._write("\n")

    def line(self) -> str:
        with self._lock:
            return status_line(
                self.done, self.total, self.current, self.clock() - self.current_at, self.durations
            )

    def begin(self, experiment_id: str) -> None:
        with self._lock:
            self.current, self.current_at = experiment_id, self.clock()
        self.show()

    def end(self, duration_s: float) -> None:
        with self._lock:
            self.done += 1
            self.durations.append(duration_s)

    def show(self) -> None:
        if self.quiet:
            return
        text = self.line()
        self._write(f"\r\x1b[2K{text}" if self.tty else text + "\n")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed stream must never fail the check

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.show()
