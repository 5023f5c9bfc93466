"""Driving one job attempt under a fault, and recording what happened (the history's I/O).

An attempt is one `Run` (one process group). While it runs the harness polls the job's
published progress, optionally watches checkpoint writes, and fires its trigger (a signal at
a time, at a progress value, or inside a checkpoint write window). Everything it observes
goes into an `Attempt` record; the checker never sees a process.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

import psutil

from harness.faults.history import (
    FAULT_NONE,
    FAULT_POINT,
    FAULT_SIGKILL,
    FAULT_SIGTERM,
    Attempt,
    Corruption,
    History,
)
from harness.faults.schedule import Experiment
from harness.workload import Run, RunError, RunTimeoutError, WorkloadSpec, run_aux

# The fault-point contract of DESIGN.md (durable.faults reads these; the harness only sets).
ENV_FAULTS = "PREFLIGHT_FAULTS"
ENV_TRACE = "PREFLIGHT_FAULTS_TRACE"

POLL_S = 0.02  # progress and trigger checks
WINDOW_POLL_S = 0.003  # write windows last milliseconds; poll them finely
SAMPLE_INTERVAL_S = 0.05  # the sampler's tick: the memory experiment needs the peak
REAP_TIMEOUT_S = 10.0
STDERR_TAIL_CHARS = 4000
GLOB_MATCHES_MAX = 100_000
WRITE_MODES = ("w", "a", "r+", "w+", "a+")


@dataclass(frozen=True)
class Bounds:
    """The limits every experiment runs under (TIGER_STYLE: nothing unbounded)."""

    attempt_timeout_s: float = 120.0
    restarts_max: int = 2
    term_grace_s: float = 30.0
    aux_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        assert self.attempt_timeout_s > 0 and self.term_grace_s > 0 and self.aux_timeout_s > 0
        assert 0 <= self.restarts_max <= 100


@dataclass(frozen=True)
class Trigger:
    """When to hurt the attempt: at ``at_s`` seconds, at progress ``at_done``, or at the
    ``nth_window``-th checkpoint write window; with ``sig``."""

    sig: int = signal.SIGKILL
    at_s: float | None = None
    at_done: int | None = None
    nth_window: int | None = None
    window_glob: int | None = None  # which checkpoints glob's writes count (None: all)

    def __post_init__(self) -> None:
        given = [x for x in (self.at_s, self.at_done, self.nth_window) if x is not None]
        assert len(given) == 1, "a trigger has exactly one condition"

    @property
    def fault(self) -> str:
        return FAULT_SIGTERM if self.sig == signal.SIGTERM else FAULT_SIGKILL

    def describe(self) -> str:
        name = signal.Signals(self.sig).name
        if self.at_s is not None:
            return f"{name} at {self.at_s:.2f} s"
        if self.at_done is not None:
            return f"{name} at progress {self.at_done}"
        which = "" if self.window_glob is None else f" of checkpoints glob #{self.window_glob}"
        return f"{name} inside write window #{self.nth_window}{which}"


@dataclass
class Context:
    """What every experiment of one `preflight check` shares."""

    spec: WorkloadSpec
    params: dict[str, object]  # the tier's sizes
    root: Path  # scratch: one folder per experiment
    bounds: Bounds = field(default_factory=Bounds)

    def exp_dir(self, experiment_id: str) -> Path:
        path = self.root / experiment_id
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def run_params(self, workdir: Path) -> dict[str, object]:
        return {**self.spec.base_params(workdir), **self.params}


@dataclass
class Outcome:
    """An Attempt plus the raw observations the reference run needs."""

    attempt: Attempt
    total: int | None = None
    commit_dones: list[int] = field(default_factory=list)  # progress at checkpoint changes
    dones: list[int] = field(default_factory=list)  # distinct progress values published
    windows_seen: int = 0
    windows_by_glob: tuple[int, ...] = ()
    rss_bytes_max: int | None = None
    uss_bytes_max: int | None = None
    vms_bytes_max: int | None = None
    note: str = ""


# ---- observation -----------------------------------------------------------------------


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class ProgressProbe:
    """The attempt's own progress: a progress file counts only once this attempt replaced
    it, so a resumed run is never credited with the killed run's last value."""

    def __init__(self, run: Run, path: Path | None) -> None:
        self.run = run
        self.path = path
        self.baseline = _stat_key(path) if path is not None else None
        self.fresh = path is None or self.baseline is None

    def read(self) -> tuple[int, int] | None:
        if not self.fresh:
            assert self.path is not None
            if _stat_key(self.path) == self.baseline:
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
            key = _stat_key(path)
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
        current = {p: _stat_key(p) for p in expand(self.globs) if not p.name.startswith(".")}
        if current != self.state and current and done is not None:
            self.dones.append(done)
        self.state = current


