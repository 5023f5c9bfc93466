"""Memory pressure: run the job in a memory cgroup below its measured peak, then resume.

Mechanisms, best first: cgroup v2 (``memory.max``), cgroup v1 (``memory.limit_in_bytes``;
as root the v1 controller accepts new child groups), RLIMIT_AS (address space, a coarser
stand-in, with a note), else the experiment is skipped with the reason. Detection is a
pure function over a cgroup root path and /proc/self/cgroup text, so it is tested on fake
trees. The job must be OOM-killed or exit cleanly with a memory error, and a resume
without the limit must be exact. The in-process ``memoryerror`` fault points are armed too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from preflight.check.drive.runner import DriveContext, run_attempt
from preflight.check.drive.schedule import FaultExperiment, stream
from preflight.check.drive.sequence import Injected, Workspace, conclude, skippable, skipped_history
from preflight.check.history import FAULT_MEMORY, FAULT_POINT, Attempt, FaultHistory, Reference
from preflight.check.kind import FaultKind, InjectContext, PlanContext

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
LIMIT_BYTES_MIN = 4 << 20  # below this even an interpreter cannot start: not informative
FRACTION_LOW, FRACTION_HIGH = 0.3, 0.6
POINTS_MAX = 2  # memoryerror points armed per check
RMDIR_TRIES = 50
RMDIR_WAIT_S = 0.1
_group_seq = iter(range(1 << 30))


@dataclass(frozen=True)
class Mechanism:
    kind: str  # "cgroup2" | "cgroup1" | "rlimit_as" | "none"
    base: Path | None = None  # the cgroup directory new groups are made under
    note: str = ""


def own_cgroup_path(proc_self_cgroup: str, controller: str | None) -> str | None:
    """This process's cgroup path for ``controller`` (None: the v2 "0::" line) (pure)."""
    for line in proc_self_cgroup.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controller is None and parts[0] == "0" and controllers == "":
            return path
        if controller is not None and controller in controllers.split(","):
            return path
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _inside(root: Path, relpath: str | None) -> Path:
    """root/relpath when that directory exists (our own group), else root."""
    if relpath and relpath != "/":
        candidate = root / relpath.lstrip("/")
        if candidate.is_dir():
            return candidate
    return root


def detect(cgroup_root: Path, proc_self_cgroup: str, can_write: bool | None = None) -> Mechanism:
    """The best memory-limit mechanism available (pure over the given paths and text)."""
    controllers = _read(cgroup_root / "cgroup.controllers").split()
    if "memory" in controllers:
        own = _inside(cgroup_root, own_cgroup_path(proc_self_cgroup, None))
        for base in (own, cgroup_root):
            delegated = "memory" in _read(base / "cgroup.subtree_control").split()
            if delegated and _writable(base, can_write):
                return Mechanism("cgroup2", base)
        note = "cgroup v2 memory controller is not delegated to a writable group here"
        return Mechanism("rlimit_as", None, note + "; RLIMIT_AS instead")
    v1 = cgroup_root / "memory"
    if (v1 / "memory.limit_in_bytes").is_file():
        base = _inside(v1, own_cgroup_path(proc_self_cgroup, "memory"))
        if _writable(base, can_write):
            return Mechanism("cgroup1", base)
        return Mechanism("rlimit_as", None, f"{base} is not writable; RLIMIT_AS instead")
    return Mechanism("rlimit_as", None, "no cgroup memory controller; RLIMIT_AS instead")


def _writable(path: Path, can_write: bool | None) -> bool:
    return os.access(path, os.W_OK) if can_write is None else can_write


def detect_here() -> Mechanism:
    if not hasattr(resource, "RLIMIT_AS"):
        return Mechanism("none", None, "this platform has neither cgroups nor RLIMIT_AS")
    return detect(CGROUP_ROOT, _read(PROC_SELF_CGROUP))


# ---- cgroup lifecycle ------------------------------------------------------------------


def limit_files(kind: str) -> tuple[str, ...]:
    """Files that cap the group's memory; swap caps too, so it cannot page its way out."""
    if kind == "cgroup2":
        return ("memory.max", "memory.swap.max")
    return ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes")


@contextlib.contextmanager
def cgroup(mechanism: Mechanism, limit_bytes: int) -> Iterator[Path]:
    """A fresh child memory group with the limit set; removed afterwards (bounded retry)."""
    assert mechanism.base is not None and limit_bytes > 0
    group = mechanism.base / f"preflight-{os.getpid()}-{next(_group_seq)}"
    group.mkdir()
    try:
        for name in limit_files(mechanism.kind):
            path = group / name
            if path.exists():
                path.write_text(str(limit_bytes))
        yield group
    finally:
        _remove_group(group)


def _remove_group(group: Path) -> None:
    for _ in range(RMDIR_TRIES):
        try:
            group.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            # EBUSY until the killed group's last task is reaped by the kernel.
            if exc.errno != errno.EBUSY:
                raise
            time.sleep(RMDIR_WAIT_S)
    raise RuntimeError(f"{group}: could not remove the memory cgroup (still busy)")


