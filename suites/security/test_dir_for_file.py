"""Issue 19 item 9: a file in a run directory replaced by a directory is refused with a
message naming it (exit 4), or repaired with a warning naming it, never a bare
IsADirectoryError (exit 1, or a traceback)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from suites.examples.trainer.conftest import fit_args, write_tiny_dataset
from suites.security.conftest import TINY_DATAGEN, Result

CHILD_TIMEOUT_S = 120.0
STEPS = 10  # two checkpoints at the tiny tier's --ckpt-every 5


def _datagen(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "preflight_examples.datagen.cli", *argv],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )


def _make_dir_of(path: Path) -> None:
    """Replace the file at ``path`` with a non-empty directory of the same name."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    path.mkdir()
    (path / "x").write_text("not the file")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("datagen") / "ds"
    done = _datagen("generate", "--out", str(out), *TINY_DATAGEN)
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.long  # drives real jobs for seconds: make test-long (CI runs it)
@pytest.mark.parametrize("name", ["dataset.json", "manifest.json", "PROGRESS.json", ".lock"])
def test_datagen_generate_refuses_a_directory_where_its_file_belongs(
    tmp_path: Path, dataset: Path, name: str
) -> None:
    out = tmp_path / "ds"
    shutil.copytree(dataset, out, symlinks=True)
    _make_dir_of(out / name)
    done = _datagen("generate", "--out", str(out), *TINY_DATAGEN)
    assert done.returncode == 4, done.stderr
    assert f"{out / name}: " in done.stderr and "IsADirectoryError" not in done.stderr


@pytest.mark.long  # drives real jobs for seconds: make test-long (CI runs it)
@pytest.mark.parametrize("name", ["shards/00000/manifest.json", "shards/00001/videos.npy"])
def test_datagen_verify_refuses_and_generate_repairs_a_shard_file_made_a_directory(
    tmp_path: Path, dataset: Path, name: str
) -> None:
    out = tmp_path / "ds"
    shutil.copytree(dataset, out, symlinks=True)
    _make_dir_of(out / name)
    refused = _datagen("verify", str(out))
    assert refused.returncode == 4 and str(out / name) in refused.stderr, refused.stderr
    repaired = _datagen("generate", "--out", str(out), *TINY_DATAGEN)
    assert repaired.returncode == 0 and str(out / name) in repaired.stderr, repaired.stderr
    assert _datagen("verify", str(out)).returncode == 0


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("trainer") / "ds")


def _resumable_run(trainer: Callable[..., Result], data: Path, out: Path) -> Path:
    done = trainer(*fit_args(data, out, STEPS))
    assert done.returncode == 0, done.stderr
    shutil.rmtree(out / "final")  # the next fit resumes from the checkpoints
    return out


@pytest.mark.parametrize("name", ["PROGRESS.json", "metrics.jsonl", ".lock", "config.json"])
def test_trainer_fit_refuses_a_directory_where_its_file_belongs(
    tmp_path: Path, data: Path, trainer: Callable[..., Result], name: str
) -> None:
    run = _resumable_run(trainer, data, tmp_path / "run")
    _make_dir_of(run / name)
    done = trainer(*fit_args(data, run, STEPS))
    assert done.returncode == 4, done.stderr
    assert f"{run / name}: " in done.stderr
    assert "Is a directory: '" not in done.stderr and "Traceback" not in done.stderr


def test_trainer_fit_repairs_a_checkpoint_manifest_made_a_directory(
    tmp_path: Path, data: Path, trainer: Callable[..., Result]
) -> None:
    # Checkpoints 5 and 10 (15 is final): the newest is damaged, an older one is resumed from and
    # the damaged one removed (that removal met the directory: IsADirectoryError, exit 1).
    run = tmp_path / "run"
    assert trainer(*fit_args(data, run, 15)).returncode == 0
    shutil.rmtree(run / "final")
    damaged = run / "checkpoints" / "step-00000010" / "manifest.json"
    _make_dir_of(damaged)
    done = trainer(*fit_args(data, run, 15))
    assert done.returncode == 0, done.stderr
    assert f"{damaged}: no manifest" in done.stderr  # the warning names it
    assert trainer("verify", str(run)).returncode == 0


@pytest.mark.parametrize("name", ["final/state.pt", "final/manifest.json", "config.json"])
def test_trainer_verify_refuses_a_directory_where_its_file_belongs(
    tmp_path: Path, data: Path, trainer: Callable[..., Result], name: str
) -> None:
    run = tmp_path / "run"
    assert trainer(*fit_args(data, run, STEPS)).returncode == 0
    _make_dir_of(run / name)
    done = trainer("verify", str(run))
    assert done.returncode == 4 and str(run / name) in done.stderr, done.stderr