def _vms_bytes(pid: int) -> int | None:
    try:
        return psutil.Process(pid).memory_info().vms
    except psutil.Error:
        return None


# ---- one attempt ------------------------------------------------------------------------


SERIES_MAX = 100_000


@dataclass
class _Observed:
    start_done: int | None = None
    last_done: int | None = None
    total: int | None = None
    vms_bytes_max: int | None = None
    dones: list[int] = field(default_factory=list)  # distinct published values, in order

    def see(self, progress: tuple[int, int] | None) -> None:
        if progress is None:
            return
        done, total = progress
        if self.start_done is None:
            self.start_done = done
        if done != self.last_done and len(self.dones) < SERIES_MAX:
            self.dones.append(done)
        self.last_done = done
        self.total = total or self.total


def job_env(armed: str = "", trace: str = "") -> dict[str, str]:
    """Fault-point variables for one attempt; always set, so the harness's own environment
    can never arm a job by accident."""
    return {ENV_FAULTS: armed, ENV_TRACE: trace}


def run_attempt(
    ctx: Context,
    workdir: Path,
    index: int,
    *,
    resume: bool,
    trigger: Trigger | None = None,
    fault: str = FAULT_NONE,
    armed: str = "",
    env: Mapping[str, str] | None = None,
    preexec: Callable[[], None] | None = None,
    log_dir: Path | None = None,
    track_commits: bool = False,
    watch_windows: bool = False,
) -> Outcome:
    """Run the job once (bounded), firing ``trigger`` if given; record what happened."""
    params = ctx.run_params(workdir)
    globs = ctx.spec.checkpoint_globs(params)
    # Only a fault point is armed through the environment; other faults just describe
    # their limit in ``armed`` for the history.
    full_env = {**job_env(armed if fault == FAULT_POINT else ""), **(env or {})}
    run = Run(
        ctx.spec,
        workdir,
        ctx.params,
        env=full_env,
        resume=resume,
        sample_interval_s=SAMPLE_INTERVAL_S,
        log_dir=log_dir or workdir.with_name(workdir.name + ".logs"),
        preexec=preexec,
    )
    with run:  # starts the job; on the way out the whole group is killed, always
        probe = ProgressProbe(run, ctx.spec.progress_path(run.params))
        watcher = _watcher(run.pid, globs, trigger, watch_windows)
        tracker = CommitTracker(globs) if track_commits else None
        seen, fired, rc = _drive(ctx, run, probe, trigger, watcher, tracker)
        stderr_tail = run.stderr_text()[-STDERR_TAIL_CHARS:]
        samples = run.samples
    if fired is not None:
        assert trigger is not None
        fault, armed, fault_at_done = trigger.fault, trigger.describe(), fired.at_done
    else:
        fault_at_done = seen.last_done if fault != FAULT_NONE else None
    attempt = Attempt(
        index=index,
        resume=resume,
        fault=fault,
        armed=armed,
        start_done=seen.start_done,
        last_done=seen.last_done,
        fault_at_done=fault_at_done,
        in_write_window=fired.in_window if fired is not None else None,
        rc=rc,
        timed_out=run.timed_out,
        duration_s=round(run.duration_s, 3),
        stderr_tail=stderr_tail,
    )
    note = ""
    if trigger is not None and fired is None:
        note = f"attempt {index}: the job ended before the trigger ({trigger.describe()})"
    elif fired is not None and fired.path:
        note = f"attempt {index}: killed while writing {fired.path}"
    return Outcome(
        attempt=attempt,
        total=seen.total,
        commit_dones=tracker.dones if tracker else [],
        dones=seen.dones,
        windows_seen=watcher.windows if watcher else 0,
        windows_by_glob=tuple(watcher.windows_by_glob) if watcher else (),
        rss_bytes_max=max((s.rss_bytes for s in samples), default=None),
        uss_bytes_max=max((s.uss_bytes for s in samples), default=None),
        vms_bytes_max=seen.vms_bytes_max,
        note=note,
    )


