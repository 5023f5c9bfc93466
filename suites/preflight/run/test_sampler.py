"""Sampler: whole-tree figures at a fixed interval, bounded memory, bounded stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from preflight.run.sampler import Sample, Sampler, TreeReader, descendants, sample_tree

WAIT_S = 30.0

TREE_JOB = """
import os, subprocess, sys, threading, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
held = bytearray(b"\\x01") * (32 << 20)
with open(sys.argv[1], "wb") as out:
    out.write(b"x" * (1 << 20))
files = [open(os.devnull) for _ in range(5)]
end = time.process_time() + 0.2
while time.process_time() < end:
    pass
for _ in range(3):
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
print("ready", flush=True)
time.sleep(60)
"""


def _first(sampler: Sampler, predicate: Callable[[Sample], bool]) -> Sample:
    """The first sample matching `predicate`, waiting (bounded) for the sampler to take it."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        for sample in sampler.samples:
            if predicate(sample):
                return sample
        time.sleep(0.01)
    raise AssertionError(f"no matching sample within {WAIT_S} s: {sampler.samples[-3:]}")


def test_samples_sum_over_the_whole_tree(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", TREE_JOB, str(tmp_path / "out.bin")],
        stdout=subprocess.PIPE, start_new_session=True,
    )
    sampler = Sampler(proc.pid, 0.01, progress_fn=lambda: 42).start()
    try:
        first = sampler.samples[0]
        late = _first(sampler, lambda s: s.n_procs == 2 and s.threads >= 5)
        assert late.uss_bytes - first.uss_bytes > 24 << 20  # the 32 MB held
        assert late.rss_bytes >= late.uss_bytes > 0
        assert late.write_bytes >= 1 << 20
        assert late.read_bytes > 0
        assert late.cpu_s >= 0.15  # the 0.2 s burned
        assert late.open_files >= first.open_files + 5
        assert late.progress_done == 42
        assert late.t_s > first.t_s >= 0
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(WAIT_S)
        sampler.stop()


def test_sampling_ends_when_the_job_exits_and_stop_is_bounded() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    sampler = Sampler(proc.pid, 0.01).start()
    proc.wait(WAIT_S)
    sampler._thread.join(WAIT_S)  # the loop ends by itself once the root is gone
    assert not sampler._thread.is_alive()
    assert sampler.samples and sampler.error is None
    sampler.stop()
    sampler.stop()  # idempotent


def test_long_runs_are_decimated_not_truncated() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    t0_s = time.monotonic()
    sampler = Sampler(proc.pid, 0.002, samples_max=8, t0_s=t0_s).start()
    first_by_s = time.monotonic() - t0_s  # start() took the first sample before returning
    try:
        deadline = time.monotonic() + WAIT_S
        while sampler.interval_s < 0.008 and time.monotonic() < deadline:
            time.sleep(0.01)
        samples = sampler.samples
        assert sampler.interval_s >= 0.008  # doubled at least twice
        assert len(samples) < 8
        assert samples[0].t_s <= first_by_s  # the start of the run is still there
    finally:
        proc.kill()
        proc.wait(WAIT_S)
        sampler.stop()


def test_sample_tree_of_a_gone_process_is_none() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    root = psutil.Process(proc.pid)
    proc.wait(WAIT_S)
    assert sample_tree(root, 0.0, None) is None
    own = sample_tree(psutil.Process(os.getpid()), 1.5, 7)
    assert own is not None and own.progress_done == 7 and own.t_s == 1.5
    assert own.to_json()["n_procs"] == own.n_procs >= 1


def test_tree_walk_matches_psutil_and_falls_back_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", TREE_JOB, str(tmp_path / "out.bin")],
        stdout=subprocess.PIPE, start_new_session=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        root = psutil.Process(proc.pid)
        expected = sorted(p.pid for p in root.children(recursive=True))
        assert sorted(descendants(proc.pid) or []) == expected
        fast = sample_tree(TreeReader(root), 0.0, None)
        monkeypatch.setattr("preflight.run.sampler.descendants", lambda pid: None)
        slow = sample_tree(TreeReader(root), 0.0, None)
        assert fast is not None and slow is not None
        assert fast.n_procs == slow.n_procs == 2 and fast.threads == slow.threads
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(WAIT_S)
