"""Helpers for the distributed suite: world size 2 on CPU under torchrun (--standalone picks a
free port, so xdist workers never collide); every child process has a timeout."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from preflight_examples.trainer.distributed import torchrun_prefix

from preflight.check.battery import run_battery
from preflight.check.options import CheckOptions

RUN_TIMEOUT_S = 90.0
WORLD_SIZE = 2
# Checked by torchrun every this often: a dead rank is noticed fast (default 0.1-5 s).
MONITOR_INTERVAL_S = "0.2"


def torchrun_argv(nproc: int = WORLD_SIZE, max_restarts: int = 0) -> list[str]:
    """torchrun's own argv prefix; the job follows (--no-python: it is a console script)."""
    return torchrun_prefix(nproc, max_restarts, MONITOR_INTERVAL_S)


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without armed faults or torchrun variables, plus ``extra``; the
    venv's bin first on PATH so console scripts resolve."""
    drop = ("PREFLIGHT_FAULTS", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    bin_dir = os.path.dirname(sys.executable)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra or {})
    return env


def run(argv: Sequence[str], timeout_s: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout_s, env=clean_env()
    )


def check_rank_kill(
    spec_text: str, workload: str, tmp_path: Path, seed: int, attempt_timeout_s: float
) -> tuple[Any, dict[str, tuple[str, str]]]:
    """`preflight check WORKLOAD --faults rank` on a spec written to ``tmp_path``: the
    kill-rank row (already asserted not failed) and its verdicts by name."""
    spec = tmp_path / "workloads.toml"
    spec.write_text(spec_text)
    opts = CheckOptions(
        workload=workload,
        spec_file=str(spec),
        faults=("rank",),
        seed=seed,
        report_dir=str(tmp_path / "report"),
        work_root=str(tmp_path),
        attempt_timeout_s=attempt_timeout_s,
        quiet=True,
    )
    result = run_battery(opts)
    assert not result.report.errors, result.report.errors
    row = result.row("kill-rank")
    statuses = {v.name: (v.status, v.detail) for v in row.verdicts}
    assert not row.failed, (statuses, row.history.notes, row.history.attempts[-1].stderr_tail)
    return row, statuses