def _watcher(
    pid: int, globs: list[str], trigger: Trigger | None, watch_windows: bool
) -> WriteWatcher | None:
    if watch_windows and globs:
        return WriteWatcher(pid, globs)  # the reference run counts the windows it can see
    if trigger is None or trigger.nth_window is None:
        return None
    if trigger.window_glob is not None:
        globs = globs[trigger.window_glob : trigger.window_glob + 1]
    return WriteWatcher(pid, globs)


@dataclass(frozen=True)
class _Fired:
    at_done: int | None  # the progress observed when the trigger fired
    in_window: bool | None  # for window triggers: a checkpoint write was open at the kill
    path: str = ""


def _drive(
    ctx: Context,
    run: Run,
    probe: ProgressProbe,
    trigger: Trigger | None,
    watcher: WriteWatcher | None,
    tracker: CommitTracker | None,
) -> tuple[_Observed, _Fired | None, int | None]:
    """Poll until the attempt ends; (observations, how the trigger fired, rc or None)."""
    seen = _Observed()
    started_s = time.monotonic()
    poll_s = WINDOW_POLL_S if watcher else POLL_S
    vms_every = max(1, int(0.1 / poll_s))
    for tick in range(int(ctx.bounds.attempt_timeout_s / poll_s) + 1):
        rc = run.poll()
        seen.see(probe.read())
        if tracker is not None:
            tracker.poll(seen.last_done)
        if rc is not None:
            return seen, None, rc
        if tick % vms_every == 0:
            vms = _vms_bytes(run.pid)
            if vms is not None:
                seen.vms_bytes_max = max(vms, seen.vms_bytes_max or 0)
        if trigger is None and watcher is not None:
            watcher.poll()
        elif trigger is not None and _due(trigger, time.monotonic() - started_s, seen, watcher):
            fired = _Fired(
                seen.last_done,
                True if watcher else None,
                watcher.path if watcher else "",
            )
            return seen, fired, _fire(ctx, run, trigger, probe, seen)
        if time.monotonic() - started_s > ctx.bounds.attempt_timeout_s:
            break
        time.sleep(poll_s)
    # Past the bound: Run.wait marks it timed out and kills the whole group.
    rc = run.wait(0.001)
    seen.see(probe.read())
    return seen, None, None if run.timed_out else rc


def _due(trigger: Trigger, elapsed_s: float, seen: _Observed, watcher: WriteWatcher | None) -> bool:
    if trigger.at_s is not None:
        return elapsed_s >= trigger.at_s
    if trigger.at_done is not None:
        return seen.last_done is not None and seen.last_done >= trigger.at_done
    assert watcher is not None and trigger.nth_window is not None
    return watcher.poll() and watcher.windows >= trigger.nth_window


def _fire(
    ctx: Context, run: Run, trigger: Trigger, probe: ProgressProbe, seen: _Observed
) -> int | None:
    """Send the signal to the group; SIGTERM gets a grace period. None: it never exited."""
    run.kill(trigger.sig)
    if trigger.sig != signal.SIGTERM:
        return run.wait(REAP_TIMEOUT_S)
    deadline_s = time.monotonic() + ctx.bounds.term_grace_s
    while time.monotonic() < deadline_s:
        rc = run.poll()
        seen.see(probe.read())
        if rc is not None:
            return rc
        time.sleep(POLL_S)
    run.kill(signal.SIGKILL)
    run.wait(REAP_TIMEOUT_S)
    return None


# ---- sequences ---------------------------------------------------------------------------


