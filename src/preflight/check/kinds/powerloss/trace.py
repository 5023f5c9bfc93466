"""The power-loss fault's trace mode: the I/O around the pure model.

The job runs under ``strace`` (options in `preflight.check.kinds.powerloss.strace_ops`), which
kills it at
the entry of its Nth durability call (``inject=...:error=EIO:signal=SIGKILL:when=N``: the
call never runs). The harness then stops the job's other processes, reads the trace,
replays it over a snapshot of the work dir taken before the attempt
(`preflight.check.kinds.powerloss.durable_state`), and rewrites the work dir as the power cut
leaves it.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import psutil

from preflight.check.drive.runner import (
    POLL_S,
    REAP_TIMEOUT_S,
    STDERR_TAIL_CHARS,
    DriveContext,
    job_env,
)
from preflight.check.drive.watch import ProgressProbe, leftover_fields
from preflight.check.history import FAULT_SIGKILL, Attempt
from preflight.check.kinds.powerloss.durable_state import CrashState, FsModel, crash_state, replay
from preflight.check.kinds.powerloss.strace_ops import (
    DURABILITY,
    KILLED,
    STRACE_OPTIONS,
    durability_events,
    parse_lines,
)
from preflight.workload import Run

Point = tuple[str, int]  # (durability syscall, n): the crash point
TRACE_POLL_S = 0.005  # the kill lands within a poll; the other processes then stop
TRACE_BYTES_MAX = 2 << 30  # a bigger trace is refused: trace mode is for small tiers
TREE_BYTES_MAX = 1 << 30  # a work dir bigger than this is not snapshotted in memory
FILES_MAX = 100_000


def strace_path() -> str | None:
    return shutil.which("strace")


def unavailable() -> str:
    """Why trace mode cannot run here ("" when it can)."""
    if strace_path() is None:
        return "strace is not installed (apt-get install strace)"
    return ""


def strace_argv(trace_path: Path, point: Point | None) -> tuple[str, ...]:
    """The launcher prefix: trace to ``trace_path``; at ``point`` (syscall, n), kill the
    first thread entering its nth call of that syscall (EIO first: the call never runs)."""
    exe = strace_path()
    assert exe is not None, "strace is not installed"
    argv = [exe, *STRACE_OPTIONS, "-o", str(trace_path)]
    if point is not None:
        name, n = point
        assert name in DURABILITY and n >= 1, point
        argv += ["-e", f"inject={name}:error=EIO:signal=SIGKILL:when={n}"]
    return (*argv, "--")


# ---- the work dir as bytes ----------------------------------------------------------------


def read_tree(root: Path) -> tuple[dict[str, bytes], set[str]]:
    """Every regular file (relpath -> bytes) and directory under ``root``, bounded."""
    files: dict[str, bytes] = {}
    dirs: set[str] = set()
    total = 0
    for current, subdirs, names in os.walk(root):
        rel_dir = os.path.relpath(current, root)
        for name in subdirs:
            dirs.add(os.path.normpath(os.path.join(rel_dir, name)))
        for name in names:
            path = os.path.join(current, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            rel = os.path.normpath(os.path.join(rel_dir, name))
            files[rel] = Path(path).read_bytes()
            total += len(files[rel])
            if total > TREE_BYTES_MAX or len(files) > FILES_MAX:
                raise RuntimeError(f"{root}: over {TREE_BYTES_MAX} bytes or {FILES_MAX} files")
    return files, dirs


def restore(root: Path, state: CrashState) -> None:
    """Make ``root`` hold exactly ``state`` (the work dir itself stays; its entries go)."""
    for entry in os.scandir(root):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
    for rel in sorted(state.dirs):
        (root / rel).mkdir(parents=True, exist_ok=True)
    for rel, data in state.files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


# ---- one traced attempt -------------------------------------------------------------------


@dataclass
class Traced:
    attempt: Attempt
    crashed: bool  # the injected call was reached (else the job ran to its end)
    trace_path: Path
    notes: list[str] = field(default_factory=list)


def _kill_tracees(strace_pid: int) -> None:
    """SIGKILL the job's processes but not strace, so it logs their last calls and exits."""
    try:
        procs = psutil.Process(strace_pid).children(recursive=True)
    except psutil.Error:
        return
    for proc in procs:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.Error:
            continue


