"""What every readiness experiment shares: its context, its helpers, and the rule that a
wall-clock measurement taken while the host took the CPU is inconclusive, not a failure
(``timing_status``; the host rule itself is preflight.host.rule). What an experiment
finds is the evidence contract's Finding and Measurement (preflight.evidence).

An experiment is three steps in the Jepsen shape of preflight.check + preflight.check.checker:
``run(ctx) -> Observation`` (I/O: drives the job), ``judge(observation, bounds) -> Finding``
(pure), and ``applicable(spec) -> reason | None`` (pure: None when the spec gives what the
experiment needs)."""

from __future__ import annotations

import glob
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from preflight.evidence import Finding, Measurement, Status
from preflight.host.rule import disturbed
from preflight.run.handles import WorkloadHandle
from preflight.run.job import Run, run_aux
from preflight.spec.parse import WorkloadSpec

PASS, FAIL = Status.PASSED, Status.FAILED
INCONCLUSIVE, NOT_APPLICABLE = Status.INCONCLUSIVE, Status.NOT_APPLICABLE
STATUSES = tuple(Status)
AUX_TIMEOUT_FLOOR_S = 60.0
AUX_TIMEOUT_FACTOR = 10.0  # a helper (verify, fingerprint) may take 10x the job's own run


@dataclass(frozen=True)
class Context:
    """Everything an experiment's run needs; frozen so a plan can be replayed as it was."""

    spec: WorkloadSpec
    tier: str
    base_dir: Path
    seed: int = 0
    # The gate's bounds at this tier, by requirement key (preflight.gate.policy).
    bounds: Mapping[str, float] = field(default_factory=dict)
    attempt: int = 1  # > 1: a rerun after an inconclusive result

    def handle(self, label: str, sample_interval_s: float = 0.2) -> WorkloadHandle:
        directory = self.base_dir / f"{self.spec.name}-{label}-{self.attempt}"
        directory.mkdir(parents=True, exist_ok=True)
        return WorkloadHandle(self.spec, tier=self.tier, base_dir=directory,
                              sample_interval_s=sample_interval_s)


class Experiment(Protocol):
    name: str
    timing: bool  # a wall-clock measurement: runs alone, and may be inconclusive
    metrics: tuple[str, ...]  # the policy metrics its measurements give evidence for

    def applicable(self, spec: WorkloadSpec) -> str | None: ...

    def execute(self, ctx: Context) -> Finding: ...


# Experiments read the evidence contract's types through here (preflight.evidence).
__all__ = ["Finding", "Measurement", "Status"]


def timing_status(failed: bool, steal: float | None, frozen: float | None,
                  neighbours: float | None = None) -> Status:
    """A timing verdict: a failure on a disturbed machine is inconclusive (pure)."""
    if not failed:
        return PASS
    return INCONCLUSIVE if disturbed(steal, frozen, neighbours) else FAIL


def save_evidence(ctx: Context, name: str, doc: Mapping[str, Any]) -> str:
    """Write one evidence document as JSON into ``ctx.base_dir``; returns its path relative
    to ``ctx.base_dir`` (what Finding.artifacts carries)."""
    from preflight.durable.atomic import atomic_write

    ctx.base_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(ctx.base_dir / name, dict(doc))
    return name


def checkpoint_files(spec: WorkloadSpec, params: Mapping[str, object]) -> list[str]:
    files: list[str] = []
    for pattern in spec.checkpoint_globs(params):
        files += [p for p in glob.glob(pattern) if Path(p).is_file()]
    return files


def aux_timeout_s(run: Run) -> float:
    """Helpers (verify, fingerprint, items) are bounded by the job's own measured run."""
    return max(AUX_TIMEOUT_FLOOR_S, AUX_TIMEOUT_FACTOR * run.duration_s)


def aux(run: Run, key: str, template: tuple[str, ...] | None = None) -> tuple[int | None, str]:
    """Run the spec's ``key`` helper for ``run``'s params: (exit code or None, stdout)."""
    argv = template if template is not None else getattr(run.spec, key)
    if argv is None:
        return None, ""
    done = run_aux(run.spec, argv, run.params, aux_timeout_s(run), key=key)
    return done.returncode, done.stdout.strip()


def tail(run: Run, limit: int = 600) -> str:
    text = run.stderr_text().strip()
    return text[-limit:] if text else "(no stderr)"


def replay_command(spec: WorkloadSpec, tier: str, experiment: str) -> str:
    return shlex.join(["preflight", "gate", "--spec", str(spec.source), "--workload", spec.name,
                       "--scale", tier, "--only", experiment])
