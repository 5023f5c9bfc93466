"""`trainer fit` shows its progress on stderr: a bar redrawn in place on a terminal, plain
lines in a log; stdout (the summary JSON) and PROGRESS.json are untouched by either."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from .conftest import STEPS, Result, fit_args


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_on(
    stderr: io.StringIO, argv: Sequence[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    from preflight_examples.trainer.cli import main

    stdout = io.StringIO()
    monkeypatch.setattr(sys, "stdout", stdout)
    monkeypatch.setattr(sys, "stderr", stderr)
    code = main(list(argv))
    return code, stdout.getvalue(), stderr.getvalue()


def summary_only(out: str) -> dict[str, object]:
    (line,) = out.splitlines()  # one line: the machine-readable summary, nothing else
    return json.loads(line)


def test_a_terminal_gets_a_bar_that_ends_before_the_summary(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A NaN at step 8, skipped: its warning comes mid-run, while the bar is drawn.
    monkeypatch.setenv("PREFLIGHT_FAULTS", "trainer.loss:nan@8")
    argv = fit_args(dataset, tmp_path / "run", STEPS, "--skip-nonfinite")
    code, out, err = run_on(FakeTerminal(), argv, monkeypatch)
    assert code == 0 and summary_only(out)["steps"] == STEPS
    assert f"\r[{'#' * 30}] {STEPS}/{STEPS} steps (100.0%)" in err
    assert err.endswith("\n")  # the bar's line is ended: a shell prompt starts on its own
    (skipped,) = [line for line in err.split("\n") if "step skipped" in line]
    assert skipped.startswith("trainer: non-finite")  # on its own line, not after the bar
    progress = json.loads((tmp_path / "run" / "PROGRESS.json").read_text())
    assert progress["done"] == STEPS and progress["state"] == "done"


def test_a_log_gets_plain_lines_first_and_last(
    trainer_main: Callable[[Sequence[str]], Result], dataset: Path, tmp_path: Path
) -> None:
    result = trainer_main(fit_args(dataset, tmp_path / "run"))
    assert result.code == 0 and summary_only(result.out)["steps"] == STEPS
    assert "\r" not in result.err
    lines = [line for line in result.err.splitlines() if " steps (" in line]
    assert lines[0].startswith(f"trainer: 0/{STEPS} steps (0.0%)")
    assert lines[-1].startswith(f"trainer: {STEPS}/{STEPS} steps (100.0%)")


def test_json_logs_on_stderr_get_no_progress_text(
    trainer_main: Callable[[Sequence[str]], Result], dataset: Path, tmp_path: Path
) -> None:
    result = trainer_main(fit_args(dataset, tmp_path / "run", STEPS, "--log-json"))
    assert result.code == 0
    assert " steps (" not in result.err and "\r" not in result.err