class KillWatcher:
    """Reads the growing trace for strace's note that a tracee died by SIGKILL."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.tail = b""

    def saw_kill(self) -> bool:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read(1 << 22)
        except OSError:
            return False
        self.offset += len(chunk)
        text = self.tail + chunk
        self.tail = text[-64:]
        return KILLED.encode() in text


def run_traced(
    ctx: DriveContext,
    workdir: Path,
    index: int,
    *,
    point: Point | None,
    trace_path: Path,
    log_dir: Path,
    resume: bool = False,
) -> Traced:
    """One attempt under strace, killed at ``point`` when it comes (bounded)."""
    spec = replace(ctx.spec, launcher=(*strace_argv(trace_path, point), *ctx.spec.launcher))
    run = Run(
        spec, workdir, ctx.params, env=job_env(), resume=resume, sample_interval_s=0.1,
        log_dir=log_dir,
    )  # fmt: skip
    start_done = last_done = total = None
    with run:
        probe = ProgressProbe(run, spec.progress_path(run.params))
        watcher = KillWatcher(trace_path)
        rc: int | None = None
        deadline_s = time.monotonic() + ctx.bounds.attempt_timeout_s
        while time.monotonic() < deadline_s:
            rc = run.poll()
            seen = probe.read()
            if seen is not None:
                start_done = seen[0] if start_done is None else start_done
                last_done, total = seen[0], seen[1] or total
            if rc is not None:
                break
            if point is not None and watcher.saw_kill():
                _kill_tracees(run.pid)
                rc = run.wait(REAP_TIMEOUT_S)
                break
            time.sleep(TRACE_POLL_S if point is not None else POLL_S)
        else:
            run.wait(0.001)  # marks it timed out and kills the group
        stderr_tail = run.stderr_text()[-STDERR_TAIL_CHARS:]
    crashed = has_crash(trace_path)
    attempt = Attempt(
        index=index,
        resume=resume,
        fault=FAULT_SIGKILL,  # a power cut stops the job as SIGKILL does, then takes more
        armed=f"power cut at {point[0]} #{point[1]}" if point else "power cut after exit",
        start_done=start_done,
        last_done=last_done,
        fault_at_done=last_done,
        rc=None if crashed or run.timed_out else rc,
        timed_out=run.timed_out,
        duration_s=round(run.duration_s, 3),
        stderr_tail=stderr_tail,
        total=total,
        host_steal=run.host_steal_fraction,
        **leftover_fields(run),
    )
    return Traced(attempt, crashed, trace_path)


def has_crash(trace_path: Path) -> bool:
    with open(trace_path, errors="surrogateescape") as handle:
        return any(op.injected for op in parse_lines(handle, "/"))


# ---- the cut ------------------------------------------------------------------------------


def cut_power(
    workdir: Path,
    before: tuple[dict[str, bytes], set[str]],
    trace_path: Path,
    cwd: Path,
    mode: str,
    seed_text: str,
) -> CrashState:
    """Replay the trace over the snapshot taken ``before`` the attempt, and leave the work
    dir as a power cut now leaves it. Files the trace could not follow keep the disk's."""
    if trace_path.stat().st_size > TRACE_BYTES_MAX:
        raise RuntimeError(f"{trace_path}: trace over {TRACE_BYTES_MAX} bytes")
    root = os.path.realpath(workdir)
    model = FsModel(root, before[0], before[1])
    with open(trace_path, errors="surrogateescape") as handle:
        replay(model, parse_lines(handle, str(cwd)))
    on_disk, _ = read_tree(workdir)
    mismatched = model.untracked_against(on_disk)
    state = crash_state(model, mode, seed_text)
    restore(workdir, state)
    extra = [f"{rel}: the trace's replay differs (mmap?): kept as on disk" for rel in mismatched]
    state.findings[:0] = model.notes[:8] + extra[:8]
    return state


# ---- the census ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Census:
    """One traced run to the end: the crash points it offers, and what tracing cost."""

    events: tuple[tuple[str, int, str], ...]  # (syscall, n, relpath) per crash point
    duration_s: float
    rc: int | None


_CENSUS: dict[str, Census] = {}


def census(ctx: DriveContext) -> Census:
    """The crash points of this workload (one traced, uninterrupted run; once per check)."""
    key = str(ctx.root)
    if key in _CENSUS:
        return _CENSUS[key]
    base = ctx.root / "powerloss-census"
    if base.exists():
        shutil.rmtree(base)
    workdir, logs = base / "work", base / "logs"
    logs.mkdir(parents=True)
    trace = logs / "census.strace"
    traced = run_traced(ctx, workdir, 0, point=None, trace_path=trace, log_dir=logs)
    with open(trace, errors="surrogateescape") as handle:
        events = durability_events(handle, str(ctx.spec.spec_dir), os.path.realpath(workdir))
    result = Census(tuple(events), traced.attempt.duration_s, traced.attempt.rc)
    shutil.rmtree(base, ignore_errors=True)
    _CENSUS[key] = result
    return result
