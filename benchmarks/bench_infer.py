"""Inference benchmark: `trainer bench-infer` on the default model, TorchScript and ONNX.
Writes reports/bench-infer.json.

    .venv/bin/python benchmarks/bench_infer.py [--quick] [--out reports/bench-infer.json]

A default-size model (--channels 16 --depth 3 on 16x3x64x64 clips) is trained for a few
steps (latency does not depend on the weights) and exported; `trainer bench-infer` then
runs as a child process per engine with batch sizes 1, 8 and 32, one torch thread. The
target is the issue's: single-sample p99 <= 10 ms on this CPU box (the seed asks 100 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CHILD_TIMEOUT_S = 900.0
P99_TARGET_MS = 10.0
ENGINES = ("torchscript", "onnx")


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLIGHT_FAULTS")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def run_child(argv: list[str]) -> str:
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
        env=child_env(),
        cwd=REPO,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def cli_argv(*args: str) -> list[str]:
    """The serving subcommands (identical to `trainer ...` once trainer/cli.py wires them)."""
    return [sys.executable, "-m", "preflight_examples.serving.cli", *args]


def make_bundle(work: Path) -> Path:
    from preflight_examples.trainer.synthetic import write_dataset

    data = write_dataset(
        work / "data", samples=64, frames=16, channels=3, size=64, classes=4, shard_size=1000
    )
    run = work / "run"
    run_child(
        [
            sys.executable,
            "-m",
            "preflight_examples.trainer.cli",
            "fit",
            "--data",
            str(data),
            "--out",
            str(run),
            "--steps",
            "5",
            "--ckpt-every",
            "0",
        ]
    )
    bundle = work / "bundle"
    run_child(cli_argv("export", str(run), "--bundle", str(bundle), "--eval-samples", "64"))
    return bundle


def bench_engine(bundle: Path, engine: str, work: Path, quick: bool) -> dict[str, Any]:
    out = work / f"bench-{engine}.json"
    iterations = "50" if quick else "300"
    run_child(
        cli_argv(
            "bench-infer",
            str(bundle),
            "--engine",
            engine,
            "--batch-sizes",
            "1,8,32",
            "--iterations",
            iterations,
            "--warmup",
            "10",
            "--out",
            str(out),
        )
    )
    return json.loads(out.read_text())


def rows(engine: str, report: dict[str, Any]) -> list[dict[str, Any]]:
    results = []
    for r in report["results"]:
        single = r["batch_size"] == 1
        results.append(
            {
                "name": f"{engine}_batch{r['batch_size']}_latency_ms_p99",
                "measured": r["latency_ms_p99"],
                "target": f"<= {P99_TARGET_MS:g}" if single else "reported",
                "pass": (r["latency_ms_p99"] <= P99_TARGET_MS) if single else None,
                "unit": "ms per call (p99); detail has p50/p95 and samples/s",
                "detail": r,
            }
        )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--out", default=str(REPO / "reports" / "bench-infer.json"))
    args = parser.parse_args()
    started_s = time.monotonic()
    reports = {}
    with tempfile.TemporaryDirectory(prefix="bench-infer-") as tmp:
        work = Path(tmp)
        bundle = make_bundle(work)
        for engine in ENGINES:
            reports[engine] = bench_engine(bundle, engine, work, args.quick)
    results = [row for engine in ENGINES for row in rows(engine, reports[engine])]
    # The target is on the default engine; ONNX is reported beside it.
    gated = [r for r in results if r["name"].startswith("torchscript") and r["pass"] is not None]
    for r in results:
        if r["name"].startswith("onnx") and r["pass"] is not None:
            r["pass"], r["target"] = None, f"reported (TorchScript is gated at {P99_TARGET_MS:g})"
    report = {
        "benchmark": "infer",
        "quick": args.quick,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "wall_s": round(time.monotonic() - started_s, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_1m": round(os.getloadavg()[0], 2),
        },
        "model": "default (--channels 16 --depth 3), input uint8 [N,16,3,64,64], 1 torch thread",
        "results": results,
        "pass": all(r["pass"] is not False for r in gated),
    }
    from preflight.durable import atomic_write

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, report)
    for r in results:
        verdict = {True: "PASS", False: "FAIL", None: "info"}[r["pass"]]
        d = r["detail"]
        print(
            f"{verdict:4}  {r['name']:36} p50 {d['latency_ms_p50']:8.2f}  p95 "
            f"{d['latency_ms_p95']:8.2f}  p99 {d['latency_ms_p99']:8.2f} ms  "
            f"{d['throughput_samples_per_s']:8.1f} samples/s  target {r['target']}"
        )
    print(f"wrote {args.out} in {report['wall_s']} s")
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
