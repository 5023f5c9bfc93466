"""Lifecycle experiments: the job completes with checkpoints, progress and valid output;
a second run on a live workdir is refused; a changed configuration on an existing workdir is
refused, and neither refusal damages what was committed."""

from __future__ import annotations

import signal
from dataclasses import dataclass

from preflight.experiments.base import (
    FAIL,
    PASS,
    Context,
    Finding,
    Measurement,
    aux,
    checkpoint_files,
    tail,
)
from preflight.run.progress import unpublished
from preflight.spec.parse import WorkloadSpec

PROGRESS_WAIT_S = 300.0
EXCLUSION_SCALE = 25  # long enough that the pause lands mid-run even for a quick job


# ------------------------------------------------------------------------- completion


@dataclass(frozen=True)
class CompletionObservation:
    returncode: int | None
    timed_out: bool
    progress: tuple[int, int] | None  # the job's last (done, total)
    published_monotone: bool
    checkpoint_files: int
    checkpoints_declared: bool
    verify_rc: int | None  # None: the spec has no verify command
    wall_s: float
    stderr_tail: str
    leftovers: tuple[str, ...] = ()  # processes it left running outside its group
    # Why no progress was seen though the spec names a source (preflight.run.progress
    # .unpublished: names the key); "" when the spec names none.
    progress_unpublished: str = ""


def judge_completion(obs: CompletionObservation) -> Finding:
    """Completed means exit 0, progress reached its total (when the spec names a progress
    source, the job must publish on it), checkpoints were written where the spec says, and
    the output verifies (pure)."""
    problems = []
    if obs.returncode != 0:
        ended = "timed out" if obs.timed_out else f"exit {obs.returncode}"
        problems.append(f"the job did not complete ({ended}): {obs.stderr_tail}")
    if obs.progress is None and obs.progress_unpublished:
        problems.append(obs.progress_unpublished)
    if obs.progress is not None and obs.progress[1] and obs.progress[0] != obs.progress[1]:
        problems.append(f"progress ended at {obs.progress[0]}/{obs.progress[1]}")
    if not obs.published_monotone:
        problems.append("published progress went backwards")
    if obs.checkpoints_declared and not obs.checkpoint_files:
        problems.append("no file matches the spec's checkpoints globs")
    if obs.verify_rc not in (None, 0):
        problems.append(f"verify exited {obs.verify_rc}")
    if obs.leftovers:
        problems.append(f"the job left {len(obs.leftovers)} process(es) running outside its "
                        f"process group (killed; first: {obs.leftovers[0]})")
    measurements = (Measurement("wall_s", round(obs.wall_s, 3), "s"),
                    Measurement("checkpoint_files", obs.checkpoint_files, "files"))
    if obs.progress is not None:
        measurements += (Measurement("units", obs.progress[1] or obs.progress[0], "units"),)
    return Finding("completion", FAIL if problems else PASS, measurements, "; ".join(problems))


class Completion:
    name, timing, metrics = "completion", False, ()

    def applicable(self, spec: WorkloadSpec) -> str | None:
        return None

    def execute(self, ctx: Context) -> Finding:
        run = ctx.handle(self.name).run()
        published = [s.progress_done for s in run.samples if s.progress_done is not None]
        verify_rc = aux(run, "verify")[0] if run.returncode == 0 else None
        return judge_completion(CompletionObservation(
            run.returncode, run.timed_out, run.progress(), published == sorted(published),
            len(checkpoint_files(run.spec, run.params)), bool(run.spec.checkpoints),
            verify_rc, run.duration_s, tail(run),
            tuple(f"pid {p.pid} {p.cmdline!r}" for p in run.leftovers),
            unpublished(run.spec.progress, run.spec.progress_regex)))


# ------------------------------------------------------------------------- exclusion


@dataclass(frozen=True)
class ExclusionObservation:
    first_progressed: bool
    second_rc: int | None
    expected_rc: int
    first_rc: int | None
    verify_rc: int | None
    second_stderr: str


