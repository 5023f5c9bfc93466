"""Data-parallel scaling: trainer samples/s with 1 and 2 processes (torch.distributed, gloo on
CPU; nccl + bf16 when CUDA is present), and the scaling efficiency. Written as the "ddp"
section of reports/bench-trainer.json (bench_trainer.py keeps the section when it rewrites
the file, and this script keeps the rest).

    .venv/bin/python benchmarks/bench_ddp.py [--quick] [--out reports/bench-trainer.json]

Weak scaling: each rank keeps --batch-size, so 2 ranks train on twice the samples per step.
samples/s is global (every rank's samples) over the training loop's own time (start-up and
torchrun's rendezvous excluded); efficiency = rate(2) / (2 * rate(1)). On a machine whose
cores are shared the honest figure can be far below 1: it is reported, not judged.
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

from preflight.durable import atomic_write

REPO = Path(__file__).resolve().parents[1]
CHILD_TIMEOUT_S = 900.0
STEPS_FULL, STEPS_QUICK = 200, 40
SAMPLES = 256
MODEL = ("--channels", "16", "--depth", "3", "--batch-size", "8", "--threads", "1")


SECTION = "ddp"


def read_report(path: Path) -> dict[str, Any]:
    """The benchmark file's JSON object, or {} when it is missing or not an object."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return report if isinstance(report, dict) else {}


def write_section(path: Path, key: str, section: dict[str, Any]) -> None:
    """Replace one top-level section of a shared benchmark file, keeping the others."""
    report = read_report(path)
    report[key] = section
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, report)


def child_env() -> dict[str, str]:
    drop = ("PREFLIGHT_FAULTS", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["OMP_NUM_THREADS"] = "1"
    return env


def cpu_times() -> list[int]:
    """The aggregate CPU line of /proc/stat (jiffies); [] where there is none."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            return [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return []


def steal_fraction(before: list[int], after: list[int]) -> float | None:
    """Share of CPU time the hypervisor gave to other guests between two readings (pure):
    on a shared host this, not the code, can halve a two-process rate."""
    if len(before) < 8 or len(after) < 8:
        return None
    delta = [b - a for a, b in zip(before, after, strict=False)]
    total = sum(delta[:8])
    return round(delta[7] / total, 3) if total > 0 else None


def fit_argv(data: Path, run: Path, steps: int, nproc: int, *extra: str) -> list[str]:
    argv = [sys.executable, "-m", "preflight_examples.trainer.cli", "fit",
            "--data", str(data), "--out", str(run)]
    argv += ["--steps", str(steps), "--ckpt-every", "0", "--nproc", str(nproc)]
    return argv + [*MODEL, *extra]


def independent_pair(data: Path, work: Path, steps: int, device: str) -> float:
    """Global samples/s of two single-process fits running at the same time, no DDP: what
    this machine gives two copies of the workload (cores, memory bandwidth, the host's
    other tenants). DDP can at best reach this."""
    procs = [
        subprocess.Popen(
            fit_argv(data, work / f"{device}-pair{i}", steps, 1, "--device", device),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        for i in range(2)
    ]
    rates = []
    for proc in procs:
        out, err = proc.communicate(timeout=CHILD_TIMEOUT_S)
        if proc.returncode != 0:
            raise RuntimeError(f"independent fit exited {proc.returncode}: {err[-2000:]}")
        rates.append(json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1]))
    return round(sum(r["samples_per_s"] for r in rates), 2)


def fit(data: Path, run: Path, steps: int, nproc: int, *extra: str) -> dict[str, Any]:
    argv = fit_argv(data, run, steps, nproc, *extra)
    started_s = time.monotonic()
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False, env=child_env()
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"trainer fit --nproc {nproc} exited {done.returncode}: {done.stderr[-2000:]}"
        )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    summary = json.loads(lines[-1])
    summary["wall_s"] = round(time.monotonic() - started_s, 2)
    return summary


def scaling(data: Path, work: Path, steps: int, device: str, *extra: str) -> dict[str, Any]:
    steal: dict[str, float | None] = {}
    mark = cpu_times()
    one = fit(data, work / f"{device}-1", steps, 1, "--device", device, *extra)
    steal["1proc"], mark = steal_fraction(mark, cpu_times()), cpu_times()
    two = fit(data, work / f"{device}-2", steps, 2, "--device", device, *extra)
    steal["2proc"], mark = steal_fraction(mark, cpu_times()), cpu_times()
    pair = independent_pair(data, work, steps, device) if device == "cpu" else None
    steal["2_independent"] = steal_fraction(mark, cpu_times()) if pair is not None else None
    rate1, rate2 = one["samples_per_s"], two["samples_per_s"]
    efficiency = round(rate2 / (2 * rate1), 3) if rate1 > 0 else None
    measured = {"samples_per_s_1proc": rate1, "samples_per_s_2proc": rate2}
    if pair is not None:
        measured["samples_per_s_2_independent"] = pair
    return {
        "name": f"ddp_scaling_{device}" + ("_bf16" if extra else ""),
        "measured": measured,
        # 2 DDP ranks against 2 independent copies side by side: DDP's own cost on this box.
        "ddp_vs_independent": round(rate2 / pair, 3) if pair else None,
        "machine_parallel_capacity": round(pair / rate1, 3) if pair and rate1 > 0 else None,
        "unit": "samples/s (global, training loop)",
        "reference": "1 process",
        "target": "reported",
        "ratio": efficiency,
        "scaling_efficiency": efficiency,
        "pass": None,
        "detail": {
            "steps": steps,
            "backend": "nccl" if device == "cuda" else "gloo",
            "cpu_steal_fraction": steal,
            "wall_s": {"1proc": one["wall_s"], "2proc": two["wall_s"]},
            "train_s": {"1proc": one["train_s"], "2proc": two["train_s"]},
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--out", default=str(REPO / "reports" / "bench-trainer.json"))
    args = parser.parse_args()
    steps = STEPS_QUICK if args.quick else STEPS_FULL
    load_at_start = os.getloadavg()[0]
    started_s = time.monotonic()
    import torch  # only to learn whether a GPU is here
    from preflight_examples.trainer.synthetic import write_dataset

    with tempfile.TemporaryDirectory(prefix="bench-ddp-") as tmp:
        work = Path(tmp)
        data = work / "data"
        write_dataset(
            data, samples=SAMPLES, frames=16, channels=3, size=64, classes=4, shard_size=128
        )
        results = [scaling(data, work, steps, "cpu")]
        if torch.cuda.is_available() and torch.cuda.device_count() >= 2:
            results.append(scaling(data, work, steps, "cuda", "--bf16"))
    report = {
        "benchmark": "ddp",
        "quick": args.quick,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "wall_s": round(time.monotonic() - started_s, 1),
        "machine": {
            "loadavg_1m": {"start": load_at_start, "end": os.getloadavg()[0]},
            "cpus": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)),
            "cuda_devices": torch.cuda.device_count() if torch.cuda.is_available() else 0,
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "dataset": {"samples": SAMPLES, "frames": 16, "channels": 3, "size": 64},
        "model": " ".join(MODEL) + ", per rank",
        "results": results,
        "pass": True,
    }
    write_section(Path(args.out), SECTION, report)
    for r in results:
        print(
            f"info  {r['name']:22} {json.dumps(r['measured'])}  efficiency {r['ratio']}"
            f"  ddp/independent {r['ddp_vs_independent']}"
        )
    print(f"wrote section {SECTION!r} of {args.out} in {report['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
