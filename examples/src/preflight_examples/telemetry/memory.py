"""Resident memory of the job's process tree, and the memory budget it is held to."""

from __future__ import annotations

import os

import psutil

CHILDREN_MAX = 256  # a job with more processes than this is summed over the first ones
CGROUP_FILES = (
    "/sys/fs/cgroup/memory.max",  # cgroup v2
    "/sys/fs/cgroup/memory/memory.limit_in_bytes",  # cgroup v1
)
CGROUP_BYTES_MAX = 64


def tree_rss_bytes(pid: int | None = None) -> int:
    """RSS of a process and its descendants (datagen's workers count against the job).

    Processes that exit while being read are skipped; 0 only if `pid` itself is gone."""
    try:
        root = psutil.Process(pid if pid is not None else os.getpid())
        procs = [root, *root.children(recursive=True)[:CHILDREN_MAX]]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0
    total = 0
    for proc in procs:
        try:
            total += int(proc.memory_info().rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def _cgroup_limit_bytes(path: str) -> int | None:
    try:
        with open(path, "rb") as handle:
            text = handle.read(CGROUP_BYTES_MAX).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def default_budget_bytes() -> int:
    """The tighter of this cgroup's memory limit and the machine's physical memory."""
    physical = int(psutil.virtual_memory().total)
    limits = [physical, *filter(None, (_cgroup_limit_bytes(p) for p in CGROUP_FILES))]
    return min(limits)
