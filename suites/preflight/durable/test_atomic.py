"""atomic_write: a kill at any step leaves the complete old content or the complete new one."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest

from preflight.durable import BadInputError, atomic_write, remove_stale_temps
from preflight.durable.atomic import atomic_writer, is_temp_file

from .conftest import run_child

ATOMIC_POINTS = (
    "atomic.before_write",
    "atomic.before_fsync",
    "atomic.before_replace",
    "atomic.before_dir_fsync",
)
OLD = b"old-content-" * 1000
NEW = b"NEW-CONTENT-" * 3000


def test_round_trips_bytes_json_and_arrays(tmp_path):
    atomic_write(tmp_path / "b.bin", b"\x00\x01")
    atomic_write(tmp_path / "j.json", {"b": [1, 2.5], "a": "x"})
    array = np.arange(24, dtype=np.int64).reshape(2, 3, 4)
    atomic_write(tmp_path / "a.npy", array)
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert json.loads((tmp_path / "j.json").read_text()) == {"a": "x", "b": [1, 2.5]}
    mapped = np.load(tmp_path / "a.npy", mmap_mode="r")
    assert np.array_equal(mapped, array)


def test_json_refuses_nan_and_leaves_no_file(tmp_path):
    with pytest.raises(BadInputError, match="cannot encode"):
        atomic_write(tmp_path / "x.json", {"loss": float("nan")})
    assert list(tmp_path.iterdir()) == []


def test_object_arrays_refused(tmp_path):
    with pytest.raises(BadInputError, match="object arrays"):
        atomic_write(tmp_path / "x.npy", np.array([object()], dtype=object))


def test_missing_directory_named(tmp_path):
    with pytest.raises(BadInputError, match="does not exist"):
        atomic_write(tmp_path / "nope" / "x.bin", b"1")


def test_exception_inside_writer_keeps_old_and_removes_temp(tmp_path):
    dest = tmp_path / "f.bin"
    dest.write_bytes(OLD)
    with pytest.raises(RuntimeError), atomic_writer(dest) as handle:
        handle.write(b"partial")
        raise RuntimeError("boom")
    assert dest.read_bytes() == OLD
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


@pytest.mark.parametrize("point", ATOMIC_POINTS)
def test_kill_at_each_point_leaves_old_or_new(tmp_path, point):
    dest = tmp_path / "f.bin"
    dest.write_bytes(OLD)
    code = f"from preflight.durable import atomic_write\natomic_write({str(dest)!r}, {NEW!r})\n"
    result = run_child(code, faults=f"{point}:kill")
    assert result.returncode == -signal.SIGKILL
    content = dest.read_bytes()
    # Before the rename the old file must be intact; after it, the new one complete.
    expected = NEW if point == "atomic.before_dir_fsync" else OLD
    assert content == expected
    removed = remove_stale_temps(tmp_path)
    assert all(is_temp_file(name) for name in removed)
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


@pytest.mark.parametrize("action", ["raise", "enospc"])
def test_injected_io_error_propagates_and_keeps_old(tmp_path, action):
    dest = tmp_path / "f.bin"
    dest.write_bytes(OLD)
    code = (
        "import errno\n"
        "from preflight.durable import atomic_write\n"
        "try:\n"
        f"    atomic_write({str(dest)!r}, b'new')\n"
        "except OSError as exc:\n"
        "    print('errno', exc.errno)\n"
    )
    result = run_child(code, faults=f"atomic.before_fsync:{action}")
    assert result.returncode == 0, result.stderr
    assert "errno" in result.stdout
    assert dest.read_bytes() == OLD
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_trace_lists_points_in_order(tmp_path):
    trace = tmp_path / "trace.txt"
    out = tmp_path / "f.bin"
    result = run_child(
        f"from preflight.durable import atomic_write\natomic_write({str(out)!r}, b'x')",
        trace=str(trace),
    )
    assert result.returncode == 0, result.stderr
    assert trace.read_text().split() == list(ATOMIC_POINTS)
