"""Corrupt checkpoints: repaired (fall back, recompute, same fingerprint) or refused (exit 4)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from preflight_examples.trainer.checkpoint import STATE_NAME

from .conftest import STEPS, fit_args, main_unarmed


def _truncate(ckpt: Path, other: Path) -> None:
    state = ckpt / STATE_NAME
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])


def _flip_bit(ckpt: Path, other: Path) -> None:
    state = ckpt / STATE_NAME
    data = bytearray(state.read_bytes())
    data[len(data) // 3] ^= 0x04
    state.write_bytes(bytes(data))


def _delete_state(ckpt: Path, other: Path) -> None:
    (ckpt / STATE_NAME).unlink()


def _malformed_manifest(ckpt: Path, other: Path) -> None:
    (ckpt / "manifest.json").write_text('{"format": 1, "files": [')


def _swap_dirs(ckpt: Path, other: Path) -> None:
    parking = ckpt.with_name("parking")
    ckpt.rename(parking)
    other.rename(ckpt)
    parking.rename(other)


CORRUPTIONS: dict[str, Callable[[Path, Path], None]] = {
    "truncate": _truncate,
    "flip-bit": _flip_bit,
    "delete-state": _delete_state,
    "malformed-manifest": _malformed_manifest,
    "swap": _swap_dirs,
}


@pytest.fixture(scope="module")
def finished_run(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("finished") / "run"
    assert main_unarmed(fit_args(dataset, run, STEPS, "--keep", "3")) == 0
    return run


def _interrupted_run(finished: Path, run: Path) -> Path:
    """A copy of a finished run whose final state is gone, as if killed after its last
    checkpoint (step-00000005, -10 and -15 committed)."""
    shutil.copytree(finished, run)
    shutil.rmtree(run / "final")
    return run / "checkpoints"


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corrupt_newest_checkpoint_falls_back_and_recomputes_exactly(
    dataset, finished_run, tmp_path, trainer_main, reference, kind
):
    run = tmp_path / "run"
    ckpts = _interrupted_run(finished_run, run)
    newest, older = ckpts / "step-00000015", ckpts / "step-00000010"
    CORRUPTIONS[kind](newest, older)
    result = trainer_main(fit_args(dataset, run, STEPS, "--keep", "3"))
    assert result.code == 0, result.err
    assert "step-00000015" in result.err  # the warning names the bad checkpoint
    if kind == "swap":
        assert "records step 10 but the directory is step-00000015" in result.err
    assert trainer_main(["fingerprint", str(run)]).out.strip() == reference


def test_no_valid_checkpoint_is_refused_with_exit_4_naming_it(
    dataset, finished_run, tmp_path, trainer_main
):
    run = tmp_path / "run"
    ckpts = _interrupted_run(finished_run, run)
    for ckpt in ckpts.iterdir():
        _flip_bit(ckpt, ckpt)
    result = trainer_main(fit_args(dataset, run, STEPS, "--keep", "3"))
    assert result.code == 4
    assert f"{ckpts}/step-00000015/{STATE_NAME}" in result.err
    assert f"{ckpts}/step-00000015/manifest.json" in result.err  # either may be the bad one
    assert len(list(ckpts.iterdir())) == 3  # the evidence is left in place
    assert not (run / "final").exists()


def test_uncommitted_checkpoint_is_removed_and_ignored(
    dataset, finished_run, tmp_path, trainer_main, reference
):
    run = tmp_path / "run"
    ckpts = _interrupted_run(finished_run, run)
    (ckpts / "step-00000015" / "manifest.json").unlink()
    result = trainer_main(fit_args(dataset, run, STEPS, "--keep", "3"))
    assert result.code == 0 and "never committed" in result.err
    assert "resuming from" in result.err and "step-00000010" in result.err
    assert trainer_main(["fingerprint", str(run)]).out.strip() == reference
