"""The parent's side of the worker processes: start, feed, listen, stop.

Workers are started with ``spawn`` (a forked worker would inherit the run lock's descriptor
and keep the directory locked after the parent is SIGKILLed) from the main thread (the
kernel's parent-death signal is tied to the thread that created the child).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import time
from pathlib import Path
from typing import Any

from preflight_examples.datagen.config import GenConfig
from preflight_examples.datagen.plan import ShardSpec
from preflight_examples.datagen.worker import WorkerExit, worker_main

START_METHOD = "spawn"
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
JOIN_S_MAX = 5.0


class WorkerPool:
    """``workers`` processes reading (kind, ShardSpec) tasks and writing result messages."""

    def __init__(self, out: Path, cfg: GenConfig, workers: int) -> None:
        if workers <= 0:
            raise ValueError(f"WorkerPool needs workers > 0, got {workers}")
        for name in THREAD_ENV:  # workers render with numpy only; no BLAS thread pools
            os.environ.setdefault(name, "1")
        ctx = multiprocessing.get_context(START_METHOD)
        self._tasks = ctx.Queue()
        self._results = ctx.Queue()
        self._stop = ctx.Event()
        args = (str(out), cfg.to_json(), self._tasks, self._results, self._stop, os.getpid())
        self._procs = [
            ctx.Process(target=worker_main, args=args, name=f"datagen-worker-{i}", daemon=True)
            for i in range(workers)
        ]
        for proc in self._procs:
            proc.start()
        self.exited: set[int] = set()

    def put(self, kind: str, spec: ShardSpec) -> None:
        self._tasks.put((kind, spec))

    def get(self, timeout_s: float) -> Any | None:
        """The next message, or None when none came within ``timeout_s``."""
        try:
            message = self._results.get(timeout=timeout_s)
        except queue.Empty:
            return None
        if isinstance(message, WorkerExit):
            self.exited.add(message.pid)
        return message

    def dead(self) -> list[int]:
        """Pids of workers that ended without saying goodbye (killed, crashed, OOM)."""
        return [
            p.pid
            for p in self._procs
            if p.exitcode is not None and p.exitcode != 0 and p.pid is not None
        ]

    def all_exited(self) -> bool:
        return all(p.exitcode is not None for p in self._procs)

    def request_stop(self) -> None:
        """Workers finish (render and commit) what they hold, then exit."""
        self._stop.set()

    def finish(self) -> None:
        """No more tasks: one sentinel per worker."""
        for _ in self._procs:
            self._tasks.put(None)

    def close(self) -> None:
        """Join the workers briefly, then kill any still running; release the queues."""
        deadline_s = time.monotonic() + JOIN_S_MAX
        for proc in self._procs:
            proc.join(max(0.0, deadline_s - time.monotonic()))
        for proc in self._procs:
            if proc.exitcode is None:
                with contextlib.suppress(OSError):
                    proc.kill()
                proc.join(JOIN_S_MAX)
        for channel in (self._tasks, self._results):
            channel.cancel_join_thread()  # never block exit on undelivered messages
            channel.close()
