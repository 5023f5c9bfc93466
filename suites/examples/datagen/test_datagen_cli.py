"""The command line contract: determinism, exit codes, messages that name things."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from preflight.durable import VerifyError
from suites.examples.datagen.conftest import (
    SMALL,
    SMALL_SHARD,
    clean_env,
    cli,
    datagen_cmd,
    fingerprint,
    generate,
    run_datagen,
)

WAIT_S_MAX = 30.0


def _all_samples(out: Path) -> tuple[np.ndarray, np.ndarray]:
    info = json.loads((out / "dataset.json").read_text())
    videos = [np.load(out / s["videos"], mmap_mode="r") for s in info["shards"]]
    labels = [np.load(out / s["labels"]) for s in info["shards"]]
    return np.concatenate(videos), np.concatenate(labels)


@pytest.mark.long  # drives real jobs for seconds: make test-long (CI runs it)
@pytest.mark.parametrize("workers,shard_size", [("2", "7"), ("3", "50")])
def test_same_dataset_for_any_workers_and_shard_size(
    tmp_path: Path, reference: tuple[Path, str], workers: str, shard_size: str
) -> None:
    ref_dir, ref_fingerprint = reference
    done = generate(tmp_path / "d", "--workers", workers, "--shard-size", shard_size)
    assert done.returncode == 0, done.stderr
    assert fingerprint(tmp_path / "d") == ref_fingerprint
    videos, labels = _all_samples(tmp_path / "d")
    ref_videos, ref_labels = _all_samples(ref_dir)
    assert np.array_equal(videos, ref_videos) and np.array_equal(labels, ref_labels)
    assert videos.shape == (120, 6, 1, 12, 12) and np.bincount(labels).tolist() == [30] * 4


def test_verify_status_and_fingerprint_commands(reference: tuple[Path, str]) -> None:
    ref_dir, ref_fingerprint = reference
    verified = run_datagen("verify", str(ref_dir))  # once through the real entry point
    assert verified.returncode == 0, verified.stderr
    assert "120 samples" in verified.stdout and "[30, 30, 30, 30]" in verified.stdout
    code, printed, _ = cli("fingerprint", str(ref_dir))
    assert code == 0 and printed == ref_fingerprint + "\n"
    code, status, _ = cli("status", str(ref_dir))
    progress = json.loads(status)
    assert code == 0
    assert (progress["done"], progress["total"], progress["state"]) == (120, 120, "done")
    assert progress["unit"] == "samples" and "rate_per_s" in progress and "updated_at" in progress


@pytest.mark.parametrize(
    "tamper,named",
    [
        ("flip", "shards/00003/videos.npy"),
        ("labels", "shards/00004/labels.npy"),
        ("delete", "shards/00005"),
        ("dataset", "dataset.json"),
    ],
)
def test_verify_fails_on_tampering_naming_the_file(
    tmp_path: Path, reference: tuple[Path, str], tamper: str, named: str
) -> None:
    out = tmp_path / "d"
    shutil.copytree(reference[0], out)
    if tamper == "flip":
        path = out / named
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x10
        path.write_bytes(bytes(data))
    elif tamper == "labels":
        labels = np.load(out / named)
        labels[0] = (labels[0] + 1) % 4
        np.save(out / named, labels)
    elif tamper == "delete":
        shutil.rmtree(out / named)
    else:
        (out / named).write_text((out / named).read_text().replace('"seed": 42', '"seed": 43'))
    code, stdout, stderr = cli("verify", str(out))
    assert code == 4 and named in stderr and stdout == ""
    with pytest.raises(VerifyError, match=named):
        fingerprint(out)


@pytest.mark.parametrize(
    "args,message",
    [
        (("--samples", "0"), "--samples"),
        (("--samples", "3", "--classes", "4"), "--classes"),
        (("--samples", "10", "--size", "-1"), "--size"),
        (("--samples", "10", "--frames", "0"), "--frames"),
        (("--samples", "10", "--workers", "0"), "--workers"),
        (("--samples", "10", "--channels", "2"), "--channels"),
        (
            ("--samples", "100000000", "--frames", "1024", "--size", "8", "--shard-size", "9999"),
            "not enough free disk",
        ),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path: Path, args: tuple, message: str) -> None:
    out = tmp_path / "new" / "d"
    code, _, stderr = cli("generate", "--out", str(out), *args)
    assert code == 2 and message in stderr
    assert not (tmp_path / "new").exists()


def test_output_under_a_file_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    code, _, stderr = cli("generate", "--out", str(tmp_path / "file" / "d"), *SMALL)
    assert code == 2 and "not a directory" in stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_directory_is_bad_input(tmp_path: Path) -> None:
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o500)
    code, _, stderr = cli("generate", "--out", str(locked / "d"), *SMALL)
    assert code == 2 and "not writable" in stderr


def test_config_drift_exits_2_naming_parameters_unless_new(
    tmp_path: Path, reference: tuple[Path, str]
) -> None:
    out = tmp_path / "d"
    shutil.copytree(reference[0], out)
    drift = generate(out, *SMALL_SHARD, "--seed", "7", "--frames", "5")
    assert drift.returncode == 2
    assert "frames" in drift.stderr and "seed" in drift.stderr and "samples" not in drift.stderr
    assert fingerprint(out) == reference[1]  # untouched
    renewed = generate(out, *SMALL_SHARD, "--seed", "7", "--new", "--workers", "1")
    assert renewed.returncode == 0, renewed.stderr
    assert fingerprint(out) != reference[1]  # another seed, another dataset


def _wait_for(path: Path, timeout_s: float = WAIT_S_MAX) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout_s} s")
        time.sleep(0.02)


def test_second_concurrent_run_exits_3_naming_the_holder(tmp_path: Path) -> None:
    out = tmp_path / "d"
    env = clean_env({"PREFLIGHT_FAULTS": "datagen.before_shard_write:sleep=10"})
    first = subprocess.Popen(
        datagen_cmd("generate", "--out", str(out), *SMALL, "--workers", "1"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(out / "PROGRESS.json")
        second = generate(out)
        assert second.returncode == 3
        assert f"pid {first.pid}" in second.stderr and "locked" in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(WAIT_S_MAX)


def test_unusable_ledger_is_refused_naming_it_until_new(
    tmp_path: Path, reference: tuple[Path, str]
) -> None:
    out = tmp_path / "d"
    shutil.copytree(reference[0], out)
    for extra in ("-wal", "-shm"):
        (out / f"ledger.sqlite{extra}").unlink(missing_ok=True)
    (out / "ledger.sqlite").write_bytes(b"this is not a database" * 100)
    refused = generate(out, *SMALL_SHARD)
    assert refused.returncode == 4 and "ledger.sqlite" in refused.stderr
    renewed = generate(out, *SMALL_SHARD, "--new", "--workers", "1")
    assert renewed.returncode == 0, renewed.stderr
    assert fingerprint(out) == reference[1]
