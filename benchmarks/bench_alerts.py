"""Benchmark alert detection latency per rule (issue 10: every alert within 5 s, small tier).

    .venv/bin/python benchmarks/bench_alerts.py [--reps 3] [--poll 0.1]

Each repetition runs the telemetry fixture job (fixtures/telemetry.toml) once clean and once
per planted condition, all at once, each watched through its metrics textfile by the
harness's Watcher (src/preflight/alerts). Detection latency = first alert's scrape time minus the
injection time (the job's "fault injected" log line, or the earlier bound of the fault
point's hit in the PREFLIGHT_FAULTS_TRACE file, so it is never an underestimate). Figures,
written to reports/bench-alerts.json and printed: per rule n, median_s, max_s, min_s; the
failures (a missed alert, an alert on the clean run or on another rule's plant).
Pass: every plant detected with no false alarm, and every rule's max_s <= 5 s.

With --workloads it also measures the real jobs (fixtures/telemetry.toml trainer_alerts and
datagen_alerts): a NaN planted through trainer.loss (with --skip-nonfinite), a data-loader
sleep through trainer.data, and a shard-writer sleep in datagen; a workload whose command
line lacks the telemetry flags is reported as skipped, not failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from preflight.alerts import thresholds_for
from preflight.alerts.experiment import Detection, Plant, run_experiments
from preflight.alerts.latency import summarize
from preflight.alerts.plants import (
    FIXTURE_WORKLOAD,
    telemetry_plants,
    workload_plants,
)
from preflight.durable import atomic_write
from preflight.workload import RunError, SpecError, WorkloadSpec, load_specs, prepare, run_aux

REPO = Path(__file__).resolve().parent.parent
REPORT = REPO / "reports" / "bench-alerts.json"
FIXTURE_SPEC = REPO / "fixtures" / "telemetry.toml"
TARGET_S = 5.0
TIER = "small"
RUN_TIMEOUT_S = 120.0
PREPARE_TIMEOUT_S = 120.0
REPS_MAX = 50


def summarize_detections(
    plants: list[Plant], detections: list[Detection], reps: int
) -> dict[str, object]:
    """Per plant with an expected rule: latency statistics over the detected repetitions."""
    rules: dict[str, dict[str, object]] = {}
    for plant in plants:
        if plant.expect is None:
            continue
        latencies = [
            d.latency_s
            for d in detections
            if d.plant.name == plant.name and d.ok and d.latency_s is not None
        ]
        stats = summarize(latencies)
        max_s = stats["max_s"]
        rules[plant.name] = {
            "rule": plant.expect,
            **stats,
            "ok": len(latencies) == reps and max_s is not None and max_s <= TARGET_S,
        }
    failures = [f"{d.plant.name}: {d.reason}" for d in detections if not d.ok]
    passed = not failures and all(r["ok"] for r in rules.values())
    return {"plants": rules, "failures": failures, "passed": passed}


def measure(reps: int, poll_s: float, scratch: Path) -> dict[str, object]:
    spec = load_specs(FIXTURE_SPEC)[FIXTURE_WORKLOAD]
    params = spec.params(TIER)
    th = thresholds_for(TIER)
    plants = telemetry_plants(th, int(params["step_ms"]))
    detections: list[Detection] = []
    for rep in range(reps):
        base = scratch / f"rep{rep}"
        base.mkdir()
        detections += run_experiments(
            spec, params, plants, base, th, timeout_s=RUN_TIMEOUT_S, poll_s=poll_s
        )
    return summarize_detections(plants, detections, reps)


def telemetry_flags_missing(spec: WorkloadSpec) -> str | None:
    """Why the workload cannot be measured (its CLI lacks --metrics-file), or None."""
    argv = [a for a in spec.command if not a.startswith("-")][:2]
    try:
        done = run_aux(spec, [*argv, "--help"], {}, PREPARE_TIMEOUT_S, key="help")
    except RunError as exc:
        return str(exc)
    if "--metrics-file" not in done.stdout:
        return f"`{' '.join(argv)}` has no --metrics-file: telemetry is not wired in yet"
    return None


def measure_workloads(reps: int, poll_s: float, scratch: Path) -> dict[str, object]:
    specs = load_specs(FIXTURE_SPEC)
    th = thresholds_for(TIER)
    results: dict[str, object] = {}
    for name, plants in workload_plants(th).items():
        spec = specs[name]
        missing = telemetry_flags_missing(spec)
        if missing is not None:
            results[name] = {"skipped": missing, "passed": None}
            continue
        params: dict[str, object] = dict(spec.params(TIER))
        try:
            params["prepared"] = str(
                prepare(spec, params, scratch / f"{name}-prepared", PREPARE_TIMEOUT_S)
            )
        except (RunError, SpecError) as exc:
            results[name] = {"failures": [f"prepare: {exc}"], "passed": False}
            continue
        detections: list[Detection] = []
        for rep in range(reps):
            base = scratch / f"{name}-rep{rep}"
            base.mkdir()
            detections += run_experiments(
                spec, params, plants, base, th, timeout_s=RUN_TIMEOUT_S, poll_s=poll_s
            )
        results[name] = summarize_detections(plants, detections, reps)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--poll", type=float, default=0.1, help="scrape interval, s (0.1)")
    parser.add_argument(
        "--workloads", action="store_true", help="also measure the real datagen and trainer"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.reps <= REPS_MAX or not 0.005 <= args.poll <= 5:
        parser.error(f"need 1 <= --reps <= {REPS_MAX} and 0.005 <= --poll <= 5")
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    started_s = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-alerts-") as scratch:
        fixture = measure(args.reps, args.poll, Path(scratch))
        workloads = measure_workloads(args.reps, args.poll, Path(scratch)) if args.workloads else {}
    passed = fixture["passed"] and all(w.get("passed") is not False for w in workloads.values())
    result = {
        "benchmark": "alerts",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "tier": TIER,
        "reps": args.reps,
        "poll_s": args.poll,
        "target_s": TARGET_S,
        "thresholds": thresholds_for(TIER).__dict__,
        "fixture": fixture,
        "workloads": workloads,
        "wall_s": round(time.monotonic() - started_s, 3),
        "passed": passed,
    }
    atomic_write(REPORT, result)
    print(json.dumps(result, indent=1))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
