"""Benchmark the power-loss layer's overhead (issue 21: goal under 3x the job's wall time).

    .venv/bin/python benchmarks/bench_powerloss.py [--workload datagen] [--reps 3]

Runs the workload (pyproject.toml spec, small tier) in turn plain, under the trace mode's
strace (preflight.check.kinds.powerloss.trace: every durability and write call logged with its
bytes) and on the FUSE layer (preflight.check.kinds.powerloss.lazyfs: un-fsynced data in the
layer's page
cache), each rep from a fresh work dir, and times the job (its own wall time, as the check
sees it); then times the replay of each trace through the durable-state model (parse + model
+ crash state, what every experiment pays after its cut) and each FUSE mount + clean
unmount. The FUSE leg is skipped, with the reason in the report, where FUSE can't mount.
A bulk probe (``--bulk-mib``: 1 MiB writes, an fsync every 8 MiB) then shows each layer's
cost per byte, which datagen's small tier (about 1 MiB written) can't show.
Figures, written to reports/bench-powerloss.json and printed: per variant n, median_s,
min_s, max_s; the ratio of each variant's median to plain's (``ratio``) and with each
experiment's fixed cost added, the trace's replay or the mount (``ratio_with_setup``);
trace bytes. Pass: every datagen ratio < 3.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from preflight.check.kinds.powerloss import lazymount
from preflight.check.kinds.powerloss import trace as trace
from preflight.check.kinds.powerloss.durable_state import FsModel, crash_state, replay
from preflight.check.kinds.powerloss.strace_ops import parse_lines
from preflight.durable import atomic_write
from preflight.workload import Run, WorkloadSpec, load_spec

REPO = Path(__file__).resolve().parent.parent
REPORT = REPO / "reports" / "bench-powerloss.json"
TARGET_RATIO = 3.0
RUN_TIMEOUT_S = 300.0
REPS_MAX = 20
BULK_MIB_MAX = 1024
BULK_RATIOS = ("traced", "fuse")


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


def fuse_run(
    spec: WorkloadSpec, params: dict[str, int], root: Path, rep: int
) -> tuple[float, float]:
    """(the job's seconds on a fresh LazyFS mount, mount + clean unmount seconds)."""
    started = time.monotonic()
    with lazymount.LazyMount(root / f"fuse-back-{rep}", root / f"fuse-mnt-{rep}") as mount:
        job = timed_run(spec, params, mount.mountpoint / "work", root / "l")
    return job, time.monotonic() - started - job


def ratio(variant: list[float], plain: list[float]) -> float:
    return round(statistics.median(variant) / statistics.median(plain), 3)


# An I/O-bound probe: what each layer costs per byte, where datagen's small tier (about a
# megabyte written) can't tell. 1 MiB writes, an fsync every 8 MiB, then temp + rename + fsync
# of the directory, as a checkpointing job does.
BULK_WRITER = """
import os, sys
d, mib = sys.argv[1], int(sys.argv[2])
os.makedirs(d, exist_ok=True)
block = os.urandom(1 << 20)
with open(os.path.join(d, "data.tmp"), "wb", buffering=0) as f:
    for i in range(mib):
        f.write(block)
        if i % 8 == 7:
            os.fsync(f.fileno())
    os.fsync(f.fileno())
os.replace(os.path.join(d, "data.tmp"), os.path.join(d, "data.bin"))
fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
os.fsync(fd)
os.close(fd)
"""


def bulk_s(prefix: tuple[str, ...], workdir: Path, mib: int) -> float:
    argv = [*prefix, sys.executable, "-c", BULK_WRITER, str(workdir), str(mib)]
    started = time.monotonic()
    subprocess.run(argv, check=True, timeout=RUN_TIMEOUT_S, capture_output=True)
    return time.monotonic() - started


def datagen_rep(spec: WorkloadSpec, params: dict[str, int], root: Path, rep: int) -> dict:
    """One rep of the datagen legs: plain and traced (+ the trace's size and replay)."""
    out: dict[str, float] = {"plain": timed_run(spec, params, root / f"plain-{rep}", root / "l")}
    trace_path = root / f"traced-{rep}.strace"
    launcher = (*trace.strace_argv(trace_path, None), *spec.launcher)
    workdir = root / f"traced-{rep}"
    out["traced"] = timed_run(replace(spec, launcher=launcher), params, workdir, root / "l")
    out["trace_bytes"] = trace_path.stat().st_size
    out["replay"] = replay_s(workdir, trace_path, spec.spec_dir)
    return out


def bulk_rep(root: Path, rep: int, mib: int, fuse: bool) -> dict[str, float]:
    """One rep of the bulk probe: plain, traced, and on a LazyFS mount when ``fuse``."""
    out = {"plain": bulk_s((), root / f"bulk-plain-{rep}", mib)}
    trace_path = root / f"bulk-{rep}.strace"
    workdir = root / f"bulk-tr-{rep}"
    out["traced"] = bulk_s(trace.strace_argv(trace_path, None), workdir, mib)
    out["trace_bytes"] = trace_path.stat().st_size
    out["replay"] = replay_s(workdir, trace_path, root)  # the trace mode's cost per byte
    trace_path.unlink()
    if fuse:
        with lazymount.LazyMount(root / f"bulk-back-{rep}", root / f"bulk-mnt-{rep}") as mount:
            out["fuse"] = bulk_s((), mount.mountpoint / "work", mib)
    return out


def measure(spec: WorkloadSpec, params: dict[str, int], reps: int, bulk_mib: int) -> dict:
    """Every leg, reps interleaved so that a noisy host hits each leg alike."""
    fuse_skip = lazymount.unavailable()
    legs: dict[str, list[float]] = {}
    root = Path(tempfile.mkdtemp(prefix="bench-powerloss-"))
    try:
        for rep in range(reps):
            if not fuse_skip:
                try:
                    job_s, mount_s = fuse_run(spec, params, root, rep)
                    legs.setdefault("fuse", []).append(job_s)
                    legs.setdefault("fuse_mount", []).append(mount_s)
                except OSError as exc:  # the mount itself failed: that is the finding
                    fuse_skip = str(exc)
            for key, value in datagen_rep(spec, params, root, rep).items():
                legs.setdefault(key, []).append(value)
            if bulk_mib:
                for key, value in bulk_rep(root, rep, bulk_mib, not fuse_skip).items():
                    legs.setdefault(f"bulk_{key}", []).append(value)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if fuse_skip:
        for key in ("fuse", "fuse_mount", "bulk_fuse"):
            legs.pop(key, None)
    return {"legs": legs, "fuse_skip": fuse_skip}


def report(args: argparse.Namespace, spec: WorkloadSpec, params: dict, got: dict) -> dict:
    legs = got["legs"]
    ratios = {"traced": ratio(legs["traced"], legs["plain"])}
    per_experiment = {"traced": ratio(added(legs["traced"], legs["replay"]), legs["plain"])}
    if "fuse" in legs:
        ratios["fuse"] = ratio(legs["fuse"], legs["plain"])
        per_experiment["fuse"] = ratio(added(legs["fuse"], legs["fuse_mount"]), legs["plain"])
    bulk: dict = {k[5:]: summary(v) for k, v in legs.items() if k.startswith("bulk_")}
    bulk.pop("trace_bytes", None)
    if bulk:
        bulk["mib"] = args.bulk_mib
        bulk["trace_bytes"] = int(statistics.median(legs["bulk_trace_bytes"]))
        bulk["ratio"] = {
            k: ratio(legs[f"bulk_{k}"], legs["bulk_plain"])
            for k in BULK_RATIOS
            if f"bulk_{k}" in legs
        }
        bulk["ratio_with_setup"] = {
            "traced": ratio(added(legs["bulk_traced"], legs["bulk_replay"]), legs["bulk_plain"])
        }
    return {
        "bench": "powerloss",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "workload": args.workload,
        "tier": "small",
        "modes": "plain, trace (strace), "
        "fuse (preflight.check.kinds.powerloss.lazyfs over mfusepy)",
        "env": {"OMP_NUM_THREADS": spec.env.get("OMP_NUM_THREADS", "")},
        "params": params,
        "plain": summary(legs["plain"]),
        "traced": summary(legs["traced"]),
        "fuse": summary(legs["fuse"]) if "fuse" in legs else {"skipped": got["fuse_skip"]},
        "ratio": ratios,
        "ratio_with_setup": per_experiment,
        "target_ratio": TARGET_RATIO,
        "trace_bytes_median": int(statistics.median(legs["trace_bytes"])),
        "replay": summary(legs["replay"]),
        "fuse_mount": summary(legs["fuse_mount"]) if "fuse" in legs else None,
        "bulk": bulk or None,
        "passed": all(r < TARGET_RATIO for r in ratios.values()),
    }


def added(a: list[float], b: list[float]) -> list[float]:
    return [x + y for x, y in zip(a, b, strict=True)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="datagen")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--bulk-mib", type=int, default=16, help="0: no bulk probe")
    args = parser.parse_args(argv)
    if not 1 <= args.reps <= REPS_MAX:
        parser.error(f"--reps must be in [1, {REPS_MAX}]")
    if not 0 <= args.bulk_mib <= BULK_MIB_MAX:
        parser.error(f"--bulk-mib must be in [0, {BULK_MIB_MAX}]")
    if trace.unavailable():
        print(f"bench_powerloss: {trace.unavailable()}", file=sys.stderr)
        return 2
    spec = load_spec(args.workload, str(REPO / "pyproject.toml"))
    params = dict(spec.params("small"))
    result = report(args, spec, params, measure(spec, params, args.reps, args.bulk_mib))
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(REPORT, (json.dumps(result, indent=2) + "\n").encode())
    print(json.dumps(result, indent=2))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
