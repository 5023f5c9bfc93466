"""Progress output: a bar on a terminal, plain rate-limited log lines otherwise."""

from __future__ import annotations

import io

from preflight_examples.datagen.report import Reporter, format_eta, progress_bar


def test_terminal_gets_a_redrawn_bar() -> None:
    stream = io.StringIO()
    reporter = Reporter(stream, tty=True)
    reporter.progress(500, 1000, 250.0, 2.0, force=True)
    reporter.event("shards/00001/videos.npy: corrupt; regenerating shard 1")
    text = stream.getvalue()
    assert text.startswith("\r[###############...............] 500/1000 samples (50.0%)")
    assert "\ndatagen: shards/00001/videos.npy" in text  # the event starts on its own line


def test_log_file_gets_plain_lines_at_most_once_a_second() -> None:
    stream = io.StringIO()
    reporter = Reporter(stream, tty=False)
    for done in range(0, 1000, 100):
        reporter.progress(done, 1000, 100.0, (1000 - done) / 100.0)
    reporter.progress(1000, 1000, 100.0, 0.0, force=True)
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert lines == [
        "datagen: 0/1000 samples (0.0%), 100 samples/s, eta 10s",
        "datagen: 1000/1000 samples (100.0%), 100 samples/s, eta 0s",
    ]


def test_eta_formatting() -> None:
    assert [format_eta(v) for v in (None, 5.4, 125, 7322)] == ["?", "5s", "2m05s", "2h02m"]
    assert progress_bar(0, 10, 0.0, None).startswith("[" + "." * 30 + "]")
