"""What survives a power cut: replay file-system operations, keep two views (pure).

The *volatile* view is what the running job sees (the page cache): every write, rename and
unlink at once. The *durable* view is what a power cut leaves (docs/powerloss.md):

- a file's data is durable as of its last fsync/fdatasync (or sync/syncfs); bytes written
  after it are lost, or, in ``torn`` mode, survive page by page at random;
- a directory entry (create, rename, unlink, mkdir, rmdir) is durable only once its
  directory is fsynced: strict POSIX, as ext4's zero-length-file-after-rename shows;
- everything that existed when the trace started is durable (the harness synced it).

Directories are keyed by inode, not path, so renaming a directory moves one entry. The
model never touches a file; `preflight.check.kinds.powerloss.trace` does the I/O around it.
"""

from __future__ import annotations

import posixpath
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from preflight.check.kinds.powerloss.strace_ops import Op

MODES = ("drop", "keep-names", "torn")
PAGE_BYTES = 4096
ROOT_INO = 0
FINDINGS_MAX = 24


@dataclass
class Inode:
    is_dir: bool
    data: bytearray = field(default_factory=bytearray)  # volatile content (files)
    synced: bytes | None = None  # content at the last fsync; None: never durable
    untracked: bool = False  # changed in a way the model cannot replay (mmap, links)
    cut: bool = False  # truncated below its synced size since the last fsync


@dataclass
class CrashState:
    """The work dir as the power cut leaves it, and what differs from the job's view."""

    files: dict[str, bytes]
    dirs: set[str]
    findings: list[str]


