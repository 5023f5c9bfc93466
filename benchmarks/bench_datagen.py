"""Benchmark datagen against its targets (issue 3), side by side in one run.

    .venv/bin/python benchmarks/bench_datagen.py [--quick] [--dir DIR]

Writes reports/bench-datagen.json and prints, for each figure, the measured value, the
reference it is compared with, the ratio and pass/fail against the target:
1. seed settings (30,000 x 8x1x32x32, 2 workers): wall time end to end <= 5 s;
2. slow settings (30,000 x 16x3x64x64, 5.9 GB): wall <= 1.5 x writing as many bytes to the
   same disk with fsync, measured in the same run (before and after; their mean);
3. peak RSS of the whole process tree <= 1 GiB, and flat in N (3,000 vs 30,000);
4. checkpoint overhead (shard size 1000 vs one commit at the end, 1 worker, min of 5
   interleaved runs each) <= 3.5%, on the production (default) settings, 6,000 samples;
   the seed settings (30,000) are reported alongside, without a target;
5. SIGKILL of the process group -> the resumed run's first new committed shard <= 2 s plus
   one shard's generation time (measured in this process).
--quick divides every sample count by 10 (a smoke run; its figures are not the targets').
The machine's load average before and after is recorded: other jobs skew every figure.
Every dataset is deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil
from preflight_examples.datagen.config import GenConfig
from preflight_examples.datagen.plan import plan_shards
from preflight_examples.datagen.store import write_shard

from preflight.durable import atomic_write

REPO = Path(__file__).resolve().parent.parent
REPORT = REPO / "reports" / "bench-datagen.json"
SEED_SETTINGS = ("--frames", "8", "--size", "32", "--channels", "1")
SLOW_SETTINGS = ("--frames", "16", "--size", "64", "--channels", "3")
SAMPLE_INTERVAL_S = 0.1
RUN_TIMEOUT_S = 900.0
WRITE_CHUNK_BYTES = 8 << 20
CHECKPOINT_REPEATS = 5
POLL_S = 0.01
GIB = 1 << 30


@dataclass
class Figure:
    name: str
    measured: float
    unit: str
    reference: float | None
    reference_what: str
    ratio: float | None
    target: str
    passed: bool
    command: str
    cpu_s: float | None = None  # CPU seconds of the measured process tree, when known


class TreeSampler:
    """Peak summed RSS of a process and all its descendants, sampled every interval_s."""

    def __init__(self, pid: int, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.rss_bytes_max = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():  # ends when stop() is called
            try:
                root = psutil.Process(self.pid)
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            total = 0
            for proc in tree:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    continue
            self.rss_bytes_max = max(self.rss_bytes_max, total)
            self.samples += 1
            self._stop.wait(self.interval_s)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5.0)
        return self.rss_bytes_max


def datagen_args(out: Path, samples: int, settings: tuple[str, ...], *extra: str) -> list[str]:
    return ["generate", "--out", str(out), "--samples", str(samples), *settings, *extra]


LAST_CPU_S = [0.0]  # CPU seconds of the last run_datagen's process tree


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_datagen(args: list[str]) -> tuple[float, int]:
    """Run datagen to completion; return (wall seconds, peak tree RSS bytes)."""
    cpu_before_s = _children_cpu_s()
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "preflight_examples.datagen.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    sampler = TreeSampler(proc.pid)
    try:
        _, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    wall_s = time.perf_counter() - started
    LAST_CPU_S[0] = _children_cpu_s() - cpu_before_s
    rss = sampler.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"datagen {' '.join(args)} exited {proc.returncode}: {stderr[-2000:]}")
    return wall_s, rss


def write_with_fsync(path: Path, total_bytes: int) -> float:
    """Seconds to write total_bytes to path with ordinary buffered writes, then fsync."""
    chunk = os.urandom(WRITE_CHUNK_BYTES)
    started = time.perf_counter()
    with open(path, "wb") as handle:
        remaining = total_bytes
        while remaining > 0:  # bounded by total_bytes / chunk
            handle.write(chunk[: min(remaining, len(chunk))])
            remaining -= len(chunk)
        handle.flush()
        os.fsync(handle.fileno())
    wall_s = time.perf_counter() - started
    path.unlink()
    return wall_s


def figure(
    name: str,
    measured: float,
    unit: str,
    reference: float | None,
    reference_what: str,
    limit_ratio: float | None,
    limit_value: float | None,
    command: str,
    target: str,
) -> Figure:
    ratio = measured / reference if reference else None
    ok = True
    if limit_ratio is not None:
        ok = ratio is not None and ratio <= limit_ratio
    if limit_value is not None:
        ok = ok and measured <= limit_value
    return Figure(
        name,
        round(measured, 4),
        unit,
        reference and round(reference, 4),
        reference_what,
        ratio and round(ratio, 4),
        target,
        ok,
        command,
    )


def bench_seed_settings(base: Path, samples: int) -> Figure:
    args = datagen_args(base / "seed", samples, SEED_SETTINGS, "--workers", "2")
    wall_s, _ = run_datagen(args)
    cpu_s = LAST_CPU_S[0]
    shutil.rmtree(base / "seed")
    result = figure(
        "seed_settings_wall",
        wall_s,
        "s",
        5.0,
        "5 s budget",
        1.0,
        None,
        "datagen " + " ".join(args),
        "<= 5 s end to end",
    )
    result.cpu_s = round(cpu_s, 3)
    return result


def time_fingerprint(out: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "preflight_examples.datagen.cli", "fingerprint", str(out)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    if done.returncode != 0:
        raise RuntimeError(f"datagen fingerprint {out} exited {done.returncode}: {done.stderr}")
    return time.perf_counter() - started


def bench_slow_settings(base: Path, samples: int) -> tuple[list[Figure], int]:
    cfg = GenConfig(samples=samples)
    total_bytes = samples * cfg.sample_bytes
    reference_path = base / "fsync-reference.bin"
    before_s = write_with_fsync(reference_path, total_bytes)
    args = datagen_args(base / "slow", samples, SLOW_SETTINGS, "--workers", "2")
    wall_s, rss = run_datagen(args)
    cpu_s = LAST_CPU_S[0]
    fingerprint_s = time_fingerprint(base / "slow")
    shutil.rmtree(base / "slow")
    after_s = write_with_fsync(reference_path, total_bytes)
    reference_s = (before_s + after_s) / 2
    wall = figure(
        "slow_settings_wall",
        wall_s,
        "s",
        reference_s,
        f"buffered write + fsync of {total_bytes} bytes (before {before_s:.2f} s, after "
        f"{after_s:.2f} s)",
        1.5,
        None,
        "datagen " + " ".join(args),
        "<= 1.5 x the fsync write of the same bytes",
    )
    wall.cpu_s = round(cpu_s, 3)
    fingerprint = figure(
        "fingerprint_wall",
        fingerprint_s,
        "s",
        wall_s,
        "generating the same dataset (fingerprint re-reads and re-hashes every byte)",
        None,
        None,
        f"datagen fingerprint on the {samples}-sample slow-settings dataset",
        "informational",
    )
    return [wall, fingerprint], rss


def bench_memory(base: Path, samples: int, rss_at_samples: int) -> list[Figure]:
    small = max(samples // 10, 2000)  # at least two shards, so both workers run
    args = datagen_args(base / "mem", small, SLOW_SETTINGS, "--workers", "2")
    _, rss_small = run_datagen(args)
    shutil.rmtree(base / "mem")
    return [
        figure(
            "peak_tree_rss",
            rss_at_samples / GIB,
            "GiB",
            1.0,
            "1 GiB budget",
            1.0,
            None,
            f"slow settings, {samples} samples, 2 workers",
            "<= 1 GiB",
        ),
        figure(
            "peak_tree_rss_growth",
            rss_at_samples / GIB,
            "GiB",
            rss_small / GIB,
            f"peak at {small} samples",
            1.25,
            None,
            f"slow settings, {samples} vs {small} samples",
            "flat in N (ratio <= 1.25)",
        ),
    ]


def bench_checkpoint_overhead(
    base: Path, samples: int, settings: tuple[str, ...], label: str, target: bool
) -> Figure:
    """Shard size 1000 against one shard (one commit at the end), one worker each, in
    interleaved repeats (so load changes hit both alike); the minimum of each."""
    walls: dict[str, list[float]] = {"sharded": [], "single": []}
    for _ in range(CHECKPOINT_REPEATS):
        for kind, shard in (("sharded", "1000"), ("single", str(samples))):
            out = base / f"ckpt-{kind}"
            extra = ("--workers", "1", "--shard-size", shard)
            wall_s, _ = run_datagen(datagen_args(out, samples, settings, *extra))
            walls[kind].append(round(wall_s, 3))
            shutil.rmtree(out)
    sharded, single = min(walls["sharded"]), min(walls["single"])
    return figure(
        f"checkpoint_overhead_{label}",
        sharded,
        "s",
        single,
        f"one commit at the end (min of {CHECKPOINT_REPEATS}; all: {walls})",
        1.035 if target else None,
        None,
        f"{label} settings, {samples} samples, 1 worker, --shard-size 1000 vs {samples}",
        "<= 3.5% slower than one commit" if target else "informational",
    )


def one_shard_s(base: Path, settings: tuple[str, ...]) -> float:
    """Generation time of one 1000-sample shard in this process (one worker's view)."""
    values = dict(zip(settings[::2], settings[1::2], strict=True))
    cfg = GenConfig(
        samples=1000,
        frames=int(values["--frames"]),
        size=int(values["--size"]),
        channels=int(values["--channels"]),
    )
    out = base / "one-shard"
    out.mkdir()
    started = time.perf_counter()
    write_shard(out, cfg, plan_shards(cfg.samples, cfg.shard_size)[0])
    wall_s = time.perf_counter() - started
    shutil.rmtree(out)
    return wall_s


def _committed(out: Path) -> set[str]:
    return {p.parent.name for p in (out / "shards").glob("*/manifest.json")}


def _done(out: Path) -> int:
    try:
        return int(json.loads((out / "PROGRESS.json").read_text())["done"])
    except (OSError, ValueError, KeyError):
        return 0


def bench_kill_resume(base: Path, samples: int, settings: tuple[str, ...], label: str) -> Figure:
    out = base / f"kill-{label}"
    args = datagen_args(out, samples, settings, "--workers", "2")
    command = [sys.executable, "-m", "preflight_examples.datagen.cli", *args]
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while _done(out) < samples * 0.4 and proc.poll() is None:  # bounded by the deadline
        if time.monotonic() > deadline:
            break
        time.sleep(POLL_S)
    os.killpg(proc.pid, signal.SIGKILL)
    killed_at = time.perf_counter()
    proc.wait(10)
    before = _committed(out)
    resumed = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    first_new_s = float("inf")
    while resumed.poll() is None and time.monotonic() < deadline:
        if _committed(out) - before:
            first_new_s = time.perf_counter() - killed_at
            break
        time.sleep(POLL_S)
    resumed.wait(RUN_TIMEOUT_S)
    shutil.rmtree(out)
    shard_s = one_shard_s(base, settings)
    budget_s = 2.0 + shard_s
    return figure(
        f"kill_to_first_new_shard_{label}",
        first_new_s,
        "s",
        budget_s,
        f"2 s + one shard ({shard_s:.3f} s)",
        1.0,
        None,
        f"{label} settings, {samples} samples, SIGKILL at {len(before)} committed shards",
        "<= 2 s + one shard's generation time",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sample counts / 10 (smoke run)")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--report", type=Path, default=REPORT)
    args = parser.parse_args()
    samples = 3000 if args.quick else 30000
    base = Path(tempfile.mkdtemp(prefix="bench-datagen-", dir=args.dir))
    load_before = os.getloadavg()
    figures: list[Figure] = []
    try:
        figures.append(bench_seed_settings(base, samples))
        slow, rss = bench_slow_settings(base, samples)
        figures += slow
        figures += bench_memory(base, samples, rss)
        # The production (default) settings carry the target; the seed settings' shards are
        # so cheap (~30 ms) that fixed per-shard costs show, so they are reported too.
        figures.append(
            bench_checkpoint_overhead(base, max(samples // 5, 3000), SLOW_SETTINGS, "slow", True)
        )
        figures.append(bench_checkpoint_overhead(base, samples, SEED_SETTINGS, "seed", False))
        figures.append(bench_kill_resume(base, samples, SEED_SETTINGS, "seed"))
        figures.append(bench_kill_resume(base, max(samples // 5, 3000), SLOW_SETTINGS, "slow"))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    report = {
        "benchmark": "datagen",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "cpus": os.cpu_count(),
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg(),
        "figures": [asdict(f) for f in figures],
        "passed": all(f.passed for f in figures),
    }
    args.report.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.report, report)
    for f in figures:
        ratio = f"{f.ratio:.3f}" if f.ratio is not None else "-"
        cpu = f" (tree CPU {f.cpu_s} s)" if f.cpu_s is not None else ""
        print(
            f"{'PASS' if f.passed else 'FAIL'} {f.name}: {f.measured} {f.unit}{cpu} vs "
            f"{f.reference} ({f.reference_what}); ratio {ratio}; target {f.target}"
        )
    print(f"report: {args.report}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
