"""Symlinks: a run directory that is itself a symlink works (resolved once, documented in
docs/security.md); a symlink inside it that leads out is refused; the harness's corruption
never follows a symlink out of the workdir."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from preflight_examples.datagen.verify import scan

from preflight.check.drive.runner import expand
from preflight.check.kinds.corrupt import KINDS, CorruptionSpec, apply
from preflight.durable import manifest
from preflight.durable.errors import VerifyError
from suites.examples.trainer.conftest import fit_args, write_tiny_dataset
from suites.security.conftest import TINY_DATAGEN, Result

CHILD_TIMEOUT_S = 120.0
TINY = TINY_DATAGEN


def _run(module: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *argv],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )


def test_corruption_never_touches_files_outside_the_workdir(tmp_path: Path) -> None:
    workdir, outside = tmp_path / "work", tmp_path / "outside"
    (workdir / "ckpt").mkdir(parents=True)
    (outside / "dir").mkdir(parents=True)
    secret_file, secret_in_dir = outside / "secret.json", outside / "dir" / "state.json"
    for path in (secret_file, secret_in_dir):
        path.write_text('{"precious": true}')
    inside = workdir / "ckpt" / "own.json"
    inside.write_text('{"step": 1}')
    (workdir / "ckpt" / "link.json").symlink_to(secret_file)
    (workdir / "ckpt" / "linked_dir").symlink_to(outside / "dir")
    ckpt = workdir / "ckpt"
    groups = [expand([f"{ckpt}/*.json", f"{ckpt}/*/*.json"])]
    assert len(groups[0]) == 3  # the glob itself does reach through both symlinks
    damaged = set()
    for kind in KINDS:
        for target in range(4):
            inside.write_text('{"step": 1}')
            found = apply(CorruptionSpec(kind, target=target, salt=target), groups, workdir)
            damaged.update(found.paths if found else ())
    assert damaged <= {"ckpt/own.json"}
    assert secret_file.read_text() == secret_in_dir.read_text() == '{"precious": true}'
    assert (workdir / "ckpt" / "link.json").is_symlink()


def test_datagen_in_a_symlinked_out_dir_generates_and_verifies(tmp_path: Path) -> None:
    real = tmp_path / "disk" / "dataset"
    real.mkdir(parents=True)
    link = tmp_path / "dataset"
    link.symlink_to(real)
    done = _run("preflight_examples.datagen.cli", "generate", "--out", str(link), *TINY)
    assert done.returncode == 0, done.stderr
    assert _run("preflight_examples.datagen.cli", "verify", str(link)).returncode == 0
    assert scan(link).samples == 8 and scan(real).fingerprint == scan(link).fingerprint
    # A file inside the (real) directory swapped for a symlink that leads out is refused.
    label = real / "shards" / "00000" / "labels.npy"
    stolen = tmp_path / "labels.npy"
    label.rename(stolen)
    label.symlink_to(stolen)
    refused = _run("preflight_examples.datagen.cli", "verify", str(link))
    assert refused.returncode == 4 and "labels.npy" in refused.stderr


def test_trainer_in_a_symlinked_out_dir_trains_and_verifies(
    tmp_path: Path, trainer: Callable[..., Result]
) -> None:
    ds = write_tiny_dataset(tmp_path / "ds")
    real = tmp_path / "disk" / "run"
    real.mkdir(parents=True)
    link = tmp_path / "run"
    link.symlink_to(real)
    done = trainer(*fit_args(ds, link, 10))
    assert done.returncode == 0, done.stderr
    assert trainer("verify", str(link)).returncode == 0
    assert (real / "final" / manifest.MANIFEST_NAME).is_file()


def test_manifest_containment_is_checked_against_the_resolved_root(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "a.bin").write_bytes(b"a")
    manifest.commit(real)
    link = tmp_path / "link"
    link.symlink_to(real)
    manifest.verify(link)
    (tmp_path / "escape.bin").write_bytes(b"a")
    (real / "a.bin").unlink()
    (real / "a.bin").symlink_to(tmp_path / "escape.bin")
    with pytest.raises(VerifyError, match="outside"):
        manifest.verify(link)
