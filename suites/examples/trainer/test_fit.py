"""`trainer fit` in process: outputs, exit codes, drift, lock, non-finite handling."""

from __future__ import annotations

import json

import pytest
import torch
from preflight_examples.trainer.checkpoint import STATE_NAME

from preflight.durable import RunLock, manifest, read_progress

from .conftest import CKPT_EVERY, STEPS, fit_args


def _metric_steps(run) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def _committed(run) -> list[str]:
    return sorted(p.parent.name for p in (run / "checkpoints").glob("*/manifest.json"))


def test_fit_writes_final_metrics_progress_and_rotated_checkpoints(
    dataset, tmp_path, trainer_main, reference
):
    run = tmp_path / "run"
    result = trainer_main(fit_args(dataset, run, STEPS, "--keep", "2"))
    assert result.code == 0, result.err
    summary = json.loads(result.out.strip().splitlines()[-1])
    assert summary["fingerprint"] == reference  # same options, same bits, every time
    assert _committed(run) == ["step-00000010", "step-00000015"]
    assert _metric_steps(run) == list(range(1, STEPS + 1))
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"loss", "lr", "grad_norm", "samples_per_s", "rss_bytes"} <= set(record)
    progress = read_progress(run / "PROGRESS.json")
    assert (progress.done, progress.total, progress.state) == (STEPS, STEPS, "done")
    assert trainer_main(["fingerprint", str(run)]).out.strip() == reference
    assert trainer_main(["verify", str(run)]).code == 0


def test_checkpoints_load_with_weights_only(dataset, tmp_path, trainer_main):
    run = tmp_path / "run"
    assert trainer_main(fit_args(dataset, run, 10)).code == 0
    ckpt = torch.load(run / "checkpoints/step-00000005" / STATE_NAME, weights_only=True)
    assert ckpt["step"] == 5 and manifest.read(run / "checkpoints/step-00000005").meta["step"] == 5
    assert {"model", "optimizer", "scheduler", "sampler", "rng", "counters"} <= set(ckpt)
    assert ckpt["sampler"]["position"] == 20  # 5 steps x batch 4 from a 64-sample epoch
    assert {"python", "numpy", "torch", "cuda"} <= set(ckpt["rng"])
    final = torch.load(run / "final" / STATE_NAME, weights_only=True)
    assert final["step"] == 10 and isinstance(final["fingerprint"], str)


def test_rerun_of_a_finished_run_is_a_no_op(dataset, tmp_path, trainer_main):
    run = tmp_path / "run"
    assert trainer_main(fit_args(dataset, run, 6)).code == 0
    before = (run / "final" / STATE_NAME).stat().st_mtime_ns
    again = trainer_main(fit_args(dataset, run, 6))
    assert again.code == 0 and "already complete" in again.err
    assert (run / "final" / STATE_NAME).stat().st_mtime_ns == before


def test_config_drift_exits_2_naming_the_option_unless_new(dataset, tmp_path, trainer_main):
    run = tmp_path / "run"
    assert trainer_main(fit_args(dataset, run, 6)).code == 0
    drift = trainer_main(fit_args(dataset, run, 6, "--lr", "0.01"))
    assert drift.code == 2 and "lr" in drift.err and "--new" in drift.err
    # Operational options are not hyper-parameters: a resume may change them.
    assert trainer_main(fit_args(dataset, run, 6, "--keep", "5")).code == 0
    fresh = trainer_main(fit_args(dataset, run, 6, "--lr", "0.01", "--new"))
    assert fresh.code == 0 and "starting at step 0" in fresh.err


def test_second_fit_on_a_locked_run_dir_exits_3(dataset, tmp_path, trainer_main):
    run = tmp_path / "run"
    run.mkdir()
    with RunLock(run):
        result = trainer_main(fit_args(dataset, run, 4))
    assert result.code == 3 and "locked" in result.err
    assert not (run / "config.json").exists()


def test_bad_option_exits_2_and_writes_nothing(dataset, tmp_path, trainer_main):
    result = trainer_main(fit_args(dataset, tmp_path / "run", 4, "--accum", "0"))
    assert result.code == 2 and "--accum" in result.err
    assert not (tmp_path / "run").exists()


