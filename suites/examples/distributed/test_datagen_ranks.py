"""datagen across ranks: rank r generates the shards i with i % W == r into one directory,
rank 0 finalizes, and the dataset's fingerprint equals the single-process one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from preflight_examples.datagen.plan import plan_shards
from preflight_examples.datagen.ranks import RankInfo, resolve
from preflight_examples.datagen.verify import scan

from preflight.durable import BadInputError
from suites.examples.distributed.conftest import RUN_TIMEOUT_S, clean_env, run, torchrun_argv

SIZES = ("--samples", "96", "--frames", "4", "--size", "12", "--channels", "1")
LAYOUT = ("--shard-size", "8", "--workers", "1")


def _generate(out: Path, *extra: str) -> list[str]:
    return ["datagen", "generate", "--out", str(out), *SIZES, *LAYOUT, *extra]


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("single") / "data"
    done = run([sys.executable, "-m", "preflight_examples.datagen.cli", *_generate(out)[1:]])
    assert done.returncode == 0, done.stderr
    return scan(out).fingerprint


def test_ranks_partition_the_shards() -> None:
    specs = plan_shards(100, 7)
    parts = [RankInfo(r, 3).mine(specs) for r in range(3)]
    indices = sorted(s.index for part in parts for s in part)
    assert indices == [s.index for s in specs]
    assert all(s.index % 3 == r for r, part in enumerate(parts) for s in part)


def test_options_win_over_torchrun_environment() -> None:
    env = {"RANK": "1", "WORLD_SIZE": "4"}
    assert resolve(None, None, env) == RankInfo(1, 4)
    assert resolve(0, 2, env) == RankInfo(0, 2)
    assert resolve(None, None, {}) == RankInfo()
    with pytest.raises(BadInputError, match="--rank"):
        resolve(2, 2, {})
    with pytest.raises(BadInputError, match="together"):
        resolve(1, None, {})
    with pytest.raises(BadInputError, match="RANK"):
        resolve(None, None, {"RANK": "x", "WORLD_SIZE": "2"})


@pytest.mark.long
def test_two_ranks_by_hand_equal_single_process(tmp_path: Path, single: str) -> None:
    out = tmp_path / "data"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "preflight_examples.datagen.cli",
                *_generate(out, "--rank", str(r))[1:],
                "--world-size",
                "2",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        for r in (1, 0)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=RUN_TIMEOUT_S)
        assert proc.returncode == 0, err
    assert scan(out).fingerprint == single
    assert (out / "ranks" / "rank-1" / "PROGRESS.json").is_file()


@pytest.mark.long
def test_under_torchrun_equals_single_process(tmp_path: Path, single: str) -> None:
    out = tmp_path / "data"
    done = run([*torchrun_argv(), "--no-python", *_generate(out)])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank 0 finalizes" in done.stderr
    assert scan(out).fingerprint == single
    status = run([sys.executable, "-m", "preflight_examples.datagen.cli", "status", str(out)])
    assert '"done": 96' in status.stdout and '"state": "done"' in status.stdout


def test_new_is_refused_for_ranks(tmp_path: Path) -> None:
    out = tmp_path / "data"
    done = run(
        [
            sys.executable,
            "-m",
            "preflight_examples.datagen.cli",
            *_generate(out, "--new")[1:],
            "--rank",
            "0",
            "--world-size",
            "2",
        ]
    )
    assert done.returncode == 2 and "--new" in done.stderr
