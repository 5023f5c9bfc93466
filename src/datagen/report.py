"""What a run tells its user: a progress bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from telemetry import Telemetry

BAR_CELLS = 30
# Plain log lines at most this often (plus the first and the last), so a run with tiny
# shards does not flood a log file.
LOG_INTERVAL_S = 1.0
BAR_INTERVAL_S = 0.1


def format_eta(eta_s: float | None) -> str:
    if eta_s is None:
        return "?"
    seconds = int(round(eta_s))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def progress_line(done: int, total: int, rate_per_s: float, eta_s: float | None) -> str:
    percent = 100.0 * done / total if total else 100.0
    return (
        f"{done}/{total} samples ({percent:.1f}%), {rate_per_s:.0f} samples/s, "
        f"eta {format_eta(eta_s)}"
    )


def progress_bar(done: int, total: int, rate_per_s: float, eta_s: float | None) -> str:
    filled = BAR_CELLS * done // total if total else BAR_CELLS
    bar = "#" * filled + "." * (BAR_CELLS - filled)
    return f"[{bar}] {progress_line(done, total, rate_per_s, eta_s)}"


class Reporter:
    """Writes to ``stream`` (stderr by default); stdout stays free for command output."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        tty: bool | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.telemetry = telemetry
        # JSON logs on stderr: plain lines there would break "one object per line".
        self.plain = telemetry is None or telemetry.log_json != "-"
        self._last_s = float("-inf")
        self._bar_shown = False

    def event(self, message: str) -> None:
        """A line that must be seen (regeneration, errors, the outcome)."""
        if self.telemetry is not None:
            self.telemetry.log("info", message)
        if not self.plain:
            return
        self._clear_bar()
        self.stream.write(f"datagen: {message}\n")
        self.stream.flush()

    def progress(
        self, done: int, total: int, rate_per_s: float, eta_s: float | None, *, force: bool = False
    ) -> None:
        if self.telemetry is not None:
            self.telemetry.progress(done, total, rate_per_s, eta_s)
        if not self.plain:
            return
        now = time.monotonic()
        interval_s = BAR_INTERVAL_S if self.tty else LOG_INTERVAL_S
        if not force and now - self._last_s < interval_s:
            return
        self._last_s = now
        if self.tty:
            self.stream.write("\r" + progress_bar(done, total, rate_per_s, eta_s))
            self._bar_shown = True
        else:
            self.stream.write(f"datagen: {progress_line(done, total, rate_per_s, eta_s)}\n")
        self.stream.flush()

    def checkpoint(self, duration_s: float) -> None:
        """Committed shards were recorded: the dataset's checkpoint."""
        if self.telemetry is not None:
            self.telemetry.checkpoint(duration_s)

    def error(self, message: str) -> None:
        """A failure the outcome line will summarise; metrics and JSON logs get it now."""
        if self.telemetry is not None:
            self.telemetry.error(message)

    def close(self) -> None:
        self._clear_bar()

    def _clear_bar(self) -> None:
        if self._bar_shown:
            self.stream.write("\n")
            self._bar_shown = False
