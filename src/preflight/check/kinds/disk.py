"""Disk full: the job's workdir on a filesystem smaller than its output, then space is freed.

As root the workdir is a size-limited tmpfs, grown in place by a remount after the failure
(same paths, so a job that stores absolute paths resumes as it would in production).
Otherwise RLIMIT_FSIZE caps every file the job writes (SIGXFSZ ignored, so writes fail with
EFBIG instead of killing the job), and the resume runs without the cap. The job must fail
with a clear error, and the resumed run must be exact: a partially committed file would
break the resume or change the fingerprint.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from preflight.check.drive.runner import DriveContext, run_attempt
from preflight.check.drive.schedule import FaultExperiment, stream
from preflight.check.drive.sequence import Injected, Workspace, conclude, skippable, skipped_history
from preflight.check.history import FAULT_DISK, Attempt, FaultHistory, Reference
from preflight.check.kind import FaultKind, InjectContext, PlanContext

PAGE_BYTES = 4096
FS_BYTES_MIN = 8 * PAGE_BYTES
FRACTION_LOW, FRACTION_HIGH = 0.3, 0.6
FREED_FACTOR = 4  # after the failure the filesystem grows to at least 4x the footprint

MOUNT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class DiskMechanism:
    kind: str  # "tmpfs" | "rlimit_fsize" | "none"
    note: str = ""


def detect(euid: int, mount_binary: str | None, has_rlimit_fsize: bool) -> DiskMechanism:
    """The best disk-full mechanism (pure over the facts it is given)."""
    if euid == 0 and mount_binary:
        return DiskMechanism("tmpfs")
    if has_rlimit_fsize:
        why = "not root" if euid != 0 else "no mount binary"
        return DiskMechanism("rlimit_fsize", f"{why}: RLIMIT_FSIZE caps file size instead")
    return DiskMechanism("none", "no way to fill a disk here (not root, no RLIMIT_FSIZE)")


def detect_here() -> DiskMechanism:
    return detect(os.geteuid(), shutil.which("mount"), hasattr(resource, "RLIMIT_FSIZE"))


def _mount_cmd(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=MOUNT_TIMEOUT_S)
    if done.returncode != 0:
        raise OSError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")


@contextlib.contextmanager
def small_tmpfs(mountpoint: Path, size_bytes: int) -> Iterator[Path]:
    """A tmpfs of ``size_bytes`` at ``mountpoint``, always unmounted afterwards."""
    assert size_bytes >= PAGE_BYTES
    mountpoint.mkdir(parents=True, exist_ok=True)
    _mount_cmd(
        [
            "mount",
            "-t",
            "tmpfs",
            "-o",
            f"size={size_bytes},mode=0755",
            "preflight-disk",
            str(mountpoint),
        ]
    )
    try:
        yield mountpoint
    finally:
        try:
            _mount_cmd(["umount", str(mountpoint)])
        except OSError:
            # Busy (a straggler still holds a file): detach now, the kernel frees it later.
            _mount_cmd(["umount", "-l", str(mountpoint)])


def grow_tmpfs(mountpoint: Path, size_bytes: int) -> None:
    _mount_cmd(["mount", "-o", f"remount,size={size_bytes}", str(mountpoint)])


def cap_file_size(limit_bytes: int) -> Callable[[], None]:
    def cap() -> None:
        # Ignored, not defaulted: SIGXFSZ would kill the job instead of failing the write.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return cap


def plan(reference: Reference, seed: int) -> list[FaultExperiment]:
    rng = stream(seed, "disk-full")
    fraction = round(rng.uniform(FRACTION_LOW, FRACTION_HIGH), 3)
    return [FaultExperiment("disk-full", "disk", {"fraction": fraction, "fault_exit": "disk"})]


def fs_size_for(reference: Reference, fraction: float) -> int | None:
    if not reference.workdir_bytes:
        return None
    size = int(reference.workdir_bytes * fraction)
    return max(FS_BYTES_MIN, size - size % PAGE_BYTES)


def freed_size(base: Path, reference: Reference) -> int:
    """The size after "space is freed": as much as the real disk under the experiment has
    (a job may demand a margin of free space before it starts), at least 4x the footprint.
    A tmpfs size is only a cap: memory is used by what is written, not by the size."""
    free_bytes = shutil.disk_usage(base).free
    return max(FREED_FACTOR * (reference.workdir_bytes or 0), free_bytes, FS_BYTES_MIN)


@skippable
def execute(
    ctx: DriveContext,
    exp: FaultExperiment,
    seed: int,
    reference: Reference,
    mechanism: DiskMechanism,
) -> FaultHistory:
    if mechanism.kind == "none":
        return skipped_history(exp, seed, mechanism.note, host_frozen=ctx.host_frozen())
    fraction = float(exp.schedule["fraction"])
    if mechanism.kind == "rlimit_fsize":
        return _execute_fsize(ctx, exp, seed, reference, mechanism, fraction)
    size_bytes = fs_size_for(reference, fraction)
    if size_bytes is None:
        return skipped_history(
            exp,
            seed,
            "the reference run wrote nothing to its workdir",
            host_frozen=ctx.host_frozen(),
        )
    space = Workspace.open(ctx, exp)  # logs never on the small filesystem: errors survive
    with small_tmpfs(space.base / "fs", size_bytes) as mountpoint:
        workdir = mountpoint / "work"
        first = run_attempt(
            ctx,
            workdir,
            0,
            resume=False,
            fault=FAULT_DISK,
            armed=f"tmpfs size={size_bytes} B",
            log_dir=space.logs,
        ).attempt
        grow_tmpfs(mountpoint, freed_size(space.base, reference))
        return conclude(ctx, exp, seed, space, [first], [], injected=bit(first), workdir=workdir)


def _execute_fsize(
    ctx: DriveContext,
    exp: FaultExperiment,
    seed: int,
    reference: Reference,
    mechanism: DiskMechanism,
    fraction: float,
) -> FaultHistory:
    if not reference.file_bytes_max:
        return skipped_history(
            exp, seed, "the reference run wrote no file to cap", host_frozen=ctx.host_frozen()
        )
    limit_bytes = max(1, int(reference.file_bytes_max * fraction))
    space = Workspace.open(ctx, exp)
    first = run_attempt(
        ctx,
        space.workdir,
        0,
        resume=False,
        fault=FAULT_DISK,
        armed=f"RLIMIT_FSIZE={limit_bytes} B",
        log_dir=space.logs,
        preexec=cap_file_size(limit_bytes),
    ).attempt
    return conclude(ctx, exp, seed, space, [first], [mechanism.note], injected=bit(first))


def bit(first: Attempt) -> Injected:
    """A full disk is injected when the job hit it (it did not finish on the small fs)."""
    if first.rc == 0:
        return Injected(False, "the job finished within the limit: the disk never filled")
    return Injected(True, f"{first.armed}: the job stopped with exit {first.rc}")


class Disk(FaultKind):
    name = "disk"

    def plan(self, ctx: PlanContext) -> list[FaultExperiment]:
        return plan(ctx.reference, ctx.seed)

    def inject(self, ctx: InjectContext, experiment: FaultExperiment) -> FaultHistory:
        return execute(ctx.run, experiment, ctx.seed, ctx.reference, detect_here())


KIND = Disk()
