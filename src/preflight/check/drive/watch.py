"""What the harness sees of a running attempt without inotify: its published progress,
checkpoint files open for writing (polled through psutil), and checkpoint-file changes
(the checkpoint interval). Every read is bounded."""

from __future__ import annotations

import glob
import os
import time
from fnmatch import fnmatch
from pathlib import Path
from typing import TypedDict

import psutil

from preflight.run.job import Run, RunError
from preflight.run.progress import RegexProgress

GLOB_MATCHES_MAX = 100_000
WRITE_MODES = ("w", "a", "r+", "w+", "a+")


def stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class ProgressProbe:
    """The attempt's own progress: a progress file counts only once this attempt replaced
    it, so a resumed run is never credited with the killed run's last value. A regex on
    stdout is followed by its own reader, so every printed value is seen, in order (the
    first one is the resume point even when later lines came before a poll)."""

    def __init__(self, run: Run, path: Path | None) -> None:
        self.run = run
        self.path = path
        self.baseline = stat_key(path) if path is not None else None
        self.fresh = path is None or self.baseline is None
        regex = run.spec.progress_regex
        self.regex = (
            RegexProgress(run.stdout_path, regex) if path is None and regex is not None else None
        )

    def read_all(self) -> list[tuple[int, int]]:
        if self.regex is not None:
            return [(p.done, p.total) for p in self.regex.read_all()]
        value = self.read()
        return [] if value is None else [value]

    def read(self) -> tuple[int, int] | None:
        if self.regex is not None:
            values = self.read_all()
            return values[-1] if values else None
        if not self.fresh:
            assert self.path is not None
            if stat_key(self.path) == self.baseline:
                return None
            self.fresh = True
        return self.run.progress()


def expand(globs: list[str]) -> list[Path]:
    found: set[Path] = set()
    for pattern in globs:
        for name in glob.iglob(pattern):
            found.add(Path(name))
            if len(found) > GLOB_MATCHES_MAX:
                raise RunError(f"checkpoint globs match more than {GLOB_MATCHES_MAX} files")
    return sorted(found)


def is_checkpoint_write(path: str, globs: list[str]) -> bool:
    """A file being written is a checkpoint write when it matches a checkpoints glob, or is
    a temp sibling of one (``.ckpt.json.tmp-12``) in a matching directory (pure)."""
    for pattern in globs:
        if fnmatch(path, pattern):
            return True
        directory, base = os.path.split(pattern)
        if fnmatch(os.path.dirname(path), directory) and fnmatch(
            os.path.basename(path), f"*{base}*"
        ):
            return True
    return False


class WriteWatcher:
    """Sees checkpoint write windows: a checkpoint file open for writing in the job's
    process tree (psutil), or a checkpoint file that shrank (rewritten in place)."""

    TREE_REFRESH_S = 0.1  # walking /proc for children is the costly part: not every poll

    def __init__(self, pid: int, globs: list[str]) -> None:
        self.globs = globs
        self.root = psutil.Process(pid)
        self.members: list[psutil.Process] = [self.root]
        self.members_at_s = 0.0
        self.sizes: dict[Path, int] = {}
        self.open_before = False
        self.windows = 0
        self.windows_by_glob = [0] * len(globs)
        self.path = ""
        self.path_before = ""

    def _tree(self) -> list[psutil.Process]:
        now_s = time.monotonic()
        if now_s - self.members_at_s >= self.TREE_REFRESH_S:
            try:
                self.members = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                self.members = []
            self.members_at_s = now_s
        return self.members

    def still_writing(self, path: str) -> bool:
        return bool(path) and path in open_for_write(self._tree())

    def wait(self, timeout_s: float) -> None:
        time.sleep(timeout_s)

    def close(self) -> None:
        return None

    def _open_for_write(self) -> str:
        for proc in self._tree():
            try:
                files = proc.open_files()
            except psutil.Error:
                continue
            for item in files:
                if item.mode in WRITE_MODES and is_checkpoint_write(item.path, self.globs):
                    return item.path
        return ""

    def _shrunk(self) -> str:
        hit = ""
        for path in expand(self.globs):
            key = stat_key(path)
            if key is None:
                continue
            if key[1] < self.sizes.get(path, 0):
                hit = str(path)
            self.sizes[path] = key[1]
        return hit

    def poll(self) -> bool:
        """True when a write window is open now; counts windows on their opening edge."""
        self.path = self._open_for_write() or self._shrunk()
        now_open = bool(self.path)
        # A new window opens on a closed->open edge, or when another file is being written
        # (a shard write followed at once by the state write must count twice).
        if now_open and (not self.open_before or self.path != self.path_before):
            self.windows += 1
            index = next(
                (i for i, g in enumerate(self.globs) if is_checkpoint_write(self.path, [g])), None
            )
            if index is not None:
                self.windows_by_glob[index] += 1
        self.open_before = now_open
        self.path_before = self.path
        return now_open


class CommitTracker:
    """Progress values at which checkpoint files changed (the checkpoint interval)."""

    def __init__(self, globs: list[str]) -> None:
        self.globs = globs
        self.state: dict[Path, tuple[int, int, int] | None] = {}
        self.dones: list[int] = []

    def poll(self, done: int | None) -> None:
        current = {p: stat_key(p) for p in expand(self.globs) if not p.name.startswith(".")}
        if current != self.state and current and done is not None:
            self.dones.append(done)
        self.state = current


class LeftoverFields(TypedDict):
    leftovers: int
    leftover: str


def leftover_fields(run: Run) -> LeftoverFields:
    """The Attempt fields for the processes an ended run left outside its process group:
    the Run has killed them; the attempt records them so the checker fails it."""
    if not run.leftovers:
        return {"leftovers": 0, "leftover": ""}
    first = run.leftovers[0]
    return {"leftovers": len(run.leftovers), "leftover": f"pid {first.pid} {first.cmdline!r}"}


def vms_bytes(pid: int) -> int | None:
    try:
        return psutil.Process(pid).memory_info().vms
    except psutil.Error:
        return None


def open_for_write(procs: list[psutil.Process]) -> set[str]:
    """Paths the given processes hold open for writing (bounded by their fd tables)."""
    paths: set[str] = set()
    for proc in procs:
        try:
            files = proc.open_files()
        except psutil.Error:
            continue
        paths.update(item.path for item in files if item.mode in WRITE_MODES)
    return paths


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []
