"""Sampling a whole process tree with psutil, on a background thread, at a fixed interval.

The tree is the job and every descendant still attached to it; each sample sums over the
tree, so a leak in a worker process counts as much as one in the parent. The sampler is
cheap by construction so that its overhead on the job stays under 1%
(benchmarks/bench_sampler.py): the tree is walked from its root, not by scanning every
process on the host, and the one expensive figure, USS (the kernel walks the page tables
for /proc/PID/smaps_rollup: ~0.5 ms per 50 MB), is refreshed only as often as a fixed CPU
budget allows, so a job with tens of GB is sampled as cheaply as a small one.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import psutil

DESCENDANTS_MAX = 10_000  # a fork bomb must not make one tick unbounded
JOIN_TIMEOUT_S = 5.0  # a sampling tick is milliseconds; a thread stuck longer is a bug
SAMPLES_MAX = 100_000  # past this the series is halved and the interval doubled (soaks)
USS_CPU_BUDGET = 0.004  # fraction of one core that USS reads may take, per process


@dataclass(frozen=True)
class Sample:
    """One observation of the whole tree. Counters (cpu, bytes) are cumulative."""

    t_s: float  # seconds since the run started
    rss_bytes: int
    uss_bytes: int  # private memory, what a leak grows (refreshed within USS_CPU_BUDGET)
    cpu_s: float  # user + system, including reaped children
    open_files: int  # open file descriptors of every kind
    threads: int
    read_bytes: int  # bytes passed through read-like syscalls (rchar)
    write_bytes: int  # bytes passed through write-like syscalls (wchar)
    progress_done: int | None
    n_procs: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Totals:
    rss_bytes: int = 0
    uss_bytes: int = 0
    cpu_s: float = 0.0
    open_files: int = 0
    threads: int = 0
    read_bytes: int = 0
    write_bytes: int = 0
    n_procs: int = 0


class _UssCache:
    """USS per process, re-read only once its last read's CPU cost fits the budget again."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[int, float]] = {}  # pid -> (uss bytes, next due)

    def read(self, proc: psutil.Process) -> int:
        now_s = time.monotonic()
        cached = self._entries.get(proc.pid)
        if cached is not None and now_s < cached[1]:
            return cached[0]
        cpu_before_s = time.thread_time()
        try:
            uss = int(proc.memory_full_info().uss)
        except psutil.AccessDenied:
            uss = 0
        cost_s = time.thread_time() - cpu_before_s
        self._entries[proc.pid] = (uss, now_s + cost_s / USS_CPU_BUDGET)
        return uss

    def keep_only(self, pids: set[int]) -> None:
        self._entries = {pid: e for pid, e in self._entries.items() if pid in pids}


def _add_process(totals: _Totals, proc: psutil.Process, uss: _UssCache) -> None:
    """Add one process's figures; fields the OS refuses count as zero, not as an error."""
    with proc.oneshot():
        # A zombie reports zeros for everything; it has exited and must not be sampled.
        if proc.status() == psutil.STATUS_ZOMBIE:
            raise psutil.ZombieProcess(proc.pid)
        rss_bytes = proc.memory_info().rss
        # A user process always has resident pages; none means it is exiting (its memory
        # already released, not yet a zombie), and its figures would be a false drop.
        if rss_bytes == 0:
            raise psutil.NoSuchProcess(proc.pid)
        totals.rss_bytes += rss_bytes
        totals.uss_bytes += uss.read(proc)
        cpu = proc.cpu_times()
        totals.cpu_s += cpu.user + cpu.system + cpu.children_user + cpu.children_system
        totals.threads += proc.num_threads()
        try:
            totals.open_files += proc.num_fds()
            io = proc.io_counters()
            totals.read_bytes += getattr(io, "read_chars", io.read_bytes)
            totals.write_bytes += getattr(io, "write_chars", io.write_bytes)
        except psutil.AccessDenied:
            pass
    totals.n_procs += 1