def judge_exclusion(obs: ExclusionObservation) -> Finding:
    problems = []
    if not obs.first_progressed:
        problems.append("the first run never made progress")
    elif obs.second_rc != obs.expected_rc:
        problems.append(f"a second run on the live workdir exited {obs.second_rc}, expected "
                        f"{obs.expected_rc} (refused): {obs.second_stderr}")
    if obs.first_rc not in (0, None) or obs.verify_rc not in (None, 0):
        problems.append(f"the refused run damaged the first run (exit {obs.first_rc}, verify "
                        f"{obs.verify_rc})")
    found = (Measurement("second_run_exit", -1 if obs.second_rc is None else obs.second_rc,
                         "exit code"),)
    return Finding("exclusion", FAIL if problems else PASS, found, "; ".join(problems))


class Exclusion:
    name, timing, metrics = "exclusion", False, ()

    def applicable(self, spec: WorkloadSpec) -> str | None:
        if spec.readiness.concurrent_exit is None:
            return "readiness.concurrent_exit not given (the exit code of a refused second run)"
        if spec.progress is None and spec.progress_regex is None:
            return "the spec publishes no progress, so a run cannot be paused mid-way"
        return None

    def execute(self, ctx: Context) -> Finding:
        """The first run is paused (SIGSTOP keeps its lock) so the second always meets a
        live holder, however fast the job is."""
        handle = ctx.handle(self.name)
        params = handle.params()
        total = ctx.spec.readiness.total_param
        if total is not None:
            params[total] = int(params[total]) * EXCLUSION_SCALE
        first = handle.start(params)
        if not first.wait_for_progress(1, PROGRESS_WAIT_S):
            first.close()
            return judge_exclusion(ExclusionObservation(False, None, 0, None, None, ""))
        first.kill(signal.SIGSTOP)
        try:
            second = handle.run(params, workdir=first.workdir)
        finally:
            first.kill(signal.SIGCONT)
        first_rc = first.wait(handle.timeout_s)
        verify_rc = aux(first, "verify")[0] if first_rc == 0 else None
        return judge_exclusion(ExclusionObservation(
            True, second.returncode, int(ctx.spec.readiness.concurrent_exit or 0), first_rc,
            verify_rc, tail(second)))


# ------------------------------------------------------------------------- config drift


@dataclass(frozen=True)
class DriftObservation:
    first_rc: int | None
    second_rc: int | None
    param: str
    verify_rc: int | None
    fingerprint_before: str | None
    fingerprint_after: str | None
    second_stderr: str


def judge_drift(obs: DriftObservation) -> Finding:
    """A changed parameter on an existing workdir must be refused (non-zero exit) and leave
    the committed output as it was (pure)."""
    problems = []
    if obs.first_rc != 0:
        problems.append(f"the first run failed (exit {obs.first_rc})")
    elif obs.second_rc == 0:
        problems.append(f"a run with {obs.param} changed on the finished workdir exited 0: "
                        "config drift was not refused")
    if obs.verify_rc not in (None, 0):
        problems.append(f"the drifted run damaged the committed output (verify {obs.verify_rc})")
    if obs.fingerprint_before != obs.fingerprint_after:
        problems.append("the drifted run changed the committed output's fingerprint")
    found = (Measurement("drift_exit", -1 if obs.second_rc is None else obs.second_rc,
                         "exit code"),)
    return Finding("drift", FAIL if problems else PASS, found, "; ".join(problems))


class Drift:
    name, timing, metrics = "drift", False, ()

    def applicable(self, spec: WorkloadSpec) -> str | None:
        if spec.readiness.drift_param is None:
            return "readiness.drift_param not given (a parameter whose change is config drift)"
        return None

    def execute(self, ctx: Context) -> Finding:
        param = str(ctx.spec.readiness.drift_param)
        handle = ctx.handle(self.name)
        first = handle.run()
        if first.returncode != 0:
            return judge_drift(DriftObservation(first.returncode, None, param, None, None, None,
                                                tail(first)))
        before = aux(first, "fingerprint")[1] or None
        drifted = handle.params()
        drifted[param] = int(drifted.get(param, 0)) + 1  # type: ignore[call-overload]
        second = handle.run(drifted, workdir=first.workdir)
        verify_rc = aux(first, "verify")[0]
        after = aux(first, "fingerprint")[1] or None
        return judge_drift(DriftObservation(first.returncode, second.returncode, param,
                                            verify_rc, before, after, tail(second)))
