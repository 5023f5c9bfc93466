"""Serving's subcommands reach `trainer` through the entry point group, not an import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SERVING_COMMANDS = ["export", "evaluate", "predict", "bench-infer", "serve", "promote", "rollback"]


def test_trainer_lists_serving_commands_in_place() -> None:
    from preflight_examples.serving import cli as serving_cli
    from preflight_examples.trainer.cli import build_parser, extensions

    assert serving_cli in extensions()
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    names = list(subparsers.choices)
    assert names == ["fit", *SERVING_COMMANDS, "fingerprint", "verify", "status"]


def test_trainer_module_runs_a_serving_command(tmp_path: Path) -> None:
    """`python -m preflight_examples.trainer.cli rollback` is the serving command."""
    missing = tmp_path / "deploy"
    done = subprocess.run(
        [sys.executable, "-m", "preflight_examples.trainer.cli", "rollback", str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert f"trainer: rollback: {missing} has no history.json" in done.stderr
