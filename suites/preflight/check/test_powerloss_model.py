"""The power-loss model on synthetic strace lines (pure: no job, no strace, no disk)."""

from __future__ import annotations

import pytest

from preflight.check.history import Reference
from preflight.check.kinds.powerloss.durable_state import FsModel, crash_state, replay
from preflight.check.kinds.powerloss.kind import plan
from preflight.check.kinds.powerloss.strace_ops import (
    decode,
    durability_events,
    parse_lines,
    split_args,
)

ROOT = "/w"


def hx(text: str) -> str:
    """A string as strace -xx prints it."""
    return "".join(f"\\x{b:02x}" for b in text.encode())


def fd(n: int, path: str) -> str:
    return f"{n}<{hx(path)}>"


def opened(path: str, flags: str = "O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC", n: int = 3) -> str:
    return f'7 openat(AT_FDCWD<{hx(ROOT)}>, "{hx(path)}", {flags}, 0666) = {fd(n, path)}'


def write(path: str, data: str, n: int = 3) -> str:
    return f'7 write({fd(n, path)}, "{hx(data)}", {len(data)}) = {len(data)}'


def fsync(path: str, n: int = 3, ret: str = "0") -> str:
    return f"7 fsync({fd(n, path)}) = {ret}"


def rename(src: str, dst: str) -> str:
    return f'7 rename("{hx(src)}", "{hx(dst)}") = 0'


def atomic(path: str, data: str, *, sync_file: bool, sync_dir: bool) -> list[str]:
    tmp = f"{ROOT}/.{path.rsplit('/', 1)[-1]}.tmp"
    lines = [opened(tmp), write(tmp, data)]
    lines += [fsync(tmp)] if sync_file else []
    lines.append(rename(tmp, path))
    if sync_dir:
        lines += [
            f'7 openat(AT_FDCWD<{hx(ROOT)}>, "{hx(ROOT)}", O_RDONLY|O_DIRECTORY) = {fd(4, ROOT)}'
        ]
        lines.append(fsync(ROOT, 4))
    return lines


def model_of(lines: list[str], files: dict[str, bytes] | None = None) -> FsModel:
    model = FsModel(ROOT, files or {})
    replay(model, parse_lines(lines, ROOT))
    return model


def test_decode_and_split_args() -> None:
    assert decode(hx("a/b")) == b"a/b"
    assert split_args('3<\\x2f>, "a,b", [{iov_base="x", iov_len=1}], 2') == [
        "3<\\x2f>",
        '"a,b"',
        '[{iov_base="x", iov_len=1}]',
        "2",
    ]


def test_durable_atomic_write_survives_every_mode() -> None:
    lines = atomic(f"{ROOT}/ckpt", "v1", sync_file=True, sync_dir=True)
    for mode in ("drop", "keep-names", "torn"):
        state = crash_state(model_of(lines), mode, "s")
        assert state.files == {"ckpt": b"v1"}, mode
        assert state.findings == []


def test_rename_without_dir_fsync_is_lost_in_drop_mode_and_named() -> None:
    lines = atomic(f"{ROOT}/ckpt", "v1", sync_file=True, sync_dir=False)
    state = crash_state(model_of(lines), "drop", "s")
    assert state.files == {}
    assert any(f.startswith("ckpt: lost") for f in state.findings)
    assert crash_state(model_of(lines), "keep-names", "s").files == {"ckpt": b"v1"}


def test_rename_without_fsync_leaves_zero_length_file_when_names_persist() -> None:
    lines = atomic(f"{ROOT}/ckpt", "v1", sync_file=False, sync_dir=True)
    state = crash_state(model_of(lines), "keep-names", "s")
    assert state.files == {"ckpt": b""}
    assert state.findings == ["ckpt: 0 bytes, not the 2 written (not fsynced)"]


def test_unsynced_rename_over_keeps_older_file_in_drop_mode() -> None:
    lines = atomic(f"{ROOT}/ckpt", "v1", sync_file=True, sync_dir=True)
    lines += atomic(f"{ROOT}/ckpt", "v2", sync_file=True, sync_dir=False)
    state = crash_state(model_of(lines), "drop", "s")
    assert state.files == {"ckpt": b"v1"}
    assert "ckpt: an older file (the rename onto it was never fsynced)" in state.findings


def test_in_place_rewrite_after_fsync_is_truncated_when_metadata_persists() -> None:
    path = f"{ROOT}/ckpt"
    lines = [opened(path), write(path, "old"), fsync(path), opened(path), write(path, "new!")]
    model = model_of(lines, {})
    # the file's creation was never made durable by a directory fsync: drop loses it
    assert crash_state(model, "drop", "s").files == {}
    assert crash_state(model, "keep-names", "s").files == {"ckpt": b""}


