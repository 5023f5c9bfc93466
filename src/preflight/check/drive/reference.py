"""The uninterrupted reference run, and what the battery learns from it.

One traced run gives everything the experiments need: the fingerprint and verify result to
compare with, the fault points the job passes (PREFLIGHT_FAULTS_TRACE), the checkpoint
interval (progress between checkpoint-file changes), the memory peak, and the disk footprint.
"""

from __future__ import annotations

import os
from pathlib import Path

from preflight.check.drive.runner import DriveContext, job_env, run_attempt
from preflight.check.drive.sequence import Finish, finish
from preflight.check.history import Reference
from preflight.run.progress import unpublished

TRACE_BYTES_MAX = 64 << 20
TRACE_NAME = "trace.txt"


def parse_trace(text: str) -> tuple[tuple[str, ...], dict[str, int]]:
    """Fault points in order of first hit, and how often each was hit (pure)."""
    order: list[str] = []
    hits: dict[str, int] = {}
    for line in text.splitlines():
        name = line.strip()
        if not name:
            continue
        if name not in hits:
            order.append(name)
            hits[name] = 0
        hits[name] += 1
    return tuple(order), hits


def merge_adjacent(values: list[int]) -> list[int]:
    """Distinct positive values with runs of neighbours (differing by 1) merged into their
    largest: one checkpoint touches several files, seen a poll apart (pure)."""
    merged: list[int] = []
    for value in sorted({v for v in values if v > 0}):
        if merged and value - merged[-1] <= 1:
            merged[-1] = value
        else:
            merged.append(value)
    return merged


def _max_gap(values: list[int], merge: bool) -> int | None:
    points = merge_adjacent(values) if merge else sorted({v for v in values if v > 0})
    if not points:
        return None
    points = [0, *points]
    return max(b - a for a, b in zip(points, points[1:], strict=False))


def derive_ckpt_interval(
    commit_dones: list[int], dones: list[int], option: int | None
) -> tuple[int | None, str]:
    """The checkpoint interval in progress units, and where it came from (pure).

    Preference: the --ckpt-interval option; else the largest progress gap between
    checkpoint-file changes (from 0, since a kill before the first checkpoint loses
    everything so far); else the largest gap between published progress values."""
    if option is not None:
        return option, "--ckpt-interval"
    gap = _max_gap(commit_dones, merge=True)
    if gap is not None:
        return gap, f"largest progress gap between checkpoint-file changes ({len(commit_dones)})"
    gap = _max_gap(dones, merge=False)
    if gap is not None:
        return gap, "largest gap between published progress values (no checkpoint changes seen)"
    return None, "no progress published"


def progress_missing(ctx: DriveContext, dones: list[int], total: int | None) -> str:
    """Why the reference run published no progress though its spec names a source ("" when
    it published some, or the spec names none)."""
    if dones or total:
        return ""
    return unpublished(ctx.spec.progress, ctx.spec.progress_regex)


def _finish_failure(ctx: DriveContext, done: Finish | None) -> str:
    """Why a reference run that exited 0 still gave no fingerprint: the fingerprint
    command's own failure (its argv and exit, or the timeout that killed it)."""
    if done is None or done.fingerprint is not None or ctx.spec.fingerprint is None:
        return ""
    said = [n for n in done.notes if n.startswith("fingerprint") or "'fingerprint'" in n]
    return "; ".join(said) or "the fingerprint command printed nothing"


def disk_usage(workdir: Path) -> tuple[int, int]:
    """(allocated bytes of every file under workdir, the largest file's size)."""
    used_bytes, largest_bytes = 0, 0
    for dirpath, _dirs, files in os.walk(workdir):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            used_bytes += st.st_blocks * 512
            largest_bytes = max(largest_bytes, st.st_size)
    return used_bytes, largest_bytes


def _read_trace(path: Path) -> str:
    if not path.exists():
        return ""
    with open(path, "rb") as handle:
        return handle.read(TRACE_BYTES_MAX).decode("utf-8", errors="replace")


def run_reference(ctx: DriveContext, ckpt_interval: int | None = None) -> tuple[Reference, Path]:
    """Run the job once, uninterrupted and traced; the Reference and its workdir."""
    base = ctx.exp_dir("reference")
    workdir, trace = base / "work", base / TRACE_NAME
    outcome = run_attempt(
        ctx,
        workdir,
        0,
        resume=False,
        env=job_env(trace=str(trace)),
        log_dir=base / "logs",
        track_commits=True,
        watch_windows=True,
    )
    attempt = outcome.attempt
    done = finish(ctx, workdir) if attempt.rc == 0 else None
    points, hits = parse_trace(_read_trace(trace))
    interval, source = derive_ckpt_interval(outcome.commit_dones, outcome.dones, ckpt_interval)
    used_bytes, largest_bytes = disk_usage(workdir)
    reference = Reference(
        rc=-1 if attempt.rc is None else attempt.rc,
        fingerprint=done.fingerprint if done else None,
        verify_rc=done.verify_rc if done else None,
        duration_s=attempt.duration_s,
        total=outcome.total,
        ckpt_interval=interval,
        ckpt_interval_source=source,
        ckpt_commits=len(set(outcome.commit_dones)),
        write_windows=outcome.windows_by_glob,
        write_temps=outcome.temps,
        points=points,
        point_hits=hits,
        rss_bytes_max=outcome.rss_bytes_max,
        uss_bytes_max=outcome.uss_bytes_max,
        vms_bytes_max=outcome.vms_bytes_max,
        workdir_bytes=used_bytes,
        file_bytes_max=largest_bytes,
        stderr_tail=attempt.stderr_tail if attempt.rc != 0 else _finish_failure(ctx, done),
        progress_missing=progress_missing(ctx, outcome.dones, outcome.total),
        published=tuple(outcome.dones),
    )
    return reference, workdir
