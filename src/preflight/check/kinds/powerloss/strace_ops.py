"""Parse an ``strace -f -y -xx`` trace into file-system operations (pure).

The power-loss fault's trace mode runs the job under strace with the options of
``STRACE_OPTIONS``: every string is printed in hex (``-xx``), so paths and written bytes
decode the same way, and every fd argument carries the path it names (``-y``). This module
turns those lines into `Op` records with absolute paths and, for writes, the bytes and the
file offset; `preflight.check.kinds.powerloss.durable_state` replays them. Nothing here touches
a file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

# Syscalls that change what a file or directory holds, or make it durable. Reads are not
# traced: they change nothing, and leaving them out keeps strace's cost down.
TRACED = (
    "open,openat,creat,write,pwrite64,writev,pwritev,pwritev2,lseek,ftruncate,truncate,"
    "fallocate,fsync,fdatasync,sync,syncfs,msync,rename,renameat,renameat2,unlink,unlinkat,"
    "mkdir,mkdirat,rmdir,chdir,fchdir,copy_file_range,sendfile,splice,link,linkat,symlink,"
    "symlinkat"
)
# The crash points: entry to the Nth of these in one thread (strace counts per thread).
DURABILITY = ("fsync", "fdatasync", "rename", "renameat", "renameat2")
STRING_BYTES_MAX = 1 << 24  # -s: a longer write is printed cut, and its file is untracked
STRACE_OPTIONS = (
    "-f", "-y", "-qq", "-xx", "--seccomp-bpf", "-e", "signal=none",
    "-s", str(STRING_BYTES_MAX), "-e", f"trace={TRACED}",
)  # fmt: skip

LINE_RE = re.compile(r"^(\d+)\s+(.*)$")
CALL_RE = re.compile(r"^([a-z_0-9]+)\((.*)\)\s+=\s+(.*)$", re.S)
UNFINISHED = " <unfinished ...>"
RESUMED_RE = re.compile(r"^<\.\.\. ([a-z_0-9]+) resumed>(.*)$", re.S)
FD_RE = re.compile(r"^(-?\d+|AT_FDCWD)<(.*)>$", re.S)
HEX_RE = re.compile(r"\\x([0-9a-f]{2})")
DELETED = " (deleted)"
KILLED = "+++ killed by SIGKILL +++"
O_CREAT_FLAGS = ("O_CREAT", "O_TRUNC", "O_APPEND")


@dataclass(frozen=True)
class Op:
    """One effect, in trace order. ``kind``: create (open O_CREAT, maybe O_TRUNC), trunc,
    write, fsync, rename, unlink, mkdir, rmdir, sync (all durable), untracked (an effect
    the model cannot replay: mmap, sendfile, links)."""

    kind: str
    path: str
    path2: str = ""  # rename: the destination
    offset: int | None = None  # write: None means at the end (O_APPEND or unknown)
    data: bytes = b""
    size: int = 0  # trunc: the new size
    trunc: bool = False  # create: O_TRUNC
    line: int = 0
    injected: bool = False  # the crash point itself (never executed)


@dataclass
class ParseState:
    """What the parser remembers between lines: cwd per pid, file positions per fd."""

    cwd0: str
    cwds: dict[str, str] = field(default_factory=dict)
    positions: dict[tuple[str, str], int] = field(default_factory=dict)  # (fd, path) -> pos
    appending: set[tuple[str, str]] = field(default_factory=set)
    partial: dict[str, str] = field(default_factory=dict)  # pid -> unfinished call text
    killed: list[str] = field(default_factory=list)  # pids strace saw die by SIGKILL


def decode(text: str) -> bytes:
    """``\\x68\\x69`` (strace -xx) -> b"hi"; other characters are taken as they are."""
    if "\\x" not in text:
        return text.encode("utf-8", "surrogateescape")
    out = bytearray()
    pos = 0
    for match in HEX_RE.finditer(text):
        out += text[pos : match.start()].encode("utf-8", "surrogateescape")
        out.append(int(match.group(1), 16))
        pos = match.end()
    out += text[pos:].encode("utf-8", "surrogateescape")
    return bytes(out)


def split_args(text: str) -> list[str]:
    """Top-level comma-separated arguments (quotes, <>, [], {} nest)."""
    args, depth, quoted, start = [], 0, False, 0
    i = 0
    while i < len(text):
        ch = text[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch in "<[{(":
            depth += 1
        elif ch in ">]})":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(text[start:i].strip())
            start = i + 1
        i += 1
    tail = text[start:].strip()
    return [*args, tail] if tail else args


def string_arg(arg: str) -> tuple[bytes, bool]:
    """A quoted strace string -> (bytes, complete); ``"..."...`` was cut by -s."""
    cut = arg.endswith("...")
    body = arg[:-3] if cut else arg
    if not (body.startswith('"') and body.endswith('"')):
        return b"", False
    return decode(body[1:-1]), not cut


def fd_arg(arg: str) -> tuple[str, str]:
    """``3<\\x2f...>`` -> ("3", "/path"); a pipe or socket gives a path not starting at /."""
    match = FD_RE.match(arg)
    if not match:
        return arg, ""
    path = decode(match.group(2)).decode("utf-8", "surrogateescape")
    return match.group(1), path


def _join(base: str, name: str) -> str:
    return os.path.normpath(name if name.startswith("/") else os.path.join(base, name))


def _path_arg(state: ParseState, pid: str, arg: str) -> str:
    data, _ = string_arg(arg)
    return _join(state.cwds.get(pid, state.cwd0), data.decode("utf-8", "surrogateescape"))


def _at_path(state: ParseState, pid: str, dirfd: str, arg: str) -> str:
    _, base = fd_arg(dirfd)
    if dirfd.startswith("AT_FDCWD") and base:
        state.cwds[pid] = base
    data, _ = string_arg(arg)
    name = data.decode("utf-8", "surrogateescape")
    return _join(base or state.cwds.get(pid, state.cwd0), name)


def _ret_int(ret: str) -> int | None:
    head = ret.split(" ", 1)[0]
    try:
        return int(head)
    except ValueError:
        return None


def _file_of(arg: str) -> tuple[str, str, bool]:
    """(fd, path, deleted) of an fd argument."""
    fd, path = fd_arg(arg)
    deleted = path.endswith(DELETED)
    return fd, path[: -len(DELETED)] if deleted else path, deleted


def _open_op(state: ParseState, pid: str, name: str, args: list[str], ret: str) -> Op | None:
    if name == "openat":
        path, flags = _at_path(state, pid, args[0], args[1]), args[2]
    elif name == "open":
        path, flags = _path_arg(state, pid, args[0]), args[1]
    else:  # creat(path, mode)
        path, flags = _path_arg(state, pid, args[0]), "O_CREAT|O_WRONLY|O_TRUNC"
    fd, real = fd_arg(ret.split(" ", 1)[0])
    if not real:
        return None
    state.positions[(fd, real)] = 0
    if "O_APPEND" in flags:
        state.appending.add((fd, real))
    else:
        state.appending.discard((fd, real))
    if not any(f in flags for f in ("O_CREAT", "O_TRUNC")):
        return None
    return Op("create", real or path, trunc="O_TRUNC" in flags)


def _write_op(name: str, args: list[str], ret: str, state: ParseState) -> Op | None:
    fd, path, deleted = _file_of(args[0])
    count = _ret_int(ret)
    if not path.startswith("/") or deleted or count is None or count < 0:
        return None
    key = (fd, path)
    data, complete = _payload(name, args[1])
    if name in ("write", "writev"):
        # At the fd's position; None (the end) for O_APPEND or a position not seen opened.
        offset = state.positions.get(key) if key not in state.appending else None
        if offset is not None:
            state.positions[key] = offset + count
    else:  # pwrite64(fd, buf, count, offset), pwritev(fd, iov, n, offset[, flags])
        offset = _ret_int(args[3]) if len(args) > 3 else None
    if not complete or len(data) < count:
        return Op("untracked", path)
    return Op("write", path, offset=offset, data=data[:count])


def _payload(name: str, arg: str) -> tuple[bytes, bool]:
    if name in ("write", "pwrite64"):
        return string_arg(arg)
    if not arg.startswith("["):
        return b"", False
    data, complete = b"", not arg.endswith("...]")
    for part in re.findall(r'iov_base=("(?:[^"\\]|\\.)*"(?:\.\.\.)?)', arg):
        chunk, whole = string_arg(part)
        data += chunk
        complete = complete and whole
    return data, complete


def _fd_op(name: str, args: list[str], ret: str, state: ParseState) -> Op | None:
    fd, path, deleted = _file_of(args[0])
    if not path.startswith("/") or deleted:
        return None
    if name == "lseek":
        value = _ret_int(ret)
        if value is not None and value >= 0:
            state.positions[(fd, path)] = value
        return None
    if name == "ftruncate":
        return Op("trunc", path, size=_ret_int(args[1]) or 0)
    if name in ("fsync", "fdatasync"):
        return Op("fsync", path)
    if name == "fallocate":
        mode, offset, length = (_ret_int(a) or 0 for a in args[1:4])
        return Op("write", path, offset=offset, data=b"\0" * length) if mode == 0 else None
    return Op("untracked", path)  # msync, syncfs handled by the caller


def _path_op(state: ParseState, pid: str, name: str, args: list[str]) -> Op | None:
    if name == "rename":
        return Op("rename", _path_arg(state, pid, args[0]), _path_arg(state, pid, args[1]))
    if name in ("renameat", "renameat2"):
        src = _at_path(state, pid, args[0], args[1])
        dst = _at_path(state, pid, args[2], args[3])
        if len(args) > 4 and "RENAME_EXCHANGE" in args[4]:
            return Op("untracked", src, dst)
        return Op("rename", src, dst)
    if name in ("unlink", "rmdir"):
        return Op(name, _path_arg(state, pid, args[0]))
    if name == "unlinkat":
        kind = "rmdir" if "AT_REMOVEDIR" in args[2] else "unlink"
        return Op(kind, _at_path(state, pid, args[0], args[1]))
    if name == "mkdir":
        return Op("mkdir", _path_arg(state, pid, args[0]))
    if name == "mkdirat":
        return Op("mkdir", _at_path(state, pid, args[0], args[1]))
    if name == "truncate":
        return Op("trunc", _path_arg(state, pid, args[0]), size=_ret_int(args[1]) or 0)
    if name == "chdir":
        state.cwds[pid] = _path_arg(state, pid, args[0])
        return None
    return None


FD_CALLS = ("lseek", "ftruncate", "fsync", "fdatasync", "fallocate", "msync", "fchdir")
UNTRACKED_OUT = {"copy_file_range": 2, "sendfile": 0, "splice": 2}  # index of the out fd
LINKS = ("link", "linkat", "symlink", "symlinkat")


def parse_call(state: ParseState, pid: str, text: str, number: int) -> Op | None:
    """One complete ``name(args) = ret`` -> an Op, or None when it changes nothing here."""
    match = CALL_RE.match(text)
    if not match:
        return None
    name, raw_args, ret = match.groups()
    args = split_args(raw_args)
    injected = "(INJECTED)" in ret or (ret.strip() == "?" and name in DURABILITY)
    if injected:
        return Op("crash", "", line=number, injected=True)
    if ret.startswith("-1 ") or ret.strip() == "?":
        return None  # failed: no effect
    op = _dispatch(state, pid, name, args, ret)
    return None if op is None else Op(**{**op.__dict__, "line": number})


def _dispatch(state: ParseState, pid: str, name: str, args: list[str], ret: str) -> Op | None:
    if args and args[0].startswith("AT_FDCWD<"):
        _at_path(state, pid, args[0], '""')  # every AT_FDCWD<path> tells the cwd
    if name in ("open", "openat", "creat"):
        return _open_op(state, pid, name, args, ret)
    if name in ("write", "writev", "pwrite64", "pwritev", "pwritev2"):
        return _write_op(name, args, ret, state)
    if name in ("sync", "syncfs"):
        return Op("sync", "")
    if name == "fchdir":
        _, path = fd_arg(args[0])
        if path.startswith("/"):
            state.cwds[pid] = path
        return None
    if name in FD_CALLS:
        return _fd_op(name, args, ret, state)
    if name in UNTRACKED_OUT:
        _, path, _ = _file_of(args[UNTRACKED_OUT[name]])
        return Op("untracked", path) if path.startswith("/") else None
    if name in LINKS:
        return Op("untracked", _path_arg(state, pid, args[-1]))
    return _path_op(state, pid, name, args)


def parse_lines(lines: Iterable[str], cwd0: str) -> Iterator[Op]:
    """Ops in trace order; ``<unfinished ...>`` calls are joined with their resumption.
    A crash op (the injected call) is yielded where strace printed it."""
    state = ParseState(cwd0)
    for number, raw in enumerate(lines, 1):
        match = LINE_RE.match(raw.rstrip("\n"))
        if not match:
            continue
        pid, text = match.groups()
        if text.startswith("+++") or text.startswith("---"):
            if text == KILLED:
                state.killed.append(pid)
            continue
        if text.endswith(UNFINISHED):
            state.partial[pid] = text[: -len(UNFINISHED)]
            continue
        resumed = RESUMED_RE.match(text)
        if resumed:
            text = state.partial.pop(pid, f"{resumed.group(1)}(") + resumed.group(2)
        op = parse_call(state, pid, text, number)
        if op is not None:
            yield op


def durability_events(lines: Iterable[str], cwd0: str, root: str) -> list[tuple[str, int, str]]:
    """The crash points a census trace offers, in order: (syscall, n, path relative to
    ``root``) for every durability call on a file under ``root`` that is the first nth call
    of that syscall in any thread, which is what ``inject=SYSCALL:...:when=n`` stops
    (strace counts per thread and per syscall)."""
    counts: dict[tuple[str, str], int] = {}
    seen: set[tuple[str, int]] = set()
    points: list[tuple[str, int, str]] = []
    state = ParseState(cwd0)
    root = root.rstrip("/")
    for raw in lines:
        match = LINE_RE.match(raw.rstrip("\n"))
        if not match:
            continue
        pid, text = match.groups()
        text = text.removesuffix(UNFINISHED)
        call = CALL_RE.match(text) or re.match(r"^([a-z_0-9]+)\((.*)$", text)
        if not call or call.group(1) not in DURABILITY or text.startswith("<..."):
            continue
        name = call.group(1)
        n = counts[(pid, name)] = counts.get((pid, name), 0) + 1
        if (name, n) in seen:
            continue
        seen.add((name, n))
        path = _describe(state, pid, name, split_args(call.group(2)))
        if path == root or path.startswith(root + "/"):
            points.append((name, n, os.path.relpath(path, root)))
    return points


def _describe(state: ParseState, pid: str, name: str, args: list[str]) -> str:
    """The file a durability call is about: the fsynced one, or a rename's destination."""
    if name in ("fsync", "fdatasync"):
        return _file_of(args[0])[1] if args else ""
    if name == "rename" and len(args) >= 2:
        return _path_arg(state, pid, args[1])
    if len(args) >= 4:
        return _at_path(state, pid, args[2], args[3])
    return ""
