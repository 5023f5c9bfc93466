"""The worker processes: take shards from the task queue, render them, commit them.

A worker renders shard k+1 while a background thread commits shard k (waits for its last
writes, fsyncs, writes the manifest). Commits are where a busy disk makes a process wait,
and overlapping them with rendering is what keeps checkpointing nearly free.

Every outcome goes back to the parent as a small message on the results queue; nothing is
raised across the process boundary. A worker killed outright is noticed by the parent
through its exit code.
"""

from __future__ import annotations

import ctypes
import errno
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from preflight.durable import VerifyError
from preflight_examples.datagen.config import GenConfig
from preflight_examples.datagen.plan import ShardSpec
from preflight_examples.datagen.store import PendingShard, check_shard, start_shard

PR_SET_PDEATHSIG = 1
ERROR_TEXT_CHARS_MAX = 2000
# A full disk, a quota or a file size limit: more shards would fail the same way.
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
TASK_POLL_S = 0.2
# One shard's commit (last writes, fsyncs, manifest) beyond this means a hung disk.
COMMIT_WAIT_S_MAX = 600.0
COMMITS_IN_FLIGHT_MAX = 3


@dataclass(frozen=True)
class TaskResult:
    kind: str  # "generate" | "verify"
    index: int
    ok: bool
    error: str | None = None
    path: str | None = None  # the file that failed verification
    disk_full: bool = False
    seconds: float = 0.0
    direct_io: bool = False
    videos_sha256: str | None = None


@dataclass(frozen=True)
class Started:
    """A worker took a task (so the parent knows whose shards die with it)."""

    pid: int
    index: int


@dataclass(frozen=True)
class WorkerExit:
    pid: int


def _die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this worker when the parent dies (even by SIGKILL), so a
    killed run leaves no orphans holding memory or writing into the directory."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the task loop's parent check remains
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def init_worker(parent_pid: int) -> None:
    """The parent alone decides when to stop (SIGTERM, Ctrl-C reach the whole group)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_pid)


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:ERROR_TEXT_CHARS_MAX]


def _failed(kind: str, spec: ShardSpec, exc: BaseException) -> TaskResult:
    disk_full = isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS
    return TaskResult(kind, spec.index, False, _error_text(exc), disk_full=disk_full)


class Committer:
    """Commits shards on background threads, a few at a time.

    More than one commit may be in flight: with small shards a commit (mostly waiting for
    the disk) can take longer than rendering the next shard, and concurrent fsyncs share
    the filesystem's journal commits.
    """

    def __init__(self, report: Callable[[TaskResult], None]) -> None:
        self._report = report
        self._threads: list[threading.Thread] = []

    def submit(self, pending: PendingShard, started_s: float) -> None:
        self._reap(COMMITS_IN_FLIGHT_MAX - 1)  # bounded memory: each holds write buffers
        thread = threading.Thread(
            target=self._commit, args=(pending, started_s), name="datagen-commit", daemon=True
        )
        thread.start()
        self._threads.append(thread)

    def wait(self) -> None:
        self._reap(0)

    def _reap(self, keep: int) -> None:
        """Join the oldest commits until at most ``keep`` are running."""
        while len(self._threads) > keep:  # bounded by the list's length
            oldest = self._threads.pop(0)
            oldest.join(COMMIT_WAIT_S_MAX)
            if oldest.is_alive():
                raise TimeoutError(f"a shard commit did not finish within {COMMIT_WAIT_S_MAX} s")

    def _commit(self, pending: PendingShard, started_s: float) -> None:
        spec = pending.spec
        try:
            written = pending.commit()
        except (Exception, MemoryError) as exc:
            self._report(_failed("generate", spec, exc))
            return
        seconds = time.monotonic() - started_s
        self._report(
            TaskResult(
                "generate",
                spec.index,
                True,
                seconds=seconds,
                direct_io=written.direct_io,
                videos_sha256=written.videos_sha256,
            )
        )


def run_task(
    out: Path, cfg: GenConfig, kind: str, spec: ShardSpec, committer: Committer
) -> TaskResult | None:
    """Do one task; a generated shard's result comes later, from its commit."""
    started_s = time.monotonic()
    if kind == "verify":
        try:
            check_shard(out, cfg, spec)
        except VerifyError as exc:
            return TaskResult("verify", spec.index, False, exc.reason, path=exc.path)
        except (Exception, MemoryError) as exc:
            return _failed("verify", spec, exc)
        return TaskResult("verify", spec.index, True, seconds=time.monotonic() - started_s)
    try:
        pending = start_shard(out, cfg, spec)
    except (Exception, MemoryError) as exc:
        return _failed("generate", spec, exc)
    committer.submit(pending, started_s)
    return None


def worker_main(
    out: str, cfg_json: dict[str, Any], tasks: Any, results: Any, stop: Any, parent_pid: int
) -> None:
    """Process entry point: tasks until the sentinel, a stop request or the parent's end."""
    init_worker(parent_pid)
    root, cfg, pid = Path(out), GenConfig(**cfg_json), os.getpid()
    committer = Committer(results.put)
    try:
        # Bounded by the task stream: ends at the sentinel, on stop, or without a parent.
        while not stop.is_set() and os.getppid() == parent_pid:
            try:
                item = tasks.get(timeout=TASK_POLL_S)
            except queue.Empty:
                continue
            if item is None:
                break
            kind, spec = item
            results.put(Started(pid, spec.index))
            result = run_task(root, cfg, kind, spec, committer)
            if result is not None:
                results.put(result)
    finally:
        committer.wait()
        results.put(WorkerExit(pid))
        results.close()
        results.join_thread()  # every message is in the pipe before the process ends
