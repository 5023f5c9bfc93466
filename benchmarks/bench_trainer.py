"""Trainer benchmark: checkpoint overhead, lost work and restart latency per SIGKILL, RSS
flatness over 2,000 steps, samples/s with and without --bf16. Writes reports/bench-trainer.json.

    .venv/bin/python benchmarks/bench_trainer.py [--quick] [--out reports/bench-trainer.json]

Everything runs `trainer fit` as a child process (start-up cost included, as a user sees it)
on one dataset made here, side by side in one invocation: the overhead pairs are
interleaved and the fastest of each kind is compared, so a noisy neighbour on a shared
machine inflates both sides rather than one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_ddp import SECTION, read_report  # the sibling script (benchmarks/ is on sys.path)

from preflight.durable import atomic_write

REPO = Path(__file__).resolve().parent.parent

CKPT_EVERY = 10
OVERHEAD_TARGET = 0.035  # CheckFreq's published bound
RESTART_TARGET_S = 3.0
RSS_GROWTH_TARGET = 0.01  # of the median RSS, over the measured window
RSS_WARMUP_STEPS = 200  # mmap pages of a 512-sample dataset are all touched by then
CHILD_TIMEOUT_S = 1800.0
WAIT_POLL_S = 0.005
RESUME_RE = re.compile(r"resuming from .* \(step (\d+) of \d+\)")


@dataclass(frozen=True)
class Plan:
    samples: int
    overhead_steps: int
    overhead_reps: int
    kills: int
    rss_steps: int
    bf16_steps: int


FULL = Plan(
    samples=512, overhead_steps=300, overhead_reps=3, kills=5, rss_steps=2000, bf16_steps=100
)
QUICK = Plan(samples=128, overhead_steps=60, overhead_reps=1, kills=2, rss_steps=300, bf16_steps=20)


def trainer_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "preflight_examples.trainer.cli", *args]


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLIGHT_FAULTS")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def make_dataset(root: Path, samples: int) -> dict[str, Any]:
    """datagen's real output when datagen works here, else the trainer's synthetic writer."""
    out = root / "data"
    datagen = shutil.which("datagen", path=str(Path(sys.executable).parent))
    if datagen:
        done = subprocess.run(
            [datagen, "generate", "--out", str(out), "--samples", str(samples), "--workers", "1"],
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
            check=False,
            env=child_env(),
        )
        if done.returncode == 0:
            return {"source": "datagen generate", "path": str(out), **_shape(out)}
        shutil.rmtree(out, ignore_errors=True)
    from preflight_examples.trainer.synthetic import write_dataset

    write_dataset(out, samples=samples, frames=16, channels=3, size=64, classes=4, shard_size=1000)
    return {"source": "trainer.synthetic", "path": str(out), **_shape(out)}


def _shape(data: Path) -> dict[str, Any]:
    info = json.loads((data / "dataset.json").read_text())
    return {k: info[k] for k in ("samples", "frames", "channels", "size", "classes")}


def fit(data: str, run: Path, steps: int, *extra: str) -> dict[str, Any]:
    """A complete fit; returns its summary line (train_s excludes start-up)."""
    done = subprocess.run(
        trainer_argv("fit", "--data", data, "--out", str(run), "--steps", str(steps), *extra),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
        env=child_env(),
    )
    if done.returncode != 0:
        raise RuntimeError(f"trainer fit exited {done.returncode}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def metric_lines(run: Path) -> list[dict[str, Any]]:
    """Complete lines only: the trainer may be appending (or, resuming, cutting) right now."""
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.splitlines()
    if lines and not text.endswith("\n"):
        lines = lines[:-1]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            break  # read while being cut back
    return records


# ---------------------------------------------------------------- 1. checkpoint overhead


def paired_overhead(lines: list[dict[str, Any]], every: int) -> float:
    """Checkpoint cost measured inside one checkpointed run, as a fraction of its wall time.

    The snapshot and the persist it overlaps (and any wait for it) all fall in the step
    after a checkpoint boundary (step % every == 1); every other step is the baseline.
    Comparing the two within one run cancels what a shared machine's neighbours do to the
    run as a whole, which swamps a run-versus-run comparison by +-15% here.
    """
    pairs = zip(lines, lines[1:], strict=False)
    gaps = {b["step"]: b["time_unix"] - a["time_unix"] for a, b in pairs}
    carrying = [gap for step, gap in gaps.items() if step % every == 1]
    base = statistics.median(gap for step, gap in gaps.items() if step % every != 1)
    return sum(gap - base for gap in carrying) / (base * len(gaps))


def bench_overhead(data: str, work: Path, plan: Plan) -> tuple[dict[str, Any], str]:
    off, on, paired = [], [], []
    fingerprint = ""
    for rep in range(plan.overhead_reps):
        off.append(fit(data, work / f"off{rep}", plan.overhead_steps, "--ckpt-every", "0"))
        run = work / f"on{rep}"
        summary = fit(data, run, plan.overhead_steps, "--ckpt-every", str(CKPT_EVERY))
        on.append(summary)
        paired.append(paired_overhead(metric_lines(run), CKPT_EVERY))
        fingerprint = summary["fingerprint"]
    overhead = statistics.median(paired)
    best_off = min(s["train_s"] for s in off)
    best_on = min(s["train_s"] for s in on)
    return {
        "name": "checkpoint_overhead",
        "measured": round(overhead, 4),
        "unit": "fraction of training wall time (--ckpt-every 10; steps carrying a "
        "checkpoint vs the run's median step, median over runs)",
        "reference": f"no checkpoints: {best_off:.3f} s for {plan.overhead_steps} steps",
        "target": f"<= {OVERHEAD_TARGET}",
        "ratio": round(overhead / OVERHEAD_TARGET, 3),
        "pass": overhead <= OVERHEAD_TARGET,
        "detail": {
            "paired_per_run": [round(x, 4) for x in paired],
            "run_vs_run_fastest": round(best_on / best_off - 1.0, 4),
            "train_s_without": [s["train_s"] for s in off],
            "train_s_with": [s["train_s"] for s in on],
            "main_thread_stall_fraction_median": round(
                statistics.median(s["ckpt_stall_s"] / s["train_s"] for s in on), 5
            ),
            "checkpoints_per_run": on[0]["checkpoints"],
        },
    }, fingerprint


# ---------------------------------------------------------------- 2+3. kills


def _wait_for(predicate, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value is not None:
            return value
        time.sleep(WAIT_POLL_S)
    raise TimeoutError(f"waited {timeout_s:.0f} s for {what}")


def _start(data: str, run: Path, steps: int, log: Path) -> subprocess.Popen[bytes]:
    argv = trainer_argv(
        "fit",
        "--data",
        data,
        "--out",
        str(run),
        "--steps",
        str(steps),
        "--ckpt-every",
        str(CKPT_EVERY),
    )
    with open(log, "wb") as err:
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=child_env())


def _resumed_step(log: Path) -> int | None:
    match = RESUME_RE.search(log.read_text(errors="replace")) if log.exists() else None
    return int(match.group(1)) if match else None


def _first_line_after(run: Path, step: int, since_unix: float) -> dict[str, Any] | None:
    """The resumed run's first new step (a line the killed run left behind is older)."""
    lines = metric_lines(run)
    return next((m for m in lines if m["step"] == step + 1 and m["time_unix"] > since_unix), None)