class FsModel:
    """Two namespaces over one set of inodes, fed `Op`s in trace order."""

    def __init__(self, root: str, files: Mapping[str, bytes], dirs: Iterable[str] = ()) -> None:
        self.root = posixpath.normpath(root)
        self.inodes: dict[int, Inode] = {ROOT_INO: Inode(True)}
        self.children: dict[int, dict[str, int]] = {ROOT_INO: {}}  # volatile
        self.durable: dict[int, dict[str, int]] = {ROOT_INO: {}}
        self.notes: list[str] = []
        for rel in sorted(dirs):
            self._mkdirs(rel, durable=True)
        for rel, content in sorted(files.items()):
            parent = self._mkdirs(posixpath.dirname(rel), durable=True)
            ino = self._new(Inode(False, bytearray(content), bytes(content)))
            self.children[parent][posixpath.basename(rel)] = ino
            self.durable[parent][posixpath.basename(rel)] = ino

    # ---- namespace helpers

    def _new(self, inode: Inode) -> int:
        ino = len(self.inodes)
        self.inodes[ino] = inode
        if inode.is_dir:
            self.children[ino], self.durable[ino] = {}, {}
        return ino

    def _mkdirs(self, rel: str, durable: bool) -> int:
        ino = ROOT_INO
        for part in [p for p in rel.split("/") if p]:
            nxt = self.children[ino].get(part)
            if nxt is None:
                nxt = self._new(Inode(True))
                self.children[ino][part] = nxt
                if durable:
                    self.durable[ino][part] = nxt
            ino = nxt
        return ino

    def rel(self, path: str) -> str | None:
        """The path relative to the root, or None outside it (the root itself: "")."""
        path = posixpath.normpath(path)
        if path == self.root:
            return ""
        prefix = self.root.rstrip("/") + "/"
        return path[len(prefix) :] if path.startswith(prefix) else None

    def lookup(self, rel: str) -> tuple[int | None, int | None, str]:
        """(parent dir ino, ino, name) in the volatile view; Nones where missing."""
        if rel == "":
            return None, ROOT_INO, ""
        ino: int | None = ROOT_INO
        parts = rel.split("/")
        for part in parts[:-1]:
            ino = self.children.get(ino, {}).get(part) if ino is not None else None
        if ino is None or ino not in self.children:
            return None, None, parts[-1]
        return ino, self.children[ino].get(parts[-1]), parts[-1]

    # ---- replay

    def apply(self, op: Op) -> None:
        handler = getattr(self, f"_op_{op.kind}", None)
        if handler is not None:
            handler(op)

    def _file(self, path: str) -> Inode | None:
        rel = self.rel(path)
        if rel is None:
            return None
        _, ino, _ = self.lookup(rel)
        return self.inodes[ino] if ino is not None else None

    def _op_create(self, op: Op) -> None:
        rel = self.rel(op.path)
        if rel is None:
            return
        parent, ino, name = self.lookup(rel)
        if parent is None:
            self.notes.append(f"{rel}: created in a directory the trace never saw made")
            return
        if ino is None:
            self.children[parent][name] = self._new(Inode(False))
        elif op.trunc:
            self._truncate(self.inodes[ino], 0)

    def _op_write(self, op: Op) -> None:
        inode = self._file(op.path)
        if inode is None or inode.is_dir:
            return
        start = len(inode.data) if op.offset is None else op.offset
        end = start + len(op.data)
        if end > len(inode.data):
            inode.data.extend(b"\0" * (end - len(inode.data)))
        inode.data[start:end] = op.data

    def _op_trunc(self, op: Op) -> None:
        inode = self._file(op.path)
        if inode is not None and not inode.is_dir:
            self._truncate(inode, op.size)

    @staticmethod
    def _truncate(inode: Inode, size: int) -> None:
        if size < len(inode.synced or b""):
            inode.cut = True
        if size <= len(inode.data):
            del inode.data[size:]
        else:
            inode.data.extend(b"\0" * (size - len(inode.data)))

    def _op_fsync(self, op: Op) -> None:
        rel = self.rel(op.path)
        if rel is None:
            return
        _, ino, _ = self.lookup(rel)
        if ino is None:
            return
        if self.inodes[ino].is_dir:
            self.durable[ino] = dict(self.children[ino])  # its entries, as they are now
        else:
            self.inodes[ino].synced = bytes(self.inodes[ino].data)
            self.inodes[ino].cut = False

    def _op_sync(self, op: Op) -> None:
        for ino, inode in self.inodes.items():
            if inode.is_dir:
                self.durable[ino] = dict(self.children[ino])
            else:
                inode.synced, inode.cut = bytes(inode.data), False

    def _op_rename(self, op: Op) -> None:
        src, dst = self.rel(op.path), self.rel(op.path2)
        if src is None and dst is None:
            return
        if src is None or dst is None:
            self._op_untracked(Op("untracked", op.path2 if src is None else op.path))
            return
        sparent, ino, sname = self.lookup(src)
        dparent, _, dname = self.lookup(dst)
        if sparent is None or ino is None or dparent is None:
            return
        del self.children[sparent][sname]
        self.children[dparent][dname] = ino

    def _op_unlink(self, op: Op) -> None:
        rel = self.rel(op.path)
        if rel is None:
            return
        parent, ino, name = self.lookup(rel)
        if parent is not None and ino is not None:
            del self.children[parent][name]

    _op_rmdir = _op_unlink

    def _op_mkdir(self, op: Op) -> None:
        rel = self.rel(op.path)
        if rel is None:
            return
        parent, ino, name = self.lookup(rel)
        if parent is not None and ino is None:
            self.children[parent][name] = self._new(Inode(True))

    def _op_untracked(self, op: Op) -> None:
        rel = self.rel(op.path)
        if rel is None:
            return
        _, ino, _ = self.lookup(rel)
        if ino is not None:
            self.inodes[ino].untracked = True
        self.notes.append(f"{rel}: changed in a way the trace cannot replay")

    # ---- views

    def tree(self, durable: bool) -> dict[str, int]:
        """relpath -> ino of every entry reachable from the root in one view."""
        table = self.durable if durable else self.children
        out: dict[str, int] = {}
        stack = [("", ROOT_INO)]
        while stack:
            prefix, dino = stack.pop()
            for name, ino in table.get(dino, {}).items():
                rel = f"{prefix}{name}"
                out[rel] = ino
                if self.inodes[ino].is_dir:
                    stack.append((f"{rel}/", ino))
        return out

    def untracked_against(self, on_disk: Mapping[str, bytes]) -> list[str]:
        """Mark files whose volatile content differs from what the disk holds (mmap writes,
        a cut -s string): their durable content cannot be known, so they keep the disk's."""
        mismatched = []
        for rel, ino in self.tree(durable=False).items():
            inode = self.inodes[ino]
            if inode.is_dir or rel not in on_disk or bytes(inode.data) == on_disk[rel]:
                continue
            inode.untracked = True
            inode.data = bytearray(on_disk[rel])
            mismatched.append(rel)
        return mismatched


