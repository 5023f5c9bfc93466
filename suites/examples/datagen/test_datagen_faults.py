"""Kills, SIGTERM, corruption and failed shards: every path ends in the reference dataset."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from suites.examples.datagen.conftest import (
    SMALL,
    SMALL_SHARD,
    clean_env,
    datagen_cmd,
    fingerprint,
    generate,
)

WAIT_S_MAX = 30.0
SEED = 20240611  # replay: the random kill delays below derive from this seed


def _resume_matches(
    out: Path, reference: tuple[Path, str], workers: str = "1"
) -> subprocess.CompletedProcess:
    resumed = generate(out, *SMALL_SHARD, "--workers", workers)
    assert resumed.returncode == 0, resumed.stderr
    assert fingerprint(out) == reference[1]
    return resumed


# One pattern of crashes, each resumed by the next run; every crash must really happen.
# (fault, workers): parent-side points need only one worker.
CRASH_SEQUENCE = (
    ("datagen.after_shard_commit:kill@2", "1"),  # a worker dies after committing a shard
    ("datagen.before_ledger_record:kill@1", "1"),  # parent: shard committed, not recorded
    ("datagen.after_videos_write:enospc@1", "1"),  # disk full in a worker, mid-shard
    ("datagen.after_videos_write:kill@1", "2"),  # a worker dies mid-shard, one renders on
    ("datagen.after_dataset_json:kill@1", "1"),  # parent: finalize half done
)


@pytest.mark.long
def test_crashes_at_fault_points_then_resume_give_the_reference(
    tmp_path: Path, reference: tuple[Path, str]
) -> None:
    out = tmp_path / "d"
    for fault, workers in CRASH_SEQUENCE:
        crashed = generate(out, *SMALL_SHARD, "--workers", workers, faults=fault)
        assert crashed.returncode != 0, f"the armed fault {fault} never fired"
    assert not (out / "manifest.json").exists()
    _resume_matches(out, reference)


def _children(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + WAIT_S_MAX
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def _start_slow_run(out: Path, workers: str) -> subprocess.Popen:
    """A run whose workers each pause in their first shard, so it can be interrupted."""
    env = clean_env({"PREFLIGHT_FAULTS": "datagen.before_shard_write:sleep=0.6"})
    return subprocess.Popen(
        datagen_cmd("generate", "--out", str(out), *SMALL, *SMALL_SHARD, "--workers", workers),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.long  # drives real jobs for seconds: make test-long (CI runs it)
def test_sigkill_at_a_random_moment_leaves_no_orphans_and_resumes(
    tmp_path: Path, reference: tuple[Path, str]
) -> None:
    out = tmp_path / "d"
    delay_s = random.Random(SEED).uniform(0.0, 0.6)
    run = _start_slow_run(out, "2")
    try:
        _wait_for(out / "PROGRESS.json")
        time.sleep(delay_s)
        workers = _children(run.pid)
        run.send_signal(signal.SIGKILL)
        run.wait(WAIT_S_MAX)
    finally:
        if run.poll() is None:
            run.kill()
    _, alive = psutil.wait_procs(workers, timeout=5.0)
    assert not alive, f"orphaned workers after SIGKILL (delay {delay_s:.3f} s): {alive}"
    _resume_matches(out, reference, workers="2")


@pytest.mark.long  # drives real jobs for seconds: make test-long (CI runs it)
def test_sigterm_stops_cleanly_with_exit_75_then_resumes(
    tmp_path: Path, reference: tuple[Path, str]
) -> None:
    out = tmp_path / "d"
    run = _start_slow_run(out, "1")
    try:
        _wait_for(out / "PROGRESS.json")
        run.send_signal(signal.SIGTERM)
        _, stderr = run.communicate(timeout=WAIT_S_MAX)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 75, stderr
    progress = json.loads((out / "PROGRESS.json").read_text())
    assert progress["state"] == "stopped" and progress["done"] < progress["total"]
    assert "SIGTERM" in stderr and not (out / "manifest.json").exists()
    _resume_matches(out, reference)


def _corrupt_many(out: Path) -> list[str]:
    """Harness-style damage to five shards; returns the names the repair must mention."""
    flip = out / "shards/00002/videos.npy"
    data = bytearray(flip.read_bytes())
    data[-100] ^= 0x04
    flip.write_bytes(bytes(data))
    truncated = out / "shards/00005/labels.npy"
    truncated.write_bytes(truncated.read_bytes()[:40])
    (out / "shards/00007/videos.npy").unlink()
    (out / "shards/00001/manifest.json").write_text('{"format": 1, "files": [')
    shutil.move(out / "shards/00003", out / "swap")
    shutil.move(out / "shards/00004", out / "shards/00003")
    shutil.move(out / "swap", out / "shards/00004")
    return [
        "shards/00002/videos.npy",
        "shards/00005/labels.npy",
        "shards/00007/videos.npy",
        "shards/00001/manifest.json",
        "shards/00003/manifest.json",
        "shards/00004/manifest.json",
    ]


def test_corrupted_shards_are_detected_and_regenerated(
    tmp_path: Path, reference: tuple[Path, str]
) -> None:
    out = tmp_path / "d"
    shutil.copytree(reference[0], out)
    named = _corrupt_many(out)
    repaired = _resume_matches(out, reference)
    for name in named:
        assert name in repaired.stderr, f"regeneration of {name} was not logged"
    assert repaired.stderr.count("regenerating shard") == len(named)


@pytest.mark.long  # drives real jobs for seconds: make test-long (CI runs it)
def test_failed_shards_are_recorded_and_retried_alone(
    tmp_path: Path, reference: tuple[Path, str]
) -> None:
    out = tmp_path / "d"
    fault = "datagen.before_shard_write:raise@3"
    failed = generate(out, *SMALL_SHARD, "--workers", "1", faults=fault)
    assert failed.returncode == 1 and "shard 2" in failed.stderr
    assert json.loads((out / "PROGRESS.json").read_text())["state"] == "failed"
    others = {p: p.stat().st_mtime_ns for p in out.glob("shards/*/manifest.json")}
    assert len(others) == 9
    retried = generate(out, *SMALL_SHARD, "--workers", "1", "--retry-errors")
    assert retried.returncode == 0, retried.stderr
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in others.items())
    assert fingerprint(out) == reference[1]
