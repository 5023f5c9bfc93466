"""What a long run shows its user on stderr: a bar redrawn in place on a terminal, plain
rate-limited lines otherwise (a log file gets one line a second, not one per step).

Shared by datagen (samples) and trainer (steps). stdout stays free for the commands'
machine-readable output, and a run with JSON logs on stderr (--log-json) shows neither, as
plain text there would break "one object per line".

    display = ProgressDisplay("trainer", "steps")
    display.update(done, total, rate_per_s, eta_s)   # every step; drawn when due
    display.clear()                                   # before any other stderr line
    display.close()                                   # at the end: the bar's line ended
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

BAR_CELLS = 30
BAR_INTERVAL_S = 0.1  # a redraw costs a write; ten a second reads as live
LOG_INTERVAL_S = 1.0  # plain lines at most this often (plus forced ones: first, last)


def format_eta(eta_s: float | None) -> str:
    if eta_s is None:
        return "?"
    seconds = int(round(eta_s))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def progress_line(
    done: int, total: int, rate_per_s: float, eta_s: float | None, unit: str = "samples"
) -> str:
    percent = 100.0 * done / total if total else 100.0
    # Below 10 units/s a whole number hides the rate (a slow trainer reads "0 steps/s").
    rate = f"{rate_per_s:.0f}" if rate_per_s >= 10 or rate_per_s == 0 else f"{rate_per_s:.2g}"
    return f"{done}/{total} {unit} ({percent:.1f}%), {rate} {unit}/s, eta {format_eta(eta_s)}"


def progress_bar(
    done: int, total: int, rate_per_s: float, eta_s: float | None, unit: str = "samples"
) -> str:
    filled = BAR_CELLS * min(done, total) // total if total else BAR_CELLS
    bar = "#" * filled + "." * (BAR_CELLS - filled)
    return f"[{bar}] {progress_line(done, total, rate_per_s, eta_s, unit)}"


class ProgressDisplay:
    """Progress of one run on ``stream`` (stderr by default), as a bar when it is a terminal.

    ``enabled`` False shows nothing (JSON logs on stderr, a non-leader rank)."""

    def __init__(
        self,
        prog: str,
        unit: str,
        stream: TextIO | None = None,
        *,
        tty: bool | None = None,
        enabled: bool = True,
        log_interval_s: float = LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.prog = prog
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.tty = _isatty(self.stream) if tty is None else tty
        self.enabled = enabled
        self.interval_s = BAR_INTERVAL_S if self.tty else log_interval_s
        self._clock = clock
        self._last_s = float("-inf")
        self._bar_shown = False

    def update(
        self, done: int, total: int, rate_per_s: float, eta_s: float | None, *, force: bool = False
    ) -> None:
        if not self.enabled:
            return
        now = self._clock()
        if not force and now - self._last_s < self.interval_s:
            return
        self._last_s = now
        if self.tty:
            self._write("\r" + progress_bar(done, total, rate_per_s, eta_s, self.unit))
            self._bar_shown = True
        else:
            line = progress_line(done, total, rate_per_s, eta_s, self.unit)
            self._write(f"{self.prog}: {line}\n")

    def line(self, message: str) -> None:
        """A line that must be seen, on a line of its own (the bar redraws below it)."""
        if not self.enabled:
            return
        self.clear()
        self._write(f"{self.prog}: {message}\n")

    def clear(self) -> None:
        """End the bar's line, so whatever is written next does not land after the bar."""
        if self._bar_shown:
            self._bar_shown = False
            self._write("\n")

    def close(self) -> None:
        self.clear()

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            # A closed or broken stderr (the terminal went away) must not fail the run.
            self.enabled = False


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
