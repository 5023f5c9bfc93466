"""Driving one job attempt under a fault, and recording what happened (the history's I/O).

An attempt is one `Run` (one process group). While it runs the harness polls the job's
published progress, optionally watches checkpoint writes, and fires its trigger (a signal at
a time, at a progress value, or inside a checkpoint write window). Everything it observes
goes into an `Attempt` record; the checker never sees a process. A kill inside a write
window is verified: the group is stopped, and killed only when the file is still open for
writing; otherwise it continues and the next window is taken (so no window is unreachable
and no kill is called "inside a write" that was not).

What sequences of attempts make an experiment (workspace, resume, verify, fingerprint, the
history) is in sequence.py; what the harness can see of a job is in watch.py / windows.py.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from preflight.check.drive.watch import (
    GLOB_MATCHES_MAX,
    CommitTracker,
    ProgressProbe,
    WriteWatcher,
    expand,
    is_checkpoint_write,
    leftover_fields,
    vms_bytes,
)
from preflight.check.drive.windows import InotifyWatcher, inotify_available
from preflight.check.history import FAULT_NONE, FAULT_POINT, FAULT_SIGKILL, FAULT_SIGTERM, Attempt

# The fault-point contract of docs/contract.md: durable.faults reads these, the harness sets.
from preflight.durable.faults import ENV_FAULTS, ENV_TRACE
from preflight.host.watch import HostWatch
from preflight.workload import Run, WorkloadSpec

__all__ = [
    "GLOB_MATCHES_MAX",
    "Bounds",
    "DriveContext",
    "Outcome",
    "Trigger",
    "expand",
    "is_checkpoint_write",
    "job_env",
    "run_attempt",
]


POLL_S = 0.02  # progress and trigger checks
WINDOW_POLL_S = 0.003  # write windows last milliseconds; poll them finely
SAMPLE_INTERVAL_S = 0.05  # the sampler's tick: the memory experiment needs the peak
REAP_TIMEOUT_S = 10.0
STDERR_TAIL_CHARS = 4000
SERIES_MAX = 100_000
Watcher = WriteWatcher | InotifyWatcher


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
    ``nth_window``-th checkpoint write window (or the first later one still open when the
    job is stopped); with ``sig``. ``temps`` are temp-file kinds known to be renamed onto a
    checkpoints glob (learnt by the reference run)."""

    sig: int = signal.SIGKILL
    at_s: float | None = None
    at_done: int | None = None
    nth_window: int | None = None
    window_glob: int | None = None  # which checkpoints glob's writes count (None: all)
    temps: tuple[tuple[str, int], ...] = ()

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


@dataclass(frozen=True)
class DriveContext:
    """What every experiment of one `preflight check` shares (replace() to change)."""

    spec: WorkloadSpec
    params: Mapping[str, object]  # the tier's sizes
    root: Path  # scratch: one folder per experiment
    bounds: Bounds = field(default_factory=Bounds)
    # The running experiment's watch (the battery starts one per experiment): what the
    # machine did, recorded with the experiment's history (host_frozen).
    host: HostWatch | None = None

    def exp_dir(self, experiment_id: str) -> Path:
        import shutil

        path = self.root / experiment_id
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def run_params(self, workdir: Path) -> dict[str, object]:
        return {**self.spec.base_params(workdir), **self.params}

    def host_frozen(self) -> float | None:
        """The share of the experiment's time the harness was frozen, for its history: the
        watch ends here, when the history is recorded (None: no watch, or no figure)."""
        if self.host is None:
            return None
        self.host.stop()
        return self.host.frozen


@dataclass
class Outcome:
    """An Attempt plus the raw observations the reference run needs."""

    attempt: Attempt
    total: int | None = None
    commit_dones: list[int] = field(default_factory=list)  # progress at checkpoint changes
    dones: list[int] = field(default_factory=list)  # distinct progress values published
    windows_seen: int = 0
    windows_by_glob: tuple[int, ...] = ()
    temps: tuple[tuple[str, int], ...] = ()  # temp kinds seen renamed onto a glob
    rss_bytes_max: int | None = None
    uss_bytes_max: int | None = None
    vms_bytes_max: int | None = None
    note: str = ""


@dataclass
class _Observed:
    start_done: int | None = None
    last_done: int | None = None
    total: int | None = None
    vms_bytes_max: int | None = None
    dones: list[int] = field(default_factory=list)  # distinct published values, in order

    def see_all(self, values: list[tuple[int, int]]) -> None:
        for value in values:
            self.see(value)

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
    ctx: DriveContext,
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
        watcher = _watcher(run.pid, Path(run.workdir), globs, trigger, watch_windows)
        tracker = CommitTracker(globs) if track_commits else None
        try:
            seen, fired, rc = _drive(ctx, run, probe, trigger, watcher, tracker)
        finally:
            if watcher is not None:
                watcher.close()
        stderr_tail = run.stderr_text()[-STDERR_TAIL_CHARS:]
        samples = run.samples
    attempt = _attempt(index, resume, run, seen, fired, rc, trigger, fault, armed)
    attempt = replace(attempt, stderr_tail=stderr_tail, **leftover_fields(run))
    return Outcome(
        attempt=attempt,
        total=seen.total,
        commit_dones=tracker.dones if tracker else [],
        dones=seen.dones,
        windows_seen=watcher.windows if watcher else 0,
        windows_by_glob=tuple(watcher.windows_by_glob) if watcher else (),
        temps=tuple(sorted(watcher.learned.items())) if isinstance(watcher, InotifyWatcher) else (),
        rss_bytes_max=max((s.rss_bytes for s in samples), default=None),
        uss_bytes_max=max((s.uss_bytes for s in samples), default=None),
        vms_bytes_max=seen.vms_bytes_max,
        note=_note(index, trigger, fired),
    )