def resume_until_done(
    ctx: Context,
    workdir: Path,
    attempts: list[Attempt],
    *,
    stop_on_failure: bool = False,
    log_dir: Path | None = None,
) -> list[Attempt]:
    """Resume after the faults until exit 0, at most 1 + restarts_max times. A hang ends
    the sequence (the liveness verdict fails); ``stop_on_failure`` ends it at the first
    error exit (a refusal is deterministic: retrying it proves nothing)."""
    for _ in range(1 + ctx.bounds.restarts_max):
        if attempts and attempts[-1].rc == 0:
            break
        if attempts and attempts[-1].timed_out:
            break
        outcome = run_attempt(ctx, workdir, len(attempts), resume=True, log_dir=log_dir)
        attempts.append(outcome.attempt)
        rc = outcome.attempt.rc
        if stop_on_failure and rc not in (0, 75):
            break
    return attempts


@dataclass(frozen=True)
class Finish:
    verify_rc: int | None
    fingerprint: str | None
    notes: tuple[str, ...] = ()


def finish(ctx: Context, workdir: Path) -> Finish:
    """Run verify and fingerprint on a completed workdir, side by side (both only read the
    workdir; each is a fresh interpreter whose start-up, e.g. importing torch, dominates),
    each bounded by its own timeout."""
    with ThreadPoolExecutor(2, thread_name_prefix="preflight-finish") as pool:
        verify = pool.submit(_verify, ctx, workdir)
        fingerprint = pool.submit(_fingerprint, ctx, workdir)
        verify_rc, verify_notes = verify.result()
        value, fingerprint_notes = fingerprint.result()
    return Finish(verify_rc, value, (*verify_notes, *fingerprint_notes))


def _verify(ctx: Context, workdir: Path) -> tuple[int | None, list[str]]:
    if ctx.spec.verify is None:
        return None, []
    params = ctx.run_params(workdir)
    try:
        done = run_aux(ctx.spec, ctx.spec.verify, params, ctx.bounds.aux_timeout_s, key="verify")
    except RunTimeoutError as exc:
        return -1, [str(exc)]
    notes = [f"verify: {done.stderr.strip()[-300:]}"] if done.returncode != 0 else []
    return done.returncode, notes


def _fingerprint(ctx: Context, workdir: Path) -> tuple[str | None, list[str]]:
    if ctx.spec.fingerprint is None:
        return None, []
    params = ctx.run_params(workdir)
    try:
        done = run_aux(
            ctx.spec, ctx.spec.fingerprint, params, ctx.bounds.aux_timeout_s, key="fingerprint"
        )
    except RunTimeoutError as exc:
        return None, [str(exc)]
    if done.returncode == 0:
        return done.stdout.strip(), []
    return None, [f"fingerprint exit {done.returncode}: {done.stderr.strip()[-300:]}"]


def recover_s(attempts: list[Attempt]) -> float | None:
    """Seconds from the last fault to the successful exit (the resumed attempts' time)."""
    faulted = [a.index for a in attempts if a.fault != FAULT_NONE]
    if not faulted or not attempts or attempts[-1].rc != 0:
        return None
    return round(sum(a.duration_s for a in attempts if a.index > faulted[-1]), 3)


def build_history(
    ctx: Context,
    exp: Experiment,
    seed: int,
    workdir: Path,
    attempts: list[Attempt],
    notes: list[str],
    started_s: float,
    *,
    corruptions: tuple[Corruption, ...] = (),
) -> History:
    """Finish (verify, fingerprint) a completed workdir and assemble the history."""
    done = finish(ctx, workdir) if attempts and attempts[-1].rc == 0 else None
    return History(
        experiment_id=exp.id,
        kind=exp.kind,
        seed=seed,
        schedule=exp.schedule,
        attempts=tuple(attempts),
        corruptions=corruptions,
        verify_rc=done.verify_rc if done else None,
        fingerprint=done.fingerprint if done else None,
        notes=tuple(n for n in notes if n) + (done.notes if done else ()),
        fault_exit=str(exp.schedule.get("fault_exit", "")),
        duration_s=round(time.monotonic() - started_s, 3),
        recover_s=recover_s(attempts),
    )


def skipped_history(exp: Experiment, seed: int, reason: str = "") -> History:
    """An experiment that could not run: a note with its reason, never a failure."""
    why = reason or str(exp.schedule.get("skip", "skipped"))
    return History(exp.id, exp.kind, seed, exp.schedule, skipped=why)