def durable_content(inode: Inode, mode: str, rng: random.Random) -> bytes:
    """A file's bytes after the cut: as of its last fsync; ``torn`` mixes in later pages.
    Where metadata persists (keep-names, torn), a truncation since the fsync persisted too
    (ext4's zero-length file after an in-place rewrite): the old bytes are gone."""
    if inode.untracked:
        return bytes(inode.data)
    old = b"" if inode.cut and mode != "drop" else inode.synced or b""
    new = bytes(inode.data)
    if mode != "torn" or old == new:
        return old
    length = rng.choice((len(old), len(new)))
    pages = []
    for start in range(0, length, PAGE_BYTES):
        take_new = rng.random() < 0.5
        page = (new if take_new else old)[start : start + PAGE_BYTES]
        pages.append(page.ljust(min(PAGE_BYTES, length - start), b"\0"))
    return b"".join(pages)[:length]


def crash_state(model: FsModel, mode: str, seed_text: str) -> CrashState:
    """The work dir after a power cut now, in ``mode`` (drop: un-fsynced directory entries
    are lost too; keep-names and torn: every entry change persisted, in order)."""
    assert mode in MODES, mode
    rng = random.Random(f"powerloss:{seed_text}")
    names = model.tree(durable=mode == "drop")
    files: dict[str, bytes] = {}
    dirs: set[str] = set()
    for rel, ino in sorted(names.items()):
        inode = model.inodes[ino]
        if inode.is_dir:
            dirs.add(rel)
        else:
            files[rel] = durable_content(inode, mode, rng)
    return CrashState(files, dirs, findings(model, names, files, dirs))


def findings(
    model: FsModel, names: Mapping[str, int], files: Mapping[str, bytes], dirs: set[str]
) -> list[str]:
    """What the cut took, file by file, against what the job last saw (sorted, bounded)."""
    volatile = model.tree(durable=False)
    out: list[str] = []
    for rel, ino in sorted(volatile.items()):
        inode = model.inodes[ino]
        if inode.is_dir:
            if rel not in dirs:
                out.append(f"{rel}/: lost (its entry's directory was never fsynced after it)")
            continue
        if rel not in files:
            out.append(f"{rel}: lost (its directory was never fsynced after the name changed)")
        elif names[rel] != ino:
            out.append(f"{rel}: an older file (the rename onto it was never fsynced)")
        elif files[rel] != bytes(inode.data):
            kept = len(files[rel])
            out.append(f"{rel}: {kept} bytes, not the {len(inode.data)} written (not fsynced)")
    durable_only = sorted(set(files) - set(volatile))
    out += [f"{rel}: came back (its removal or rename was never fsynced)" for rel in durable_only]
    if len(out) > FINDINGS_MAX:
        out = out[:FINDINGS_MAX] + [f"... and {len(out) - FINDINGS_MAX} more"]
    return out


def replay(model: FsModel, ops: Iterable[Op]) -> Op | None:
    """Apply ops up to the crash point; returns the crash op when the trace holds one.
    Ops other threads made after it happened too (they ran until the harness stopped
    them), so they are applied."""
    crash = None
    for op in ops:
        if op.injected:
            crash = crash or op
            continue
        model.apply(op)
    return crash