def _children_from_proc(pid: int) -> list[int] | None:
    """Direct children of `pid` from /proc/PID/task/TID/children (every thread may fork);
    None when the kernel lacks that file (CONFIG_PROC_CHILDREN)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    children: list[int] = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as handle:
                children.extend(int(c) for c in handle.read().split())
        except FileNotFoundError:
            if tid == str(pid) and os.path.exists(f"/proc/{pid}"):
                return None  # the main thread is there but the file is not: unsupported
        except OSError:
            continue
    return children


def descendants(pid: int) -> list[int] | None:
    """Every descendant pid, breadth first, at most DESCENDANTS_MAX; None if unsupported.

    Walking the tree from its root costs a few small reads per process, where psutil's
    children() reads /proc/*/stat for every process on the machine: the difference is
    most of the sampler's cost on a busy host."""
    found: list[int] = []
    frontier = [pid]
    while frontier and len(found) < DESCENDANTS_MAX:
        children = _children_from_proc(frontier.pop())
        if children is None:
            return None
        found.extend(children)
        frontier.extend(children)
    return found[:DESCENDANTS_MAX]


class TreeReader:
    """The live members of a process tree, with psutil handles kept between ticks."""

    def __init__(self, root: psutil.Process) -> None:
        self.root = root
        self.uss = _UssCache()
        self._handles: dict[int, psutil.Process] = {root.pid: root}

    def members(self) -> list[psutil.Process]:
        pids = descendants(self.root.pid)
        alive = (
            [self.root, *self.root.children(recursive=True)]
            if pids is None
            else [self.root, *self._handles_for(pids)]
        )
        live = {p.pid for p in alive}
        self._handles = {p.pid: p for p in alive}
        self.uss.keep_only(live)
        return alive

    def _handles_for(self, pids: list[int]) -> list[psutil.Process]:
        handles = []
        for pid in pids:
            handle = self._handles.get(pid)
            if handle is None:
                try:
                    handle = psutil.Process(pid)
                except psutil.NoSuchProcess:
                    continue
            handles.append(handle)
        return handles


def sample_tree(
    root: psutil.Process | TreeReader, t_s: float, progress_done: int | None
) -> Sample | None:
    """One Sample of `root` and its descendants; None once the root is gone."""
    reader = root if isinstance(root, TreeReader) else TreeReader(root)
    totals = _Totals()
    try:
        members = reader.members()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    for proc in members:
        try:
            _add_process(totals, proc, reader.uss)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            if proc is reader.root:
                return None
    return Sample(
        t_s=t_s,
        rss_bytes=totals.rss_bytes,
        uss_bytes=totals.uss_bytes,
        cpu_s=totals.cpu_s,
        open_files=totals.open_files,
        threads=totals.threads,
        read_bytes=totals.read_bytes,
        write_bytes=totals.write_bytes,
        progress_done=progress_done,
        n_procs=totals.n_procs,
    )


class Sampler:
    """Samples a process tree every `interval_s` on a daemon thread until stopped or the
    root exits. `progress_fn` (the job's units done, or None) is read at every tick."""

    def __init__(
        self,
        pid: int,
        interval_s: float = 0.2,
        progress_fn: Callable[[], int | None] | None = None,
        *,
        t0_s: float | None = None,
        samples_max: int = SAMPLES_MAX,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        if samples_max < 2:
            raise ValueError(f"samples_max must be at least 2, got {samples_max}")
        self.pid = pid
        self.interval_s = interval_s
        self.samples_max = samples_max
        self._progress_fn = progress_fn or (lambda: None)
        self._t0_s = time.monotonic() if t0_s is None else t0_s
        self._samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self) -> Sampler:
        """Take the first sample now, in the caller's thread, then sample in the background:
        however short the job, its series is never empty once it was seen alive."""
        try:
            root = TreeReader(psutil.Process(self.pid))
        except psutil.NoSuchProcess:
            return self
        if self._tick(root):
            self._thread = threading.Thread(
                target=self._loop, args=(root,), name=f"preflight-sampler-{self.pid}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self, timeout_s: float = JOIN_TIMEOUT_S) -> None:
        self._stop.set()
        if self._thread is None:
            return
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise RuntimeError(f"sampler for pid {self.pid} did not stop within {timeout_s} s")

    @property
    def samples(self) -> list[Sample]:
        with self._lock:
            return list(self._samples)

    def _loop(self, root: TreeReader) -> None:
        next_tick_s = time.monotonic()
        while True:
            next_tick_s += self.interval_s
            # A tick that overran (loaded machine) starts the next one now, not in a burst.
            next_tick_s = max(next_tick_s, time.monotonic())
            if self._stop.wait(next_tick_s - time.monotonic()):
                return
            try:
                if not self._tick(root):
                    return
            except Exception as exc:  # noqa: BLE001 - kept for the caller; sampling ends
                self.error = exc
                return

    def _tick(self, root: TreeReader) -> bool:
        progress = self._progress_fn()
        sample = sample_tree(root, time.monotonic() - self._t0_s, progress)
        if sample is None:
            return False
        with self._lock:
            self._samples.append(sample)
            if len(self._samples) >= self.samples_max:
                # Keep the whole run at half the resolution rather than only its start.
                self._samples = self._samples[::2]
                self.interval_s *= 2
        return True
