"""Helpers for the datagen unit suite: run the CLI as a subprocess, tiny sizes, a reference.

Every subprocess has a timeout; every dataset lives under tmp_path (xdist-safe).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from preflight_examples.datagen.cli import main
from preflight_examples.datagen.verify import scan

RUN_TIMEOUT_S = 60.0
# Tiny but complete: 10 shards of 12 samples, 4 classes, augmentation on.
SMALL = ("--samples", "120", "--frames", "6", "--size", "12", "--channels", "1")
SMALL_SHARD = ("--shard-size", "12")


def datagen_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "preflight_examples.datagen.cli", *args]


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test's environment without armed faults (unless given), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLIGHT_FAULTS")}
    env.update(extra or {})
    return env


def run_datagen(
    *args: str, faults: str | None = None, timeout_s: float = RUN_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    env = clean_env({"PREFLIGHT_FAULTS": faults} if faults else None)
    return subprocess.run(
        datagen_cmd(*args), capture_output=True, text=True, timeout=timeout_s, env=env
    )


def cli(*args: str) -> tuple[int, str, str]:
    """Run ``datagen.cli.main`` in this process (for commands that start no workers)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(list(args))
    return code, stdout.getvalue(), stderr.getvalue()


def generate(out: Path, *extra: str, faults: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_datagen("generate", "--out", str(out), *SMALL, *extra, faults=faults)


def fingerprint(out: Path) -> str:
    return scan(out).fingerprint


def _session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory shared by this session's xdist workers (and by nothing else)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """An uninterrupted one-worker run of the small dataset and its fingerprint, made once
    per session (the first xdist worker builds it under a lock; tests only copy it)."""
    shared = _session_dir(tmp_path_factory)
    out = shared / "datagen-reference"
    with open(shared / "datagen-reference.lock", "w") as lock:
        deadline_s = time.monotonic() + RUN_TIMEOUT_S
        while True:  # bounded by the deadline
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                assert time.monotonic() < deadline_s, "the reference dataset lock timed out"
                time.sleep(0.05)
        if not (out / "manifest.json").exists():
            done = generate(out, *SMALL_SHARD, "--workers", "1", "--new")
            assert done.returncode == 0, done.stderr
    return out, fingerprint(out)
