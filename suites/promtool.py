"""promtool (Prometheus's own checker) for the tests: found on PATH, run with a bound.

`make test` installs it (Debian package `prometheus`, /usr/bin/promtool) when it is missing.
Where it still is missing, a test that needs it fails under CI (CI=true: the proof must not
silently vanish there) and is skipped elsewhere, naming the fix.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

PROMTOOL_TIMEOUT_S = 60.0
MISSING = (
    "promtool not found on PATH; `make promtool` installs it "
    "(apt-get install prometheus, which ships /usr/bin/promtool)"
)


def promtool() -> str:
    """promtool's path; fails the test under CI and skips it elsewhere when it is missing."""
    found = shutil.which("promtool")
    if found is not None:
        return found
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{MISSING} (CI=true: the PromQL and exposition checks must run)")
    pytest.skip(MISSING)


def run_promtool(
    args: list[str], *, stdin: bytes | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT_S,
        cwd=cwd,
        check=False,
    )


def check_metrics(exposition: bytes) -> str:
    """`promtool check metrics` findings for an exposition text ('' when clean). promtool
    prints lint findings and exits non-zero; both are folded into the returned text."""
    done = run_promtool(["check", "metrics"], stdin=exposition)
    findings = (done.stdout + done.stderr).strip()
    if done.returncode != 0 and not findings:
        findings = f"promtool check metrics exited {done.returncode}"
    return findings
