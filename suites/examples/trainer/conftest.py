"""Fixtures for trainer tests: a tiny dataset, in-process and child-process fits.

The dataset is written here straight from docs/dataset-format.md with numpy + durable, not
with the trainer's own writer, so the reader is checked against the contract, not itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from preflight.durable import atomic_write, faults, manifest

CHILD_TIMEOUT_S = 60.0
SAMPLES, FRAMES, CHANNELS, SIZE, CLASSES, SHARD = 64, 4, 1, 16, 4, 32
STEPS = 20
CKPT_EVERY = 5
# A model small enough that a step takes milliseconds; one thread for exact numerics.
MODEL_ARGS = ("--channels", "4", "--depth", "2", "--batch-size", "4", "--threads", "1")


def write_tiny_dataset(root: Path, seed: int = 0) -> Path:
    """64 clips of 4x1x16x16 in 2 shards, 4 balanced classes, committed manifest-last."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(SAMPLES, dtype=np.int64) % CLASSES)
    videos = rng.integers(0, 256, size=(SAMPLES, FRAMES, CHANNELS, SIZE, SIZE), dtype=np.uint8)
    # A label-dependent bright band so the loss can actually fall.
    for i, label in enumerate(labels):
        videos[i, :, :, label * 4 : label * 4 + 4, :] = 255
    shards, files = [], ["dataset.json"]
    for index, start in enumerate(range(0, SAMPLES, SHARD)):
        rel = f"shards/{index:05d}"
        (root / rel).mkdir(parents=True)
        atomic_write(root / rel / "videos.npy", videos[start : start + SHARD])
        atomic_write(root / rel / "labels.npy", labels[start : start + SHARD])
        manifest.commit(root / rel)
        shards.append(
            {
                "index": index,
                "start": start,
                "count": SHARD,
                "videos": f"{rel}/videos.npy",
                "labels": f"{rel}/labels.npy",
            }
        )
        files += [f"{rel}/videos.npy", f"{rel}/labels.npy"]
    atomic_write(
        root / "dataset.json",
        {
            "format": "preflight-dataset/1",
            "samples": SAMPLES,
            "frames": FRAMES,
            "channels": CHANNELS,
            "size": SIZE,
            "classes": CLASSES,
            "class_names": [f"c{k}" for k in range(CLASSES)],
            "shard_size": SHARD,
            "seed": seed,
            "augment": False,
            "shards": shards,
        },
    )
    manifest.commit(root, files=files)
    return root


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared read-only dataset; tests that corrupt data use ``fresh_dataset``."""
    return write_tiny_dataset(tmp_path_factory.mktemp("dataset") / "ds")


@pytest.fixture
def fresh_dataset(tmp_path: Path) -> Path:
    return write_tiny_dataset(tmp_path / "ds")


@pytest.fixture(autouse=True)
def no_armed_faults(monkeypatch: pytest.MonkeyPatch) -> None:
    """No inherited fault spec, and fresh hit counters (they are per process, and an
    identical spec string in a later test would otherwise continue the old count)."""
    monkeypatch.delenv("PREFLIGHT_FAULTS", raising=False)
    monkeypatch.delenv("PREFLIGHT_FAULTS_TRACE", raising=False)
    monkeypatch.setattr(faults, "_state", faults._State())


def fit_args(data: Path, out: Path, steps: int = STEPS, *extra: str) -> list[str]:
    return [
        "fit",
        "--data",
        str(data),
        "--out",
        str(out),
        "--steps",
        str(steps),
        "--ckpt-every",
        str(CKPT_EVERY),
        *MODEL_ARGS,
        *extra,
    ]


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def trainer_main(capsys: pytest.CaptureFixture[str]) -> Callable[[Sequence[str]], Result]:
    """Run the trainer CLI in this process (no interpreter start-up, no torch import)."""
    from preflight_examples.trainer.cli import main

    def run(argv: Sequence[str]) -> Result:
        capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def run_child(
    argv: Sequence[str], faults_spec: str = "", trace: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The trainer CLI in a fresh interpreter with fault points armed (bounded)."""
    return subprocess.run(
        [sys.executable, "-m", "preflight_examples.trainer.cli", *argv],
        env=child_env(faults_spec, trace),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )


def child_env(faults_spec: str = "", trace: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLIGHT_FAULTS")}
    if faults_spec:
        env["PREFLIGHT_FAULTS"] = faults_spec
    if trace is not None:
        env["PREFLIGHT_FAULTS_TRACE"] = str(trace)
    return env


def main_unarmed(argv: Sequence[str]) -> int:
    """The CLI in this process with no fault armed (for fixtures wider than one test, which
    are set up before ``no_armed_faults``)."""
    from preflight_examples.trainer.cli import main

    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("PREFLIGHT_FAULTS", raising=False)
        patch.setattr(faults, "_state", faults._State())
        return main(list(argv))


@pytest.fixture(scope="session")
def reference(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Fingerprint of an uninterrupted run with the default test options."""
    from preflight_examples.trainer.final import read_final

    out = tmp_path_factory.mktemp("reference") / "run"
    assert main_unarmed(fit_args(dataset, out)) == 0
    return read_final(out).fingerprint
