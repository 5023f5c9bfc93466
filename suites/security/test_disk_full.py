"""Issue 19 item 9: a full disk names the file it could not write.

A write's ENOSPC (or EFBIG past a file size limit) carries no file name, and "No space left
on device" alone does not say which disk filled up. The trainer's checkpoint writer
(state.pt) and datagen's shard writer (videos.npy, labels.npy) re-raise it naming the file,
errno kept; the CLIs then say so and exit 1 ("failed": the environment's error, committed
data intact for a rerun), without a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from preflight_examples.datagen.streamio import HashingWriter

from suites.examples.trainer.conftest import fit_args, write_tiny_dataset
from suites.security.conftest import Result

CHILD_TIMEOUT_S = 120.0
MOUNT_TIMEOUT_S = 30.0
# Room for the run's small files (a page each) but not for the first state.pt (~38 KB).
TMPFS_BYTES = 40 * 1024
FILE_LIMIT_BYTES = 100_000  # below one shard's videos.npy, above every other file
BIG_SHARDS = (
    "--samples", "8", "--frames", "16", "--size", "64", "--channels", "1",
    "--shard-size", "4", "--workers", "1",
)  # fmt: skip


def test_shard_writer_names_the_file_on_enospc() -> None:
    # /dev/full fails every write with ENOSPC: the real errno, no filesystem needed.
    fd = os.open("/dev/full", os.O_WRONLY | os.O_CLOEXEC)
    try:
        writer = HashingWriter(fd, path="/data/shards/00003/videos.npy")
        writer.write(b"x" * 10_000)
        with pytest.raises(OSError) as raised:
            writer.close()
    finally:
        os.close(fd)
    assert raised.value.errno == errno.ENOSPC
    assert raised.value.filename == "/data/shards/00003/videos.npy"
    assert "videos.npy" in str(raised.value)


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """RLIMIT_FSIZE for this process (SIGXFSZ ignored: writes fail with EFBIG instead)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_checkpoint_writer_names_state_pt_when_the_write_fails(tmp_path: Path) -> None:
    from preflight_examples.trainer.checkpoint import STATE_NAME, write_committed

    directory = tmp_path / "checkpoints" / "step-00000005"
    with file_size_limit(4096), pytest.raises(OSError) as raised:
        write_committed(directory, b"\0" * 65536, {"kind": "trainer-checkpoint"}, {})
    assert raised.value.errno == errno.EFBIG
    assert raised.value.filename == str(directory / STATE_NAME)


def _limit_child_files() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # inherited through exec
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT_BYTES, FILE_LIMIT_BYTES))


def test_datagen_on_a_full_disk_names_the_shard_file(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "preflight_examples.datagen.cli", "generate",
         "--out", str(tmp_path / "ds"),
         *BIG_SHARDS],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        preexec_fn=_limit_child_files,
        check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert f"File too large: '{tmp_path / 'ds' / 'shards' / '00000' / 'videos.npy'}'" in (
        done.stderr
    )
    assert "the disk is full" in done.stderr and "Traceback" not in done.stderr


@contextlib.contextmanager
def small_tmpfs(where: Path, size_bytes: int) -> Iterator[Path]:
    """A size-limited tmpfs at ``where`` (root only), unmounted on the way out."""
    where.mkdir()
    mount = shutil.which("mount")
    if os.geteuid() != 0 or mount is None:
        pytest.skip("a small tmpfs needs root and mount(8)")
    argv = [mount, "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(where)]
    made = subprocess.run(argv, capture_output=True, text=True, timeout=MOUNT_TIMEOUT_S)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=MOUNT_TIMEOUT_S)


def test_trainer_on_a_full_disk_names_state_pt(
    tmp_path: Path, trainer: Callable[..., Result]
) -> None:
    data = write_tiny_dataset(tmp_path / "ds")
    with small_tmpfs(tmp_path / "disk", TMPFS_BYTES) as disk:
        done = trainer(*fit_args(data, disk / "run", 10))
    assert done.returncode == 1, done.stderr
    state = disk / "run" / "checkpoints" / "step-00000005" / "state.pt"
    assert f"No space left on device: '{state}'" in done.stderr
    assert "Traceback" not in done.stderr
