"""Helpers for durable tests: run a snippet in a child process with fault points armed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

import pytest

CHILD_TIMEOUT_S = 60.0


def run_child(
    code: str, faults: str = "", trace: str | None = None, extra_env: Mapping[str, str] = ()
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with PREFLIGHT_FAULTS armed (bounded)."""
    env = dict(os.environ)
    env.pop("PREFLIGHT_FAULTS", None)
    env.pop("PREFLIGHT_FAULTS_TRACE", None)
    if faults:
        env["PREFLIGHT_FAULTS"] = faults
    if trace:
        env["PREFLIGHT_FAULTS_TRACE"] = trace
    env.update(dict(extra_env))
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )


@pytest.fixture
def child():
    return run_child
