"""The workload API in one import: specs (preflight.spec.parse), progress followers
(preflight.run.progress), runs (preflight.run.job) and handles (preflight.run.handles). Users'
code and tests
import from here; each concept lives in its own module."""

from __future__ import annotations

from preflight.run.handles import FAULTS_ENV, WorkloadHandle, Workloads
from preflight.run.job import Run, RunError, RunTimeoutError, base_env, prepare, run_aux
from preflight.run.procs import PARENT_GONE_EXIT
from preflight.run.progress import FileProgress, NoProgress, Progress, RegexProgress
from preflight.spec.parse import (
    ARGV_KEYS,
    BUILTIN_PLACEHOLDERS,
    DEFAULT_SEED,
    PYPROJECT_FILE,
    SPEC_KEYS,
    WORKLOADS_FILE,
    SpecError,
    WorkloadSpec,
    find_spec,
    load_spec,
    load_specs,
    parse_spec,
    placeholders,
    render,
)

__all__ = [
    "ARGV_KEYS", "BUILTIN_PLACEHOLDERS", "DEFAULT_SEED", "FAULTS_ENV", "PARENT_GONE_EXIT",
    "PYPROJECT_FILE", "SPEC_KEYS", "WORKLOADS_FILE", "FileProgress", "NoProgress", "Progress",
    "RegexProgress", "Run", "RunError", "RunTimeoutError", "SpecError", "WorkloadHandle",
    "WorkloadSpec", "Workloads", "base_env", "find_spec", "load_spec", "load_specs",
    "parse_spec", "placeholders", "prepare", "render", "run_aux",
]
