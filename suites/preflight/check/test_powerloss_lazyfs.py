"""The LazyFS-style FUSE layer (preflight.check.kinds.powerloss.lazyfs): a crash keeps exactly
what was
fsynced. The page-cache model runs everywhere; the mount tests need /dev/fuse, fuse3 and
mfusepy (`pip install '.[fuse]'`, `apt-get install fuse3`) and skip with the reason without."""

from __future__ import annotations

import mmap
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from preflight.check.kinds.powerloss import lazymount
from preflight.check.kinds.powerloss.lazyfs import PAGE, Pending
from preflight.check.kinds.powerloss.lazymount import LazyMount

# A planted writer: temp + rename with no fsync (ckpt.json), and one done right (good.json).
WRITER = """
import os, sys
d = sys.argv[1]
def dir_fsync():
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(fd)
    os.close(fd)
with open(os.path.join(d, "good.tmp"), "wb") as f:
    f.write(b'{"step": 1}')
    f.flush()
    os.fsync(f.fileno())
os.replace(os.path.join(d, "good.tmp"), os.path.join(d, "good.json"))
dir_fsync()
with open(os.path.join(d, "ckpt.tmp"), "wb") as f:
    f.write(b'{"step": 2}')
os.replace(os.path.join(d, "ckpt.tmp"), os.path.join(d, "ckpt.json"))
dir_fsync()
"""


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[LazyMount]:
    reason = lazymount.unavailable()
    if reason:
        pytest.skip(f"FUSE mode cannot run here: {reason}")
    try:
        with LazyMount(tmp_path / "backing", tmp_path / "mnt") as mounted:
            yield mounted
    except OSError as exc:
        if "did not mount" in str(exc):
            pytest.skip(str(exc))
        raise


def test_a_no_fsync_writer_loses_its_data_on_a_crash(mount: LazyMount) -> None:
    subprocess.run([sys.executable, "-c", WRITER, str(mount.mountpoint)], check=True, timeout=60)
    assert (mount.mountpoint / "ckpt.json").read_bytes() == b'{"step": 2}'  # the job saw it
    mount.crash()
    assert not lazymount.mounted(mount.mountpoint)
    assert (mount.backing / "good.json").read_bytes() == b'{"step": 1}'
    # Names go through at once (keep-names): the rename survived, the bytes did not.
    assert (mount.backing / "ckpt.json").read_bytes() == b""


def test_an_in_place_rewrite_without_fsync_keeps_the_old_bytes(mount: LazyMount) -> None:
    path = mount.mountpoint / "state.bin"
    with open(path, "wb") as f:
        f.write(b"old" * 2000)
        os.fsync(f.fileno())
    with open(path, "r+b") as f:
        f.truncate(0)
        f.write(b"new")
    assert path.read_bytes() == b"new"
    mount.crash()
    assert (mount.backing / "state.bin").read_bytes() == b"old" * 2000


def test_mmap_writes_reach_the_layer(mount: LazyMount) -> None:
    """What strace can't see: stores through a shared mapping, made durable by fsync."""
    path = mount.mountpoint / "mapped.bin"
    path.write_bytes(bytes(2 * PAGE))
    with open(path, "r+b") as f:
        with mmap.mmap(f.fileno(), 2 * PAGE) as mapped:
            mapped[PAGE : PAGE + 5] = b"hello"
            mapped.flush()
        os.fsync(f.fileno())
    mount.crash()
    data = (mount.backing / "mapped.bin").read_bytes()
    assert data[PAGE : PAGE + 5] == b"hello" and len(data) == 2 * PAGE


def test_a_clean_unmount_flushes_the_cache(mount: LazyMount) -> None:
    (mount.mountpoint / "log.txt").write_bytes(b"line\n")
    mount.close()
    assert (mount.backing / "log.txt").read_bytes() == b"line\n"


@pytest.mark.parametrize("seed", range(20))
def test_the_page_cache_matches_a_plain_file(tmp_path: Path, seed: int) -> None:
    """Random writes and truncations over a durable file: reads see the volatile content,
    the backing file keeps the durable one until the flush, which makes them equal."""
    rng = random.Random(seed)
    durable = rng.randbytes(rng.randrange(0, 3 * PAGE))
    path = tmp_path / "f"
    path.write_bytes(durable)
    model = bytearray(durable)
    fd = os.open(path, os.O_RDWR)
    state = Pending(os.dup(fd), len(durable), len(durable))
    try:
        for _ in range(rng.randrange(1, 12)):
            if rng.random() < 0.3:
                length = rng.randrange(0, 4 * PAGE)
                state.truncate(length)
                model[length:] = b""
                model.extend(bytes(length - len(model)))
            else:
                offset, data = rng.randrange(0, 4 * PAGE), rng.randbytes(rng.randrange(1, PAGE))
                state.write(data, offset)
                model.extend(bytes(max(0, offset - len(model))))
                model[offset : offset + len(data)] = data
            assert state.read(8 * PAGE, 0) == bytes(model)
            assert path.read_bytes() == durable
        state.flush()
        assert path.read_bytes() == bytes(model)
    finally:
        os.close(state.fd)
        os.close(fd)