def test_fingerprint_of_an_unfinished_run_exits_1(dataset, tmp_path, trainer_main):
    run = tmp_path / "run"
    assert trainer_main(fit_args(dataset, run, 6)).code == 0
    manifest_path = run / "final" / "manifest.json"
    manifest_path.unlink()
    assert trainer_main(["fingerprint", str(run)]).code == 1
    assert trainer_main(["verify", str(run)]).code == 1


def test_corrupt_final_state_is_refused_by_verify(dataset, tmp_path, trainer_main):
    run = tmp_path / "run"
    assert trainer_main(fit_args(dataset, run, 6)).code == 0
    state = run / "final" / STATE_NAME
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 1
    state.write_bytes(bytes(data))
    result = trainer_main(["verify", str(run)])
    assert result.code == 4 and str(state) in result.err


def test_non_finite_loss_exits_1_naming_the_step_and_keeps_the_good_checkpoint(
    dataset, tmp_path, trainer_main, monkeypatch, reference
):
    run = tmp_path / "run"
    monkeypatch.setenv("PREFLIGHT_FAULTS", "trainer.loss:nan@7")
    failed = trainer_main(fit_args(dataset, run))
    assert failed.code == 1 and "step 7" in failed.err
    assert _committed(run) == ["step-00000005"]
    assert manifest.verify(run / "checkpoints/step-00000005")
    progress = read_progress(run / "PROGRESS.json")
    assert (progress.state, progress.done) == ("failed", 6)  # step 7 never completed
    assert not (run / "final").exists()
    # Without the fault the resumed run is the uninterrupted one, bit for bit.
    monkeypatch.delenv("PREFLIGHT_FAULTS")
    assert trainer_main(fit_args(dataset, run)).code == 0
    assert trainer_main(["fingerprint", str(run)]).out.strip() == reference


def test_skip_nonfinite_skips_and_counts_the_step(
    dataset, tmp_path, trainer_main, monkeypatch, reference
):
    run = tmp_path / "run"
    monkeypatch.setenv("PREFLIGHT_FAULTS", "trainer.loss:nan@3")
    result = trainer_main(fit_args(dataset, run, STEPS, "--skip-nonfinite"))
    assert result.code == 0 and "step 3" in result.err
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[2]["step"] == 3 and records[2]["skipped"] and records[2]["loss"] is None
    final = torch.load(run / "final" / STATE_NAME, weights_only=True)
    assert final["counters"]["skipped_nonfinite"] == 1
    assert trainer_main(["fingerprint", str(run)]).out.strip() != reference


def test_max_skips_bounds_the_skipping(dataset, tmp_path, trainer_main, monkeypatch):
    monkeypatch.setenv("PREFLIGHT_FAULTS", "trainer.loss:nan@2")
    result = trainer_main(
        fit_args(dataset, tmp_path / "run", 4, "--skip-nonfinite", "--max-skips", "0")
    )
    assert result.code == 1 and "--max-skips" in result.err


@pytest.mark.parametrize("extra", [("--bf16",), ("--accum", "2", "--clip", "0")])
def test_bf16_and_accumulation_resume_exactly(dataset, tmp_path, trainer_main, extra):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert trainer_main(fit_args(dataset, straight, 12, *extra)).code == 0
    assert trainer_main(fit_args(dataset, resumed, 12, *extra)).code == 0
    # Drop the final state and the newest checkpoint: the run must recompute from step 5.
    for path in (resumed / "final", resumed / "checkpoints/step-00000010"):
        (path / "manifest.json").unlink()
    rerun = trainer_main(fit_args(dataset, resumed, 12, *extra))
    assert rerun.code == 0 and f"step-0000000{CKPT_EVERY}" in rerun.err
    assert _metric_steps(resumed) == list(range(1, 13))
    prints = [trainer_main(["fingerprint", str(r)]).out.strip() for r in (straight, resumed)]
    assert prints[0] == prints[1]
