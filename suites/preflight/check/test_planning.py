"""Seeds, schedules and what the reference run teaches: all pure."""

from __future__ import annotations

from dataclasses import replace

import pytest

from preflight.check.drive.reference import derive_ckpt_interval, merge_adjacent, parse_trace
from preflight.check.drive.runner import is_checkpoint_write
from preflight.check.drive.schedule import parse_kinds, stream
from preflight.check.history import Reference
from preflight.check.kinds import corrupt, crashpoints, disk, kill, memory
from preflight.check.report import replay_command

REF = Reference(
    rc=0,
    fingerprint="f",
    verify_rc=0,
    duration_s=2.0,
    total=100,
    ckpt_interval=10,
    ckpt_commits=10,
    write_windows=(10, 10),
    points=("a.step", "b.ckpt"),
    point_hits={"a.step": 100, "b.ckpt": 10},
    uss_bytes_max=50 << 20,
    workdir_bytes=1 << 20,
)


def _plans(ref: Reference, seed: int) -> list:
    return (
        kill.plan(ref, seed, 2)
        + crashpoints.plan(ref, seed)
        + corrupt.plan(ref, seed)
        + memory.plan(ref, seed)
        + disk.plan(ref, seed)
    )


def test_every_schedule_is_a_function_of_the_seed() -> None:
    assert _plans(REF, 3) == _plans(REF, 3)
    assert _plans(REF, 3) != _plans(REF, 4)
    ids = [e.id for e in _plans(REF, 3)]
    assert len(ids) == len(set(ids))


def test_an_experiment_draws_the_same_alone_as_in_the_battery() -> None:
    # --only replays one experiment: its stream must not depend on the others.
    assert stream(9, "kill-time").random() == stream(9, "kill-time").random()
    alone = kill.plan(REF, 9, 2)[0]
    assert alone == next(e for e in _plans(REF, 9) if e.id == alone.id)


def test_kills_land_inside_the_run() -> None:
    for seed in range(50):
        planned = kill.plan(REF, seed, 2)
        assert not [e for e in planned if "skip" in e.schedule]
        for exp in planned:
            for trigger in exp.schedule.get("triggers", []):
                assert 0 < trigger.get("at_done", 1) < REF.total
                assert 0 < trigger.get("at_s", 1) < REF.duration_s
                assert 1 <= trigger.get("nth_window", 1) <= 10  # REF saw 10 per glob


def test_every_write_window_the_reference_saw_is_reachable() -> None:
    # Capping n at 3 made the 4th write (often the first overwrite of last.ckpt) unreachable.
    drawn = {
        e.schedule["triggers"][0]["nth_window"]
        for seed in range(200)
        for e in kill.plan(REF, seed, 2)
        if e.id == "kill-write-0"
    }
    assert drawn == set(range(1, 11))


def test_kills_on_progress_land_past_the_first_checkpoint() -> None:
    # Planned on units done, not on a time fraction measured under another load.
    for seed in range(50):
        for exp in kill.plan(REF, seed, 2):
            if exp.id in ("kill-time", "kill-progress", "kill-sigterm"):
                (trigger,) = exp.schedule["triggers"]
                assert "at_s" not in trigger
                assert REF.ckpt_interval < trigger["at_done"] < REF.total


def test_temp_files_seen_renamed_onto_a_checkpoint_travel_with_the_write_kill() -> None:
    ref = replace(REF, write_temps=(("./tmp?.pt", 1),))
    plans = {e.id: e for e in kill.plan(ref, 0, 2)}
    assert "temps" not in plans["kill-write-0"].schedule["triggers"][0]
    assert plans["kill-write-1"].schedule["triggers"][0]["temps"] == [["./tmp?.pt", 1]]


def test_a_spec_without_checkpoints_gets_a_note_for_write_kills() -> None:
    skipped = [e for e in kill.plan(REF, 0, 0) if "skip" in e.schedule]
    assert [e.id for e in skipped] == ["kill-write"]
    # Polling can miss short writes: an unseen glob still gets a kill at its first write.
    unseen = replace(REF, write_windows=(3, 0))
    (write_1,) = [e for e in kill.plan(unseen, 0, 2) if e.id == "kill-write-1"]
    assert write_1.schedule["triggers"][0]["nth_window"] == 1


def test_crash_points_cover_each_point_at_first_and_a_later_hit() -> None:
    armed = [e.schedule["armed"] for e in crashpoints.plan(REF, 1)]
    assert armed[0] == "a.step:kill@1" and armed[2] == "b.ckpt:kill@1"
    assert len(armed) == 4
    assert all(1 <= int(a.rsplit("@", 1)[1]) <= 100 for a in armed)


def test_crash_points_are_bounded() -> None:
    many = replace(
        REF, points=tuple(f"p{i}" for i in range(50)), point_hits={f"p{i}": 5 for i in range(50)}
    )
    assert len(crashpoints.plan(many, 0)) == crashpoints.EXPERIMENTS_MAX


def test_a_job_without_fault_points_gets_a_note_not_a_failure() -> None:
    bare = replace(REF, points=(), point_hits={})
    (only,) = crashpoints.plan(bare, 0)
    assert "no fault points" in only.schedule["skip"]


def test_parse_kinds_keeps_battery_order_and_refuses_unknown_kinds() -> None:
    assert parse_kinds("disk,kill") == ("kill", "disk")
    with pytest.raises(ValueError, match="nuke"):
        parse_kinds("kill,nuke")


def test_parse_trace_lists_points_in_first_hit_order() -> None:
    points, hits = parse_trace("b\na\nb\n\nb\n")
    assert points == ("b", "a")
    assert hits == {"b": 3, "a": 1}


def test_checkpoint_interval_prefers_the_option_then_checkpoint_changes() -> None:
    assert derive_ckpt_interval([4, 5, 9, 10, 15], list(range(16)), 7)[0] == 7
    # Two files of one checkpoint seen a poll apart (4 then 5) count as one commit.
    assert merge_adjacent([4, 5, 9, 10, 15]) == [5, 10, 15]
    assert derive_ckpt_interval([4, 5, 9, 10, 15], list(range(16)), None)[0] == 5
    assert derive_ckpt_interval([], [0, 3, 6, 9], None)[0] == 3
    assert derive_ckpt_interval([], [], None)[0] is None


def test_checkpoint_writes_include_temp_siblings_but_not_other_files() -> None:
    globs = ["/w/ckpt.json", "/w/shards/*"]
    assert is_checkpoint_write("/w/ckpt.json", globs)
    assert is_checkpoint_write("/w/.ckpt.json.tmp-12-ab", globs)
    assert is_checkpoint_write("/w/shards/.shard-1.npy.tmp-9", globs)
    assert not is_checkpoint_write("/w/PROGRESS.json", globs)
    assert not is_checkpoint_write("/w/.PROGRESS.json.tmp-1", globs)


def test_replay_command_names_the_one_experiment() -> None:
    meta = {"workload": "no_rng", "spec": "fixtures/defects.toml", "scale": "small", "seed": 5}
    assert replay_command(meta, "kill", "kill-progress") == (
        "preflight check no_rng --spec fixtures/defects.toml --scale small --faults kill "
        "--seed 5 --only kill-progress"
    )
