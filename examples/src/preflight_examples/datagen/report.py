"""What a run tells its user: a progress bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

# The bar and the plain lines are shared with trainer (telemetry.console); re-exported here.
from preflight_examples.telemetry.console import (
    ProgressDisplay,
    format_eta,
    progress_bar,
    progress_line,
)

if TYPE_CHECKING:
    from preflight_examples.telemetry import Telemetry

__all__ = ["Reporter", "format_eta", "progress_bar", "progress_line"]


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
        self.telemetry = telemetry
        # JSON logs on stderr: plain lines there would break "one object per line".
        self.plain = telemetry is None or telemetry.log_json != "-"
        self.display = ProgressDisplay(
            "datagen", "samples", self.stream, tty=tty, enabled=self.plain
        )
        self.tty = self.display.tty

    def event(self, message: str) -> None:
        """A line that must be seen (regeneration, errors, the outcome)."""
        if self.telemetry is not None:
            self.telemetry.log("info", message)
        self.display.line(message)

    def progress(
        self, done: int, total: int, rate_per_s: float, eta_s: float | None, *, force: bool = False
    ) -> None:
        if self.telemetry is not None:
            self.telemetry.progress(done, total, rate_per_s, eta_s)
        self.display.update(done, total, rate_per_s, eta_s, force=force)

    def checkpoint(self, duration_s: float) -> None:
        """Committed shards were recorded: the dataset's checkpoint."""
        if self.telemetry is not None:
            self.telemetry.checkpoint(duration_s)

    def error(self, message: str) -> None:
        """A failure the outcome line will summarise; metrics and JSON logs get it now."""
        if self.telemetry is not None:
            self.telemetry.error(message)

    def close(self) -> None:
        self.display.close()