def oom_kills(group: Path, kind: str) -> int | None:
    """The kernel's OOM-kill count for the group, when it reports one."""
    text = _read(group / ("memory.events" if kind == "cgroup2" else "memory.oom_control"))
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value)
    return None


def join_cgroup(group: Path) -> Callable[[], None]:
    """preexec: move the forked child into ``group`` before it execs the job."""
    procs = str(group / "cgroup.procs")

    def join() -> None:
        fd = os.open(procs, os.O_WRONLY)
        try:
            os.write(fd, str(os.getpid()).encode())
        finally:
            os.close(fd)

    return join


def limit_address_space(limit_bytes: int) -> Callable[[], None]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    return limit


# ---- experiments -----------------------------------------------------------------------


def plan(reference: Reference, seed: int) -> list[FaultExperiment]:
    rng = stream(seed, "memory-limit")
    fraction = round(rng.uniform(FRACTION_LOW, FRACTION_HIGH), 3)
    exps = [
        FaultExperiment("memory-limit", "memory", {"fraction": fraction, "fault_exit": "memory"})
    ]
    points = list(reference.points)
    if not points:
        reason = "the job passes no fault points: no memoryerror point to arm"
        return [*exps, FaultExperiment("memory-point", "memory", {"skip": reason})]
    chosen = sorted(stream(seed, "memory-points").sample(points, min(POINTS_MAX, len(points))))
    return exps + [
        FaultExperiment(
            f"memory-point-{name}",
            "memory",
            {"armed": f"{name}:memoryerror@1", "fault_exit": "memory"},
        )
        for name in chosen
    ]


@skippable
def execute(
    ctx: DriveContext, exp: FaultExperiment, seed: int, reference: Reference, mechanism: Mechanism
) -> FaultHistory:
    if "armed" in exp.schedule:
        return _execute_point(ctx, exp, seed)
    return _execute_limit(ctx, exp, seed, reference, mechanism)


def _execute_point(ctx: DriveContext, exp: FaultExperiment, seed: int) -> FaultHistory:
    space = Workspace.open(ctx, exp)
    armed = str(exp.schedule["armed"])
    first = run_attempt(
        ctx, space.workdir, 0, resume=False, fault=FAULT_POINT, armed=armed, log_dir=space.logs
    ).attempt
    return conclude(ctx, exp, seed, space, [first], [], injected=bit(first))


def bit(first: Attempt) -> Injected:
    """Memory pressure is injected when it stopped the job (it did not finish under it)."""
    if first.rc == 0:
        return Injected(False, f"{first.armed}: the job finished under it, it never bit")
    return Injected(True, f"{first.armed}: the job stopped with exit {first.rc}")


def limit_for(reference: Reference, mechanism: Mechanism, fraction: float) -> int | None:
    """Bytes to allow: a fraction of the measured peak. A cgroup is charged for private
    memory (shared libraries are charged to whoever loaded them first), so its limit
    follows USS; RLIMIT_AS caps address space, so it follows VMS."""
    if mechanism.kind == "rlimit_as":
        peak = reference.vms_bytes_max
    else:
        peak = reference.uss_bytes_max or reference.rss_bytes_max
    if not peak:
        return None
    return max(LIMIT_BYTES_MIN, int(peak * fraction))


def _execute_limit(
    ctx: DriveContext, exp: FaultExperiment, seed: int, reference: Reference, mechanism: Mechanism
) -> FaultHistory:
    if mechanism.kind == "none":
        return skipped_history(exp, seed, mechanism.note, host_frozen=ctx.host_frozen())
    limit_bytes = limit_for(reference, mechanism, float(exp.schedule["fraction"]))
    if limit_bytes is None:
        return skipped_history(
            exp,
            seed,
            "the reference run's memory peak was not measured",
            host_frozen=ctx.host_frozen(),
        )
    space = Workspace.open(ctx, exp)
    workdir, logs = space.workdir, space.logs
    notes = [mechanism.note] if mechanism.note else []
    if mechanism.kind == "rlimit_as":
        armed = f"RLIMIT_AS={limit_bytes} B"
        first = run_attempt(
            ctx,
            workdir,
            0,
            resume=False,
            fault=FAULT_MEMORY,
            armed=armed,
            log_dir=logs,
            preexec=limit_address_space(limit_bytes),
        ).attempt
    else:
        name = limit_files(mechanism.kind)[0]
        armed = f"{mechanism.kind} {name}={limit_bytes} B"
        with cgroup(mechanism, limit_bytes) as group:
            first = run_attempt(
                ctx,
                workdir,
                0,
                resume=False,
                fault=FAULT_MEMORY,
                armed=armed,
                log_dir=logs,
                preexec=join_cgroup(group),
            ).attempt
            kills = oom_kills(group, mechanism.kind)
        notes.append(f"kernel OOM kills in the group: {kills}")
    return conclude(ctx, exp, seed, space, [first], notes, injected=bit(first))


class Memory(FaultKind):
    name = "memory"

    def plan(self, ctx: PlanContext) -> list[FaultExperiment]:
        return plan(ctx.reference, ctx.seed)

    def inject(self, ctx: InjectContext, experiment: FaultExperiment) -> FaultHistory:
        return execute(ctx.run, experiment, ctx.seed, ctx.reference, detect_here())


KIND = Memory()
