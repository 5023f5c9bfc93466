"""Benchmark the power-loss layer's overhead (issue 21: goal under 3x the job's wall time).

    .venv/bin/python benchmarks/bench_powerloss.py [--workload datagen] [--reps 3]

Runs the workload (pyproject.toml spec, small tier) alternately plain and under the trace
mode's strace (harness.faults.powerloss_trace: every durability and write call logged with
its bytes), each from a fresh work dir, and times them; then times the replay of one trace
through the durable-state model (parse + model + crash state, what every experiment pays
after its cut). Figures, written to reports/bench-powerloss.json and printed: per variant
n, median_s, min_s, max_s; the ratio traced/plain of the medians; trace bytes; replay_s.
Pass: ratio < 3.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from durable import atomic_write
from harness.faults import powerloss_trace as trace
from harness.faults.durable_state import FsModel, crash_state, replay
from harness.faults.strace_ops import parse_lines
from harness.workload import Run, WorkloadSpec, load_spec

REPO = Path(__file__).resolve().parent.parent
REPORT = REPO / "reports" / "bench-powerloss.json"
TARGET_RATIO = 3.0
RUN_TIMEOUT_S = 300.0
REPS_MAX = 20


def timed_run(spec: WorkloadSpec, params: dict[str, int], workdir: Path, logs: Path) -> float:
    with Run(spec, workdir, params, log_dir=logs) as run:
        rc = run.wait(RUN_TIMEOUT_S, raise_on_timeout=True)
        seconds = run.duration_s
    if rc != 0:
        raise SystemExit(f"{spec.name}: exit {rc}: {run.stderr_text()[-400:]}")
    return seconds


def summary(values: list[float]) -> dict[str, float | int]:
    return {
        "n": len(values),
        "median_s": round(statistics.median(values), 3),
        "min_s": round(min(values), 3),
        "max_s": round(max(values), 3),
    }


def replay_s(workdir: Path, trace_path: Path, cwd: Path) -> float:
    started = time.monotonic()
    model = FsModel(str(workdir.resolve()), {})
    with open(trace_path, errors="surrogateescape") as handle:
        replay(model, parse_lines(handle, str(cwd)))
    crash_state(model, "drop", "bench")
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="datagen")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    if not 1 <= args.reps <= REPS_MAX:
        parser.error(f"--reps must be in [1, {REPS_MAX}]")
    if trace.unavailable():
        print(f"bench_powerloss: {trace.unavailable()}", file=sys.stderr)
        return 2
    spec = load_spec(args.workload, str(REPO / "pyproject.toml"))
    params = dict(spec.params("small"))
    root = Path(tempfile.mkdtemp(prefix="bench-powerloss-"))
    plain, traced, trace_bytes, replays = [], [], [], []
    try:
        for rep in range(args.reps):
            plain.append(timed_run(spec, params, root / f"plain-{rep}", root / "logs"))
            trace_path = root / f"traced-{rep}.strace"
            launcher = (*trace.strace_argv(trace_path, None), *spec.launcher)
            workdir = root / f"traced-{rep}"
            traced.append(
                timed_run(replace(spec, launcher=launcher), params, workdir, root / "logs")
            )
            trace_bytes.append(trace_path.stat().st_size)
            replays.append(replay_s(workdir, trace_path, spec.spec_dir))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ratio = statistics.median(traced) / statistics.median(plain)
    result = {
        "bench": "powerloss",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "workload": args.workload,
        "tier": "small",
        "mode": "trace (strace)",
        "plain": summary(plain),
        "traced": summary(traced),
        "ratio": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "trace_bytes_median": int(statistics.median(trace_bytes)),
        "replay": summary(replays),
        "passed": ratio < TARGET_RATIO,
    }
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(REPORT, (json.dumps(result, indent=2) + "\n").encode())
    print(json.dumps(result, indent=2))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
