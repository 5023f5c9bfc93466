"""Memory and disk mechanism detection over fake cgroup trees (runs on any machine)."""

from __future__ import annotations

from pathlib import Path

from preflight.check.history import Reference
from preflight.check.kinds import disk, memory

V1_SELF = "4:memory:/jobs/me\n1:cpu:/\n0::/\n"
V2_SELF = "0::/user.slice/me\n"


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_cgroup_v2_with_a_delegated_memory_controller(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "cgroup.controllers": "cpu io memory pids",
            "user.slice/me/cgroup.subtree_control": "memory pids",
        },
    )
    found = memory.detect(root, V2_SELF, can_write=True)
    assert found == memory.Mechanism("cgroup2", root / "user.slice/me")
    assert memory.limit_files("cgroup2")[0] == "memory.max"


def test_cgroup_v2_without_delegation_falls_back_to_rlimit_with_a_note(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"cgroup.controllers": "cpu memory", "cgroup.subtree_control": "cpu"})
    found = memory.detect(root, V2_SELF, can_write=True)
    assert found.kind == "rlimit_as"
    assert "not delegated" in found.note


def test_cgroup_v1_uses_our_own_group_when_it_exists(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "memory/memory.limit_in_bytes": "9223372036854771712",
            "memory/jobs/me/memory.limit_in_bytes": "9223372036854771712",
        },
    )
    assert memory.detect(root, V1_SELF, can_write=True) == memory.Mechanism(
        "cgroup1", root / "memory/jobs/me"
    )
    assert memory.detect(root, "4:memory:/elsewhere\n", can_write=True).base == root / "memory"


def test_an_unwritable_cgroup_v1_falls_back_to_rlimit(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"memory/memory.limit_in_bytes": "1"})
    found = memory.detect(root, V1_SELF, can_write=False)
    assert found.kind == "rlimit_as" and "not writable" in found.note


def test_no_cgroups_at_all_falls_back_to_rlimit(tmp_path: Path) -> None:
    assert memory.detect(tmp_path, "", can_write=True).kind == "rlimit_as"


def test_own_cgroup_path_parses_both_versions() -> None:
    assert memory.own_cgroup_path(V1_SELF, "memory") == "/jobs/me"
    assert memory.own_cgroup_path(V2_SELF, None) == "/user.slice/me"
    assert memory.own_cgroup_path("garbage", "memory") is None


def test_oom_kill_counts_are_read_from_either_version(tmp_path: Path) -> None:
    _tree(tmp_path, {"memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"})
    assert memory.oom_kills(tmp_path, "cgroup1") == 2
    assert memory.oom_kills(tmp_path, "cgroup2") is None


def test_memory_limits_follow_the_right_peak() -> None:
    ref = Reference(0, "f", 0, 1.0, uss_bytes_max=100 << 20, vms_bytes_max=1 << 30)
    cgroup = memory.Mechanism("cgroup1", Path("/x"))
    assert memory.limit_for(ref, cgroup, 0.5) == 50 << 20
    assert memory.limit_for(ref, memory.Mechanism("rlimit_as"), 0.5) == 1 << 29
    assert memory.limit_for(ref, cgroup, 0.001) == memory.LIMIT_BYTES_MIN


def test_disk_detection() -> None:
    assert disk.detect(0, "/usr/bin/mount", True).kind == "tmpfs"
    assert disk.detect(1000, "/usr/bin/mount", True).kind == "rlimit_fsize"
    assert "not root" in disk.detect(1000, "/usr/bin/mount", True).note
    assert disk.detect(1000, None, False).kind == "none"


def test_the_small_filesystem_is_page_aligned_and_below_the_footprint() -> None:
    ref = Reference(0, "f", 0, 1.0, workdir_bytes=1 << 20)
    size = disk.fs_size_for(ref, 0.45)
    assert size is not None and size % disk.PAGE_BYTES == 0 and size < 1 << 20
    assert disk.fs_size_for(Reference(0, "f", 0, 1.0, workdir_bytes=100), 0.5) == disk.FS_BYTES_MIN
    assert disk.fs_size_for(Reference(0, "f", 0, 1.0), 0.5) is None
