"""The "kill one rank" fault kind: SIGKILL one rank of torchrun; torchrun restarts the group,
the job resumes, and the verdicts (completed, valid, exact, lost work) and the recovery time
come out of `preflight check --faults rank`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from preflight.check import checker
from preflight.check.drive.schedule import parse_kinds
from preflight.check.history import Reference
from preflight.check.kinds import rank
from suites.examples.distributed.conftest import MONITOR_INTERVAL_S, check_rank_kill

SPEC = """
[workloads.datagen-ranks]
launcher = ["{python}", "-m", "torch.distributed.run", "--standalone",
            "--nproc-per-node", "2", "--max-restarts", "2",
            "--monitor-interval", "MONITOR", "--no-python"]
command = ["datagen", "generate", "--out", "{workdir}", "--samples", "{samples}",
           "--frames", "8", "--size", "24", "--channels", "1", "--shard-size", "{shard_size}",
           "--workers", "1", "--seed", "{seed}"]
progress = "{workdir}/PROGRESS.json"
verify = ["datagen", "verify", "{workdir}"]
fingerprint = ["datagen", "fingerprint", "{workdir}"]
checkpoints = ["{workdir}/shards/*/*"]
env = { OMP_NUM_THREADS = "1" }
[workloads.datagen-ranks.scale]
small = { samples = 640, shard_size = 16 }
"""


def _reference(total: int | None = 100) -> Reference:
    return Reference(rc=0, fingerprint="f", verify_rc=0, duration_s=4.0, total=total)


def test_rank_is_a_fault_kind() -> None:
    assert parse_kinds("kill,rank") == ("kill", "rank")


def test_job_without_launcher_gets_a_skip_not_a_failure() -> None:
    (exp,) = rank.plan(_reference(), seed=3, has_launcher=False)
    history = rank.execute(None, exp, 3)  # type: ignore[arg-type]  # skipped: no context used
    verdicts = checker.check(history, _reference())
    assert [v.status for v in verdicts] == [checker.SKIP]
    assert "launcher" in verdicts[0].detail


def test_plan_is_seeded_and_picks_a_rank() -> None:
    first = rank.plan(_reference(), seed=7, has_launcher=True)
    assert first == rank.plan(_reference(), seed=7, has_launcher=True)
    assert 25 <= first[0].schedule["at_done"] <= 60
    assert "at_s" in rank.plan(_reference(None), seed=7, has_launcher=True)[0].schedule
    assert rank.pick_rank({0: 10, 1: 11}, 0.0) == (0, 10)
    assert rank.pick_rank({0: 10, 1: 11}, 0.99) == (1, 11)
    assert rank.is_rank({"RANK": "1"}, {"PATH": "x"})
    assert not rank.is_rank({"RANK": "1"}, {"RANK": "1"})  # a rank's helper process


def test_recovery_time_is_to_the_first_new_step_or_bounded_by_the_first_value_seen() -> None:
    seen = rank._RankObserved(kill_s=2.0, kill_done=48, resume_done=32, resume_s=3.0)
    assert rank.recovery_time_s(seen) is None  # resumed, but no new step seen
    assert rank.recovery_time_s(replace(seen, first_step_s=3.5)) == 1.5
    # The restarted group did the rest between two polls: the first value seen (the final
    # one) is past the killed group's 48, so a new step came before it was seen.
    finished = replace(seen, resume_done=640, resume_s=4.25)
    assert rank.recovery_time_s(finished) == 2.25
    assert "already past the killed group's 48" in rank._notes(
        replace(finished, killed=(1, 99), restart_s=3.0), 0
    )[0]
    assert rank.recovery_time_s(rank._RankObserved()) is None  # never killed


@pytest.mark.long
def test_killed_rank_is_restarted_by_torchrun_and_the_result_is_exact(
    tmp_path: Path, preflight_record: Any
) -> None:
    spec = SPEC.replace("MONITOR", MONITOR_INTERVAL_S)
    row, statuses = check_rank_kill(spec, "datagen-ranks", tmp_path, seed=1, attempt_timeout_s=60)
    for name in ("completed", "valid", "exact"):
        assert statuses[name][0] == checker.PASS, statuses
    assert statuses["lost_work"][0] in (checker.PASS, checker.SKIP), statuses
    killed, restarted = row.history.attempts
    assert killed.fault == "SIGKILL" and "rank" in killed.armed
    assert restarted.rc == 0 and restarted.start_done is not None
    assert row.history.recover_s is not None and row.history.recover_s > 0
    # Recovery time: from the kill to the first new step the restarted group published.
    preflight_record("ddp.datagen.recovery_s", row.history.recover_s, unit="s")
    print(f"datagen: recovery {row.history.recover_s} s; {row.history.notes}")


def test_launcher_is_prepended_once(tmp_path: Path) -> None:
    from preflight.workload import load_spec

    spec_file = tmp_path / "workloads.toml"
    spec_file.write_text(
        '[workloads.a]\nlauncher = ["torchrun", "--nproc-per-node", "2"]\n'
        'command = ["train", "{workdir}"]\n'
        'resume = ["torchrun", "--nproc-per-node", "2", "train", "--resume"]\n'
    )
    spec = load_spec("a", spec_file)
    params = spec.base_params(tmp_path)
    assert spec.job_argv(params) == ["torchrun", "--nproc-per-node", "2", "train", str(tmp_path)]
    assert spec.job_argv(params, resume=True) == [
        "torchrun",
        "--nproc-per-node",
        "2",
        "train",
        "--resume",
    ]
