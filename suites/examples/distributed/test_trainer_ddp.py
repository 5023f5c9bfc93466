"""`trainer fit` on 2 ranks (DDP, gloo on CPU): parameters identical on every rank after each
optimizer step, a planted desync caught, checkpoints with every rank's state, and elastic
recovery: a killed rank is restarted by torchrun and the run ends bit-identical."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import torch
from preflight_examples.trainer.cli import build_parser
from preflight_examples.trainer.config import FitConfig
from preflight_examples.trainer.distributed import (
    ENV_PARAM_SYNC,
    World,
    fit_argv,
    global_rate,
    launch_argv,
    world_from_env,
)

from preflight.check import checker
from preflight.durable import VerifyError
from suites.examples.distributed.conftest import (
    MONITOR_INTERVAL_S,
    RUN_TIMEOUT_S,
    check_rank_kill,
    clean_env,
)
from suites.examples.trainer.conftest import write_tiny_dataset

# A few seconds of training: progress every 100 ms gives the harness enough points to place a
# kill between checkpoints; more steps would only cost CPU (2 ranks on 2 cores).
STEPS, CKPT_EVERY = 120, 20
TINY = (
    "--channels",
    "4",
    "--depth",
    "2",
    "--batch-size",
    "4",
    "--threads",
    "1",
    "--accum",
    "2",
    "--progress-every-ms",
    "100",
)


def _fit(data: Path, out: Path, *extra: str, env: dict[str, str] | None = None):
    argv = [sys.executable, "-m", "preflight_examples.trainer.cli", "fit",
            "--data", str(data), "--out", str(out)]
    argv += ["--steps", str(STEPS), "--ckpt-every", str(CKPT_EVERY), *TINY, *extra]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=clean_env(env)
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ddp-data") / "data"
    root.mkdir()
    write_tiny_dataset(root)
    return root


def test_fit_argv_reproduces_the_config() -> None:
    cfg = FitConfig(data="d", out="o", steps=7, lr=3e-4, bf16=True, accum=2, new=True)
    args = build_parser().parse_args(fit_argv(cfg))
    assert FitConfig(**{f.name: getattr(args, f.name) for f in fields(FitConfig)}) == cfg
    argv = launch_argv(cfg, 2, 3)
    assert argv[1:3] == ["-m", "torch.distributed.run"] and "--nproc" not in argv
    assert argv[argv.index("--max-restarts") + 1] == "3"
    assert world_from_env({}) == World()
    assert world_from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == World(1, 2, 1)
    rates = global_rate({"samples_per_s": 40.0, "steps": 3}, 2)
    assert (rates["samples_per_s"], rates["samples_per_s_per_rank"], rates["steps"]) == (80, 40, 3)


@pytest.mark.long
def test_two_ranks_stay_in_sync_and_checkpoint_every_rank(data: Path, tmp_path: Path) -> None:
    """One uninterrupted `trainer fit --nproc 2` with the parameter-sync check on: an
    all-gathered parameter hash agrees after every optimizer step, and each checkpoint holds
    every rank's sampler and RNG state."""
    out = tmp_path / "run"
    done = _fit(data, out, "--nproc", "2", env={ENV_PARAM_SYNC: "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads([ln for ln in done.stdout.splitlines() if ln.startswith("{")][-1])
    assert summary["world_size"] == 2
    assert summary["samples_per_s"] == pytest.approx(2 * summary["samples_per_s_per_rank"])
    assert summary["param_sync_checks"] == STEPS  # one all-gathered hash per optimizer step
    newest = sorted((out / "checkpoints").iterdir())[-1]
    state = torch.load(newest / "state.pt", weights_only=True)  # plain values only
    assert state["world_size"] == 2 and [r["rank"] for r in state["ranks"]] == [0, 1]
    samplers = [r["sampler"] for r in state["ranks"]]
    assert samplers[0] == samplers[1] == state["sampler"]  # one global order, strided
    dropout = [r["rng"]["torch"] for r in state["ranks"]]
    assert not torch.equal(dropout[0], dropout[1])  # each rank its own dropout stream


@pytest.mark.long
def test_planted_desync_is_caught(data: Path, tmp_path: Path) -> None:
    env = {ENV_PARAM_SYNC: "1", "PREFLIGHT_FAULTS": "trainer.desync:nan@3"}
    done = _fit(data, tmp_path / "run", "--nproc", "2", env=env)
    assert done.returncode != 0
    assert "parameters differ across ranks after step 3" in done.stderr


SPEC = """
[workloads.trainer-ddp]
launcher = ["{python}", "-m", "torch.distributed.run", "--standalone",
            "--nproc-per-node", "2", "--max-restarts", "3",
            "--monitor-interval", "MONITOR", "--no-python"]
command = ["trainer", "fit", "--data", "DATA", "--out", "{workdir}", "--steps", "{steps}",
           "--ckpt-every", "20", "--channels", "4", "--depth", "2", "--batch-size", "4",
           "--threads", "1", "--accum", "2", "--progress-every-ms", "100"]
progress = "{workdir}/PROGRESS.json"
verify = ["trainer", "verify", "{workdir}"]
fingerprint = ["trainer", "fingerprint", "{workdir}"]
checkpoints = ["{workdir}/checkpoints/*/*"]
env = { OMP_NUM_THREADS = "1" }
[workloads.trainer-ddp.scale]
small = { steps = 120 }
"""


@pytest.mark.long
def test_killed_rank_recovers_exactly(data: Path, tmp_path: Path, preflight_record: Any) -> None:
    """The check's reference is an uninterrupted torchrun run with the same world size; the
    killed run must end bit-identical to it (verdict `exact`)."""
    spec = SPEC.replace("MONITOR", MONITOR_INTERVAL_S).replace("DATA", str(data))
    row, statuses = check_rank_kill(spec, "trainer-ddp", tmp_path, seed=2, attempt_timeout_s=90)
    for name in ("completed", "valid", "exact", "lost_work"):
        assert statuses[name][0] == checker.PASS, statuses
    assert row.history.recover_s is not None and row.history.recover_s > 0
    # Recovery time: from the kill to the first new step the restarted group published.
    preflight_record("ddp.trainer.recovery_s", row.history.recover_s, unit="s")
    print(f"trainer: recovery {row.history.recover_s} s; {row.history.notes}")


@pytest.mark.long  # drives real jobs for seconds: make test-long (CI runs it)
def test_bad_nproc_is_bad_input_and_writes_nothing(data: Path, tmp_path: Path) -> None:
    done = _fit(data, tmp_path / "run", "--nproc", "0")
    assert done.returncode == 2 and "--nproc" in done.stderr
    assert not (tmp_path / "run").exists()


def _stored_run(out: Path, cfg: FitConfig, world_size: int) -> None:
    from preflight_examples.trainer.distributed import _hyper
    from preflight_examples.trainer.rundir import RunPaths, prepare_config

    out.mkdir(parents=True)
    hyper = _hyper(cfg, "data-identity", world_size)
    prepare_config(RunPaths(out), hyper, "hash", new=False)


def test_launcher_refuses_what_rank_0_would_refuse(tmp_path: Path) -> None:
    from preflight_examples.trainer.distributed import refuse_like_a_rank

    from preflight.durable import ConfigDriftError, LockedError, RunLock

    out = tmp_path / "run"
    cfg = FitConfig(data="d", out=str(out), steps=20, lr=1e-3)
    refuse_like_a_rank(cfg, 2)  # no run directory yet: nothing to refuse
    _stored_run(out, cfg, 2)
    refuse_like_a_rank(cfg, 2)  # the same run resumed
    with pytest.raises(ConfigDriftError, match="lr"):
        refuse_like_a_rank(FitConfig(data="d", out=str(out), steps=20, lr=2e-3), 2)
    with pytest.raises(ConfigDriftError, match="world_size"):
        refuse_like_a_rank(cfg, 3)
    refuse_like_a_rank(FitConfig(data="d", out=str(out), steps=20, lr=2e-3, new=True), 2)
    with RunLock(out), pytest.raises(LockedError):
        refuse_like_a_rank(cfg, 2)
    (out / "config.json").write_text("{not json")
    with pytest.raises(VerifyError, match="config.json"):
        refuse_like_a_rank(cfg, 2)


@pytest.mark.long  # drives real jobs for seconds: make test-long (CI runs it)
def test_locked_run_exits_3_under_nproc(data: Path, tmp_path: Path) -> None:
    from preflight.durable import RunLock

    out = tmp_path / "run"
    out.mkdir()
    with RunLock(out):
        done = _fit(data, out, "--nproc", "2")
    assert done.returncode == 3, done.stderr[-2000:]
    assert "torch.distributed.run" not in done.stderr  # refused before torchrun started
