"""Workload handles for tests and experiments: a spec bound to a tier, fresh workdirs, and
recorded runs (the pytest `workload` fixture and preflight.experiments use them)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

# FAULTS_ENV: the durable fault-point spec a job reads (docs/contract.md "Fault points").
from preflight.durable.faults import ENV_FAULTS as FAULTS_ENV
from preflight.run.job import Run, prepare
from preflight.spec import tiers
from preflight.spec.parse import WorkloadSpec, find_spec, load_spec


class WorkloadHandle:
    """A workload bound to a test: sizes of the test's tier, fresh workdirs, recorded runs.

    `run()` starts a job and waits for it (bounded); `start()` returns the running Run for
    callers that act on it mid-flight (kills, faults). Every Run is closed on `close()`."""

    def __init__(
        self,
        spec: WorkloadSpec,
        *,
        tier: str,
        base_dir: Path,
        sample_interval_s: float = 0.2,
        timeout_s: float | None = None,
        on_run: Callable[[str, Run], None] | None = None,
    ) -> None:
        self.spec = spec
        self.tier = tier
        self.base_dir = base_dir
        self.sample_interval_s = sample_interval_s
        self.timeout_s = timeout_s or spec.timeout_s or tiers.get_tier(tier).run_timeout_s
        self._on_run = on_run
        self._runs: list[Run] = []
        self._prepared: Path | None = None

    @property
    def runs(self) -> list[Run]:
        return list(self._runs)

    def params(self, overrides: Mapping[str, object] | None = None) -> dict[str, object]:
        """The tier's sizes, plus {prepared} when the spec has a `prepare` step (run once
        per handle, with the tier's sizes, before the first job needs it)."""
        values: dict[str, object] = {**self.spec.params(self.tier), **(overrides or {})}
        if self.spec.prepare is not None and "prepared" not in values:
            if self._prepared is None:
                self._prepared = prepare(
                    self.spec, self.spec.params(self.tier), self.base_dir / "prepared",
                    self.timeout_s,
                )
            values["prepared"] = str(self._prepared)
        return values

    def start(
        self,
        params: Mapping[str, object] | None = None,
        *,
        faults: str | None = None,
        env: Mapping[str, str] | None = None,
        resume: bool = False,
        workdir: str | os.PathLike[str] | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> Run:
        """Start a run. `faults` is a fault-point spec passed as PREFLIGHT_FAULTS; a resume
        normally passes the interrupted run's `workdir`."""
        number = len(self._runs) + 1
        default_dir = self.base_dir / f"{self.spec.name}-{number}"
        chosen = Path(workdir) if workdir is not None else default_dir
        extra_env = {**(env or {}), **({FAULTS_ENV: faults} if faults is not None else {})}
        run = Run(
            self.spec,
            chosen,
            self.params(params),
            env=extra_env,
            resume=resume,
            sample_interval_s=self.sample_interval_s,
            log_dir=self.base_dir / f"{self.spec.name}-{number}.logs",
            preexec=preexec,
        )
        self._runs.append(run)
        return run.start()

    def run(
        self,
        params: Mapping[str, object] | None = None,
        *,
        faults: str | None = None,
        timeout_s: float | None = None,
        env: Mapping[str, str] | None = None,
        resume: bool = False,
        workdir: str | os.PathLike[str] | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> Run:
        """Start a run, wait at most `timeout_s` (default: spec, else tier), record it."""
        run = self.start(
            params, faults=faults, env=env, resume=resume, workdir=workdir, preexec=preexec
        )
        run.wait(timeout_s if timeout_s is not None else self.timeout_s)
        if self._on_run is not None:
            self._on_run(f"{self.spec.name}#{len(self._runs)}", run)
        return run

    def close(self) -> None:
        for run in self._runs:
            run.close()


class Workloads:
    """The `workload` fixture: `workload(name, spec_file=None)` -> WorkloadHandle."""

    def __init__(
        self,
        search: Sequence[str | os.PathLike[str]],
        *,
        tier: str,
        base_dir: Path,
        sample_interval_s: float = 0.2,
        on_run: Callable[[str, Run], None] | None = None,
    ) -> None:
        self.search = [Path(p) for p in search]
        self.tier = tier
        self.base_dir = base_dir
        self.sample_interval_s = sample_interval_s
        self._on_run = on_run
        self._handles: list[WorkloadHandle] = []

    def __call__(
        self, name: str, spec_file: str | os.PathLike[str] | None = None
    ) -> WorkloadHandle:
        spec = load_spec(name, spec_file) if spec_file is not None else find_spec(name, self.search)
        handle = WorkloadHandle(
            spec,
            tier=self.tier,
            base_dir=self.base_dir,
            sample_interval_s=self.sample_interval_s,
            on_run=self._on_run,
        )
        self._handles.append(handle)
        return handle

    def close(self) -> None:
        for handle in self._handles:
            handle.close()