def _attempt(
    index: int,
    resume: bool,
    run: Run,
    seen: _Observed,
    fired: _Fired | None,
    rc: int | None,
    trigger: Trigger | None,
    fault: str,
    armed: str,
) -> Attempt:
    if fired is not None:
        assert trigger is not None
        fault, armed, fault_at_done = trigger.fault, trigger.describe(), fired.at_done
    else:
        fault_at_done = seen.last_done if fault != FAULT_NONE else None
    return Attempt(
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
        total=seen.total or None,
        fault_path=fired.path if fired is not None else "",
        host_steal=run.host_steal_fraction,
    )


def _note(index: int, trigger: Trigger | None, fired: _Fired | None) -> str:
    if trigger is not None and fired is None:
        return f"attempt {index}: the job ended before the trigger ({trigger.describe()})"
    if fired is not None and fired.path:
        return f"attempt {index}: killed while writing {fired.path}"
    return ""


def _watcher(
    pid: int, workdir: Path, globs: list[str], trigger: Trigger | None, watch_windows: bool
) -> Watcher | None:
    wanted = watch_windows or (trigger is not None and trigger.nth_window is not None)
    if not wanted or not globs:
        return None
    only = None if trigger is None else trigger.window_glob
    if inotify_available():
        learned = dict(trigger.temps) if trigger is not None else {}
        return InotifyWatcher(pid, workdir, globs, only, learned)
    if only is not None:
        globs = globs[only : only + 1]
    return WriteWatcher(pid, globs)  # polling: short writes may be missed


@dataclass(frozen=True)
class _Fired:
    at_done: int | None  # the progress observed when the trigger fired
    in_window: bool | None  # for window triggers: a checkpoint write was open at the kill
    path: str = ""


def _drive(
    ctx: DriveContext,
    run: Run,
    probe: ProgressProbe,
    trigger: Trigger | None,
    watcher: Watcher | None,
    tracker: CommitTracker | None,
) -> tuple[_Observed, _Fired | None, int | None]:
    """Poll until the attempt ends; (observations, how the trigger fired, rc or None)."""
    seen = _Observed()
    started_s = time.monotonic()
    poll_s = WINDOW_POLL_S if watcher else POLL_S
    vms_every = max(1, int(0.1 / poll_s))
    for tick in range(int(ctx.bounds.attempt_timeout_s / poll_s) + 1):
        rc = run.poll()
        seen.see_all(probe.read_all())
        if tracker is not None:
            tracker.poll(seen.last_done)
        if rc is not None:
            return seen, None, rc
        if tick % vms_every == 0:
            vms = vms_bytes(run.pid)
            if vms is not None:
                seen.vms_bytes_max = max(vms, seen.vms_bytes_max or 0)
        if trigger is None and watcher is not None:
            watcher.poll()
        elif trigger is not None and _due(trigger, time.monotonic() - started_s, seen, watcher):
            fired = _stop_inside(run, watcher, seen) if watcher is not None else None
            if watcher is None or fired is not None:
                fired = fired or _Fired(seen.last_done, None)
                return seen, fired, _fire(ctx, run, trigger, probe, seen)
        if time.monotonic() - started_s > ctx.bounds.attempt_timeout_s:
            break
        if watcher is not None:
            watcher.wait(poll_s)
        else:
            time.sleep(poll_s)
    # Past the bound: Run.wait marks it timed out and kills the whole group.
    rc = run.wait(0.001)
    seen.see_all(probe.read_all())
    return seen, None, None if run.timed_out else rc


def _stop_inside(run: Run, watcher: Watcher, seen: _Observed) -> _Fired | None:
    """Stop the group inside a write window: a _Fired when the file is still being
    written (the kill will land inside the write), else None and the job continues."""
    path = watcher.path
    run.kill(signal.SIGSTOP)
    if watcher.still_writing(path):
        return _Fired(seen.last_done, True, path)
    run.kill(signal.SIGCONT)
    return None


def _due(trigger: Trigger, elapsed_s: float, seen: _Observed, watcher: Watcher | None) -> bool:
    if trigger.at_s is not None:
        return elapsed_s >= trigger.at_s
    if trigger.at_done is not None:
        return seen.last_done is not None and seen.last_done >= trigger.at_done
    assert watcher is not None and trigger.nth_window is not None
    return watcher.poll() and watcher.windows >= trigger.nth_window


def _fire(
    ctx: DriveContext, run: Run, trigger: Trigger, probe: ProgressProbe, seen: _Observed
) -> int | None:
    """Send the signal to the group; SIGTERM gets a grace period. None: it never exited."""
    run.kill(trigger.sig)
    if trigger.sig != signal.SIGTERM:
        return run.wait(REAP_TIMEOUT_S)
    deadline_s = time.monotonic() + ctx.bounds.term_grace_s
    while time.monotonic() < deadline_s:
        rc = run.poll()
        seen.see_all(probe.read_all())
        if rc is not None:
            return rc
        time.sleep(POLL_S)
    run.kill(signal.SIGKILL)
    run.wait(REAP_TIMEOUT_S)
    return None
