"""Checkpoint write windows, seen where the job really writes (Linux inotify).

Polling a job's open files every few milliseconds misses a write that takes less, and
never sees a temp file that a job later renames onto its checkpoint. inotify reports every
write as it happens: the harness watches the workdir tree (and the checkpoint globs'
directories) and follows, per file, modify -> close-write, and renames onto a checkpoint.

A *window* opens at the first write of a file that is a checkpoint (it matches a
checkpoints glob: a checkpoint rewritten or copied over in place, the dangerous case) or a
temp file whose kind was seen renamed onto a checkpoint (the safe case: write, then rename).
The kind of a temp file is its name with digits and tempfile's random part masked
(:func:`temp_kind`), learnt from the renames of the reference run (or earlier in the same
run). The pure state machine :class:`WindowLog` turns events into windows; :class:`Inotify`
is the thin ctypes I/O. Where inotify is unavailable, runner falls back to polling.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import select
import struct
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

from preflight.check.drive.watch import open_for_write, tree

IN_MODIFY = 0x002
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_Q_OVERFLOW = 0x4000
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
WATCH_MASK = IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE
EVENT_HEADER = struct.Struct("iIII")  # wd, mask, cookie, name length
READ_BYTES = 64 << 10
WATCHES_MAX = 4096  # a job making more directories than this is not watched further
DEPTH_MAX = 8
_TEMPFILE_RE = re.compile(r"tmp[a-z0-9_]{8}")  # tempfile.mkstemp's random names
_DIGITS_RE = re.compile(r"\d+")


def temp_kind(name: str) -> str:
    """What temp files of one kind share: ``.ckpt.tmp-123`` ~ ``.ckpt.tmp-456`` and
    ``tmpab3k9_x2.pt`` ~ ``tmpq0w8e7r6.pt`` (pure)."""
    return _DIGITS_RE.sub("#", _TEMPFILE_RE.sub("tmp?", name))


def glob_index(path: str, globs: list[str]) -> int | None:
    return next((i for i, g in enumerate(globs) if fnmatch(path, g)), None)


@dataclass(frozen=True)
class Event:
    path: str
    mask: int
    cookie: int = 0


@dataclass(frozen=True)
class Window:
    path: str  # the file being written
    glob: int  # which checkpoints glob it ends up as
    target: str  # the checkpoint it is (or, for a temp, the kind it is renamed onto)


@dataclass
class WindowLog:
    """Windows from a stream of events (pure). ``learned`` maps a temp kind (in a
    directory) to the glob it is renamed onto; the reference run's is passed on."""

    globs: list[str]
    root: str = "/"  # keys are relative to it, so a reference run's kinds fit any workdir
    learned: dict[str, int] = field(default_factory=dict)
    windows_by_glob: list[int] = field(default_factory=list)
    open_paths: dict[str, Window] = field(default_factory=dict)
    unclaimed: set[str] = field(default_factory=set)  # written temps of unknown kind
    _moved_from: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.windows_by_glob:
            self.windows_by_glob = [0] * len(self.globs)

    def key(self, path: str) -> str:
        directory, name = os.path.split(path)
        return os.path.join(os.path.relpath(directory, self.root), temp_kind(name))

    def classify(self, path: str) -> Window | None:
        index = glob_index(path, self.globs)
        if index is not None:
            return Window(path, index, path)
        learned = self.learned.get(self.key(path))
        return None if learned is None else Window(path, learned, self.globs[learned])

    def feed(self, event: Event) -> Window | None:
        """The window this event opens, if any."""
        if event.mask & IN_MODIFY:
            if event.path in self.open_paths or event.path in self.unclaimed:
                return None
            window = self.classify(event.path)
            if window is None:
                self.unclaimed.add(event.path)
                return None
            self.open_paths[event.path] = window
            self.windows_by_glob[window.glob] += 1
            return window
        if event.mask & IN_CLOSE_WRITE:
            self.open_paths.pop(event.path, None)
        elif event.mask & IN_MOVED_FROM:
            self._moved_from[event.cookie] = event.path
        elif event.mask & IN_MOVED_TO:
            self._renamed(self._moved_from.pop(event.cookie, ""), event.path)
        return None

    def _renamed(self, source: str, target: str) -> None:
        index = glob_index(target, self.globs)
        if not source or index is None or glob_index(source, self.globs) is not None:
            return
        key = self.key(source)
        if key not in self.learned:
            self.learned[key] = index
        if source in self.unclaimed:
            # Its write came before we knew its kind: it was a window all the same.
            self.unclaimed.discard(source)
            self.windows_by_glob[index] += 1