def test_preexisting_files_are_durable_and_unsynced_appends_are_dropped() -> None:
    path = f"{ROOT}/log"
    lines = [opened(path, "O_WRONLY|O_APPEND|O_CLOEXEC"), write(path, "+tail")]
    model = model_of(lines, {"log": b"head"})
    assert crash_state(model, "drop", "s").files == {"log": b"head"}
    torn = crash_state(model, "torn", "s").files["log"]
    # one page: its old bytes (zero-filled past them) or its new ones, at either length
    assert torn in (b"head", b"head\0\0\0\0\0", b"head+tail")


def test_injected_call_is_the_crash_and_does_not_run() -> None:
    lines = [*atomic(f"{ROOT}/a", "1", sync_file=True, sync_dir=False), fsync(ROOT, 4, "?")]
    ops = list(parse_lines(lines, ROOT))
    assert ops[-1].injected
    model = FsModel(ROOT, {})
    assert replay(model, ops) is not None
    assert crash_state(model, "drop", "s").files == {}


def test_unfinished_calls_are_joined() -> None:
    path = f"{ROOT}/x"
    lines = [opened(path), f"7 fsync({fd(3, path)} <unfinished ...>", "8 getpid() = 8",
             "7 <... fsync resumed>) = 0"]  # fmt: skip
    model = model_of([*lines[:1], write(path, "ab"), *lines[1:]])
    assert model.inodes[model.tree(durable=False)["x"]].synced == b"ab"


def test_untracked_files_keep_what_the_disk_holds() -> None:
    path = f"{ROOT}/m"
    model = model_of([opened(path), fsync(path)])
    assert model.untracked_against({"m": b"mmapped"}) == ["m"]
    assert crash_state(model, "drop", "s").files == {}  # its name was never durable
    assert crash_state(model, "keep-names", "s").files == {"m": b"mmapped"}


def test_census_points_follow_strace_per_thread_per_syscall_counts() -> None:
    lines = atomic(f"{ROOT}/a", "1", sync_file=True, sync_dir=True)
    lines += atomic(f"{ROOT}/b", "2", sync_file=True, sync_dir=True)
    lines.append(fsync("/elsewhere/c", 5))
    events = durability_events(lines, ROOT, ROOT)
    assert events == [
        ("fsync", 1, ".a.tmp"),
        ("rename", 1, "a"),
        ("fsync", 2, "."),
        ("fsync", 3, ".b.tmp"),
        ("rename", 2, "b"),
        ("fsync", 4, "."),
    ]


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_plan_is_seeded_bounded_and_covers_every_mode(seed: int) -> None:
    reference = Reference(rc=0, fingerprint="f", verify_rc=0, duration_s=1.0)
    exps = plan(reference, seed)
    assert exps == plan(reference, seed)
    modes = [e.schedule["mode"] for e in exps if e.schedule["at"] != "exit"]
    assert sorted(modes) == sorted(["drop", "keep-names", "torn"] * 2)
    fractions = [e.schedule["at"] for e in exps if e.schedule["at"] != "exit"]
    assert all(i / 6 <= f < (i + 1) / 6 for i, f in enumerate(fractions))
    assert [e.id for e in exps][-2:] == ["powerloss-exit-drop", "powerloss-exit-keep-names"]


def test_a_lost_work_failure_names_the_first_file_the_cut_took() -> None:
    from preflight.check.checker import FAIL, check
    from preflight.check.history import Attempt, FaultHistory
    from preflight.check.kinds.powerloss.kind import _record

    ref = Reference(rc=0, fingerprint="f" * 64, verify_rc=0, duration_s=1.0, total=30,
                    ckpt_interval=5)  # fmt: skip
    cut = Attempt(0, False, start_done=0, last_done=12, fault_at_done=12, rc=-9)
    cut = _record(cut, "drop", "before fsync", ["ckpt.json: rename lost", "shards/0: data lost"])
    resumed = Attempt(1, True, start_done=0, last_done=30, rc=0)
    history = FaultHistory("powerloss-0-drop", "powerloss", 0, {}, attempts=(cut, resumed),
                      verify_rc=0, fingerprint=ref.fingerprint)  # fmt: skip
    verdict = next(v for v in check(history, ref) if v.name == "lost_work")
    assert verdict.status == FAIL
    assert verdict.detail.endswith("; first file the fault hit: ckpt.json"), verdict.detail
