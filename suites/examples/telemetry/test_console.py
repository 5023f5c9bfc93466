"""The progress display shared by datagen and trainer, on a fake clock and fake streams."""

from __future__ import annotations

import io

from preflight_examples.telemetry.console import ProgressDisplay, progress_line


class Clock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def test_a_terminal_bar_redraws_at_most_ten_times_a_second_and_ends_its_line() -> None:
    stream, clock = io.StringIO(), Clock()
    display = ProgressDisplay("trainer", "steps", stream, tty=True, clock=clock)
    display.update(0, 40, 0.0, None)
    display.update(1, 40, 20.0, 2.0)  # same instant: not drawn
    clock.now_s = 0.1
    display.update(20, 40, 20.0, 1.0)
    display.line("checkpoint 20 committed")
    display.close()
    assert stream.getvalue() == (
        "\r[" + "." * 30 + "] 0/40 steps (0.0%), 0 steps/s, eta ?"
        "\r[" + "#" * 15 + "." * 15 + "] 20/40 steps (50.0%), 20 steps/s, eta 1s\n"
        "trainer: checkpoint 20 committed\n"
    )  # close() after a line adds nothing: the bar was already ended


def test_a_log_gets_a_line_a_second_and_forced_ones() -> None:
    stream, clock = io.StringIO(), Clock()
    display = ProgressDisplay("datagen", "samples", stream, tty=False, clock=clock)
    for done in range(10):
        clock.now_s = done * 0.25
        display.update(done, 10, 4.0, None, force=done == 9)
    assert stream.getvalue().splitlines() == [
        "datagen: 0/10 samples (0.0%), 4 samples/s, eta ?",
        "datagen: 4/10 samples (40.0%), 4 samples/s, eta ?",
        "datagen: 8/10 samples (80.0%), 4 samples/s, eta ?",
        "datagen: 9/10 samples (90.0%), 4 samples/s, eta ?",
    ]


def test_disabled_shows_nothing_and_a_broken_stream_disables_it() -> None:
    stream = io.StringIO()
    display = ProgressDisplay("trainer", "steps", stream, tty=True, enabled=False)
    display.update(1, 2, 1.0, 1.0, force=True)
    display.line("hello")
    assert stream.getvalue() == ""
    closed = io.StringIO()
    closed.close()
    broken = ProgressDisplay("trainer", "steps", closed, tty=False)
    broken.update(1, 2, 1.0, 1.0)  # a terminal that went away must not fail the run
    assert not broken.enabled


def test_slow_rates_keep_their_digits() -> None:
    assert "0.25 steps/s" in progress_line(1, 100, 0.25, None, "steps")
    assert "7.5 steps/s" in progress_line(1, 100, 7.5, None, "steps")
    assert "120 steps/s" in progress_line(1, 100, 120.4, None, "steps")