def parse_events(data: bytes, names: dict[int, str]) -> list[Event]:
    """inotify_event records -> Events with full paths (pure; unknown watches skipped)."""
    events: list[Event] = []
    offset = 0
    while offset + EVENT_HEADER.size <= len(data):
        wd, mask, cookie, length = EVENT_HEADER.unpack_from(data, offset)
        offset += EVENT_HEADER.size
        raw = data[offset : offset + length].split(b"\0", 1)[0]
        offset += length
        directory = names.get(wd)
        if directory is None:
            continue
        path = os.path.join(directory, os.fsdecode(raw)) if raw else directory
        events.append(Event(path, mask, cookie))
    return events


def watch_roots(workdir: Path, globs: list[str]) -> list[Path]:
    """The workdir, and each glob's literal directory prefix outside it."""
    roots = [workdir]
    for pattern in globs:
        parts = Path(pattern).parts
        literal = [p for p in parts[: len(parts) - 1]]
        cut = next((i for i, p in enumerate(literal) if any(c in p for c in "*?[")), None)
        root = Path(*literal[:cut]) if (cut or literal) else None
        if root is not None and workdir not in (root, *root.parents) and root not in roots:
            roots.append(root)
    return roots


class Inotify:
    """A non-blocking inotify instance watching directory trees (bounded)."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._add = libc.inotify_add_watch
        self._add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self.fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.names: dict[int, str] = {}
        self.overflowed = False

    def add_tree(self, root: Path, depth: int = 0) -> None:
        if depth > DEPTH_MAX or len(self.names) >= WATCHES_MAX or not root.is_dir():
            return
        wd = self._add(self.fd, os.fsencode(root), WATCH_MASK)
        if wd < 0:
            return  # vanished or not permitted: nothing to see there
        self.names[wd] = str(root)
        try:
            children = [e for e in os.scandir(root) if e.is_dir(follow_symlinks=False)]
        except OSError:
            return
        for entry in children[:WATCHES_MAX]:
            self.add_tree(Path(entry.path), depth + 1)

    def read(self, timeout_s: float) -> list[Event]:
        """Events ready within ``timeout_s``; new directories are watched as they appear."""
        ready, _, _ = select.select([self.fd], [], [], timeout_s)
        if not ready:
            return []
        try:
            data = os.read(self.fd, READ_BYTES)
        except BlockingIOError:
            return []
        events = parse_events(data, self.names)
        for event in events:
            if event.mask & IN_Q_OVERFLOW:
                self.overflowed = True
            if event.mask & IN_CREATE and event.mask & IN_ISDIR:
                self.add_tree(Path(event.path))
        return events

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def inotify_available() -> bool:
    try:
        Inotify().close()
    except (OSError, AttributeError):
        return False
    return True


class InotifyWatcher:
    """Write windows of one attempt as inotify reports them; the same face as the polling
    WriteWatcher (poll, windows, windows_by_glob, path, still_writing, wait, close)."""

    def __init__(
        self,
        pid: int,
        workdir: Path,
        globs: list[str],
        only_glob: int | None = None,
        learned: dict[str, int] | None = None,
    ) -> None:
        self.pid = pid
        self.only_glob = only_glob
        self.log = WindowLog(globs, str(workdir), dict(learned or {}))
        self.inotify = Inotify()
        for root in watch_roots(workdir, globs):
            self.inotify.add_tree(root)
        self.path = ""

    @property
    def windows(self) -> int:
        counts = self.log.windows_by_glob
        return sum(counts) if self.only_glob is None else counts[self.only_glob]

    @property
    def windows_by_glob(self) -> list[int]:
        return self.log.windows_by_glob

    @property
    def learned(self) -> dict[str, int]:
        return self.log.learned

    def _feed(self, events: list[Event]) -> None:
        for event in events:
            self.log.feed(event)

    def poll(self) -> bool:
        """True when a window (of the glob asked for) is open now."""
        self._feed(self.inotify.read(0.0))
        open_now = [
            w.path
            for w in self.log.open_paths.values()
            if self.only_glob is None or w.glob == self.only_glob
        ]
        self.path = open_now[-1] if open_now else ""
        return bool(open_now)

    def wait(self, timeout_s: float) -> None:
        """Sleep until the next write event (or the timeout): react within the write."""
        self._feed(self.inotify.read(timeout_s))

    def still_writing(self, path: str) -> bool:
        real = os.path.realpath(path)
        return real in {os.path.realpath(p) for p in open_for_write(tree(self.pid))}

    def close(self) -> None:
        self.inotify.close()