def bench_kills(data: str, work: Path, plan: Plan, reference: str, rng: random.Random) -> list:
    run, steps = work / "killed", plan.overhead_steps
    lost, restart_s = [], []
    proc = _start(data, run, steps, work / "fit-0.log")
    try:
        for kill in range(plan.kills):
            base = max((m["step"] for m in metric_lines(run)), default=0)
            target = min(steps - 2, base + rng.randint(CKPT_EVERY, 3 * CKPT_EVERY))
            _wait_for(
                lambda t=target: True if any(m["step"] >= t for m in metric_lines(run)) else None,
                CHILD_TIMEOUT_S,
                f"step {target}",
            )
            time.sleep(rng.uniform(0.0, 0.1))  # a random phase within the step
            killed_at_s = time.time()
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=CHILD_TIMEOUT_S)
            progress_at_kill = max(m["step"] for m in metric_lines(run))
            log = work / f"fit-{kill + 1}.log"
            proc = _start(data, run, steps, log)
            resumed = _wait_for(lambda lg=log: _resumed_step(lg), 60, "the resume line")
            first = _wait_for(
                lambda r=resumed, t=killed_at_s: _first_line_after(run, r, t), 60, "a new step"
            )
            lost.append(progress_at_kill - resumed)
            restart_s.append(round(first["time_unix"] - killed_at_s, 3))
        proc.wait(timeout=CHILD_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
    printed = subprocess.run(
        trainer_argv("fingerprint", str(run)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    ).stdout.strip()
    return [
        {
            "name": "lost_work_per_sigkill",
            "measured": max(lost),
            "unit": "steps (max over kills)",
            "reference": f"--ckpt-every {CKPT_EVERY}",
            "target": f"<= {CKPT_EVERY}",
            "ratio": round(max(lost) / CKPT_EVERY, 3),
            "pass": max(lost) <= CKPT_EVERY,
            "detail": {"per_kill": lost},
        },
        {
            "name": "sigkill_to_first_new_step",
            "measured": max(restart_s),
            "unit": "s (max)",
            "reference": "SIGKILL sent -> resumed run logs its first new step",
            "target": f"<= {RESTART_TARGET_S}",
            "ratio": round(max(restart_s) / RESTART_TARGET_S, 3),
            "pass": max(restart_s) <= RESTART_TARGET_S,
            "detail": {"per_kill_s": restart_s, "median_s": statistics.median(restart_s)},
        },
        {
            "name": "exact_after_kills",
            "measured": printed == reference,
            "unit": "fingerprint equal",
            "reference": f"uninterrupted run {reference[:16]}...",
            "target": "equal",
            "ratio": None,
            "pass": printed == reference,
            "detail": {"killed_run": printed},
        },
    ]


# ---------------------------------------------------------------- 4. RSS and throughput


def least_squares_slope(xs: list[float], ys: list[float]) -> float:
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var


def bench_rss(data: str, work: Path, plan: Plan) -> tuple[list[dict[str, Any]], float]:
    run = work / "rss"
    summary = fit(data, run, plan.rss_steps, "--ckpt-every", str(CKPT_EVERY))
    lines = metric_lines(run)
    warmup = min(RSS_WARMUP_STEPS, plan.rss_steps // 3)
    window = [m for m in lines if m["step"] > warmup]
    results = []
    for key in ("rss_bytes", "rss_anon_bytes"):
        steps = [float(m["step"]) for m in window]
        values = [float(m[key]) for m in window]
        slope = least_squares_slope(steps, values)
        head, tail = values[: len(values) // 10 or 1], values[-(len(values) // 10 or 1) :]
        growth = statistics.fmean(tail) - statistics.fmean(head)
        fraction = growth / statistics.median(values)
        results.append(
            {
                "name": f"{key.removesuffix('_bytes')}_growth",
                "measured": round(fraction, 5),
                "unit": f"fraction of median {key} (last 10% vs first 10% after step {warmup})",
                "reference": f"median {statistics.median(values) / 2**20:.1f} MiB, "
                f"peak {max(values) / 2**20:.1f} MiB",
                "target": f"<= {RSS_GROWTH_TARGET}",
                "ratio": round(fraction / RSS_GROWTH_TARGET, 3),
                "pass": fraction <= RSS_GROWTH_TARGET,
                "detail": {
                    "slope_bytes_per_step": round(slope, 2),
                    "growth_bytes": round(growth),
                    "steps": plan.rss_steps,
                    "warmup_steps": warmup,
                },
            }
        )
    return results, summary["samples_per_s"]


def bench_bf16(data: str, work: Path, plan: Plan, fp32_samples_per_s: float) -> dict[str, Any]:
    summary = fit(data, work / "bf16", plan.bf16_steps, "--bf16", "--ckpt-every", str(CKPT_EVERY))
    rate = summary["samples_per_s"]
    return {
        "name": "samples_per_s",
        "measured": {"fp32": fp32_samples_per_s, "bf16": rate},
        "unit": "samples/s (training loop, 1 thread)",
        "reference": "fp32",
        "target": "reported",
        "ratio": round(rate / fp32_samples_per_s, 3),
        "pass": None,
        "detail": {"bf16_steps": plan.bf16_steps},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--out", default=str(REPO / "reports" / "bench-trainer.json"))
    parser.add_argument("--seed", type=int, default=0, help="seed for the kill schedule")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    rng = random.Random(args.seed)
    # Start-up latency and run-vs-run timings scale with CPU contention; record it.
    load_at_start = os.getloadavg()[0]
    started_s = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
        work = Path(tmp)
        dataset = make_dataset(work, plan.samples)
        data = dataset["path"]
        overhead, reference = bench_overhead(data, work, plan)
        kills = bench_kills(data, work, plan, reference, rng)
        rss, fp32_rate = bench_rss(data, work, plan)
        throughput = bench_bf16(data, work, plan, fp32_rate)
    results = [overhead, *kills, *rss, throughput]
    report = {
        "benchmark": "trainer",
        "quick": args.quick,
        "seed": args.seed,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "wall_s": round(time.monotonic() - started_s, 1),
        "machine": {
            "loadavg_1m": {"start": load_at_start, "end": os.getloadavg()[0]},
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "dataset": {k: v for k, v in dataset.items() if k != "path"},
        "model": "default (--channels 16 --depth 3), batch 8, --threads 1, CPU",
        "results": results,
        "pass": all(r["pass"] is not False for r in results),
    }
    # bench_ddp.py writes its scaling figures into this file's "ddp" section: keep them.
    previous = read_report(Path(args.out))
    if SECTION in previous:
        report[SECTION] = previous[SECTION]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, report)
    for r in results:
        verdict = {True: "PASS", False: "FAIL", None: "info"}[r["pass"]]
        print(
            f"{verdict:4}  {r['name']:28} {json.dumps(r['measured']):>30}  target {r['target']}"
            f"  ratio {r['ratio']}  ({r['unit']})"
        )
    print(f"wrote {args.out} in {report['wall_s']} s")
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
