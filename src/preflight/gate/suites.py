"""The project's own pytest suites as extra gate evidence (``[tool.preflight.gate] suites``):
run once under pytest with the plugin's session report, whose recorded measurements and
test outcomes join the experiments'. A user's repository needs none; ours keeps its parser
fuzz and alert-latency evidence this way."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from preflight.spec import tiers

REPORT_BYTES_MAX = 64 << 20


def pytest_argv(suites: list[str], scale: str, workers: str, report_dir: Path,
                extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", *suites, "--scale", scale, "-n", workers, "-q",
            "-p", "no:cacheprovider", "--preflight-report", str(report_dir), *extra]


def run_suites(suites: list[str], scale: str, workers: str, scratch: Path, cwd: Path,
               extra: list[str]) -> tuple[int, list[dict[str, Any]]]:
    """(pytest exit code, the session report's tests); bounded by the tier's timeout."""
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        done = subprocess.run(pytest_argv(suites, scale, workers, scratch, extra), cwd=cwd,
                              timeout=tiers.get_tier(scale).suite_timeout_s, check=False)
        code = done.returncode
    except subprocess.TimeoutExpired:
        print(f"preflight gate: suites {suites} exceeded "
              f"{tiers.get_tier(scale).suite_timeout_s} s",
              file=sys.stderr)
        code = 1
    tests: list[dict[str, Any]] = []
    for report in scratch.glob("*/report.json"):
        if report.stat().st_size <= REPORT_BYTES_MAX:
            tests += json.loads(report.read_text(encoding="utf-8")).get("tests", [])
    shutil.rmtree(scratch, ignore_errors=True)
    if code not in (0, 1) and not tests:  # pytest itself broke: say so as a failed test
        tests.append({"nodeid": f"suites {' '.join(suites)}", "outcome": "failed",
                      "longrepr": f"pytest exited {code} and recorded nothing",
                      "measurements": []})
    return code, tests
