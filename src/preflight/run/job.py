"""A `Run`: any job driven as a subprocess, sampled and bounded. It starts the job in its own
session and process group, tells the kernel to kill it if the harness dies, captures its
output to files, follows its progress, samples its process tree, and always kills the whole
group on timeout or teardown. Every wait has a bound."""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from preflight.host.watch import HostFigures, HostWatch, frozen_asked
from preflight.run.procs import (
    ENV_RUN_TOKEN,
    Leftover,
    _child_setup,
    _kill_group,
    _read_tail,
    _tail_text,
    kill_leftovers,
)
from preflight.run.progress import FileProgress, NoProgress, RegexProgress
from preflight.run.sampler import Sample, Sampler
from preflight.spec.fields import SpecError
from preflight.spec.parse import WorkloadSpec

# Bounds for the Run's own waits and reads.
REAP_TIMEOUT_S = 10.0  # SIGKILL is not ignorable; a group still alive after this is a bug
TERMINATE_GRACE_S = 5.0
PROGRESS_POLL_S = 0.02
_LOG_SEQ = itertools.count(1)


class RunError(RuntimeError):
    """A Run could not be started, or its process group would not die."""


class RunTimeoutError(RunError, TimeoutError):
    """A bounded wait for a job (or an auxiliary command) ran out; the group was killed."""


class CommandNotFoundError(RunError, SpecError):
    """The spec's argv names a program that does not exist (or cannot be executed): bad
    input (the CLIs exit 2), with the message naming the spec key."""


def _unstartable(where: str, key: str, argv: Sequence[str], exc: BaseException) -> RunError:
    """The error for a Popen that failed: bad input when the program is missing or not
    executable, else the harness's own trouble."""
    program = argv[0] if argv else "(empty argv)"
    if isinstance(exc, FileNotFoundError | PermissionError | NotADirectoryError):
        why = "not found" if isinstance(exc, FileNotFoundError) else "not executable"
        return CommandNotFoundError(
            f"{where} key {key!r}: cannot start {list(argv)!r}: program {program!r} {why} "
            f"(on the job's PATH, or as a path): {exc.strerror or exc}"
        )
    return RunError(f"{where} key {key!r}: cannot start {list(argv)!r}: {exc}")


def base_env() -> dict[str, str]:
    """The harness's environment with its interpreter's bin directory first on PATH.

    A spec names console scripts as users type them (``datagen generate ...``); when the
    harness runs from a virtual environment that is not activated, those scripts live beside
    ``sys.executable`` and would otherwise not be found.
    """
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    parts = env.get("PATH", "").split(os.pathsep)
    if bin_dir not in parts:
        env["PATH"] = os.pathsep.join([bin_dir, *filter(None, parts)])
    return env


class Run:
    """One execution of a workload: its own session and process group, sampled, bounded.

    PR_SET_PDEATHSIG fires when the *thread* that started the child exits, so start Runs
    from a thread that outlives them (the main thread, in tests).
    """

    def __init__(
        self,
        spec: WorkloadSpec,
        workdir: str | os.PathLike[str],
        params: Mapping[str, object],
        *,
        env: Mapping[str, str] | None = None,
        resume: bool = False,
        sample_interval_s: float = 0.2,
        log_dir: str | os.PathLike[str] | None = None,
        preexec: Callable[[], None] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        watch_frozen: bool | None = None,
    ) -> None:
        if not sample_interval_s > 0:
            raise ValueError(f"sample_interval_s must be positive, got {sample_interval_s}")
        self.spec = spec
        self.workdir = Path(workdir).absolute()
        self.params: dict[str, object] = {**spec.base_params(self.workdir), **params}
        self.params["workdir"] = str(self.workdir)
        self.resume = resume
        self.argv = spec.job_argv(self.params, resume=resume)
        self.token = secrets.token_hex(8)
        self.env = {
            **base_env(),
            **spec.job_env(self.params),
            **(env or {}),
            ENV_RUN_TOKEN: self.token,
        }
        self.sample_interval_s = sample_interval_s
        self.cwd = Path(cwd) if cwd is not None else spec.spec_dir
        # Logs live beside the workdir, not in it: the job owns its workdir, and a verifier
        # may rightly reject files it did not write.
        self.log_dir = (
            Path(log_dir) if log_dir else self.workdir.with_name(self.workdir.name + ".logs")
        )
        kind = "resume" if resume else "run"
        stem = f"{spec.name}.{kind}.{os.getpid()}-{next(_LOG_SEQ)}"
        self.stdout_path = self.log_dir / f"{stem}.stdout"
        self.stderr_path = self.log_dir / f"{stem}.stderr"
        self._preexec = preexec
        self._proc: subprocess.Popen[bytes] | None = None
        self._sampler: Sampler | None = None
        self._follower: FileProgress | RegexProgress | NoProgress = NoProgress()
        self._started_s = 0.0
        self._ended_s: float | None = None
        # What the machine did while the job ran (preflight.host.watch): steal and
        # neighbours always; the harness frozen when asked (None: as watching_frozen() says).
        self.host_watch = HostWatch(frozen=frozen_asked() if watch_frozen is None
                                    else watch_frozen)
        self.returncode: int | None = None
        self.timed_out = False
        # Processes the job left behind outside its process group (setsid, double fork):
        # killed when the Run ends and listed here, so the caller reports them as a failure.
        self.leftovers: list[Leftover] = []

    # -- lifecycle

    def start(self) -> Run:
        if self._proc is not None:
            raise RunError(f"{self.spec.where}: this Run was already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._follower = self._make_follower()
        self.host_watch.start()
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            try:
                self._proc = subprocess.Popen(
                    self.argv,
                    cwd=self.cwd,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                    preexec_fn=_child_setup(os.getpid(), self._preexec),
                )
            except (OSError, subprocess.SubprocessError) as exc:
                self.host_watch.stop()
                raise _unstartable(self.spec.where, self._argv_key(), self.argv, exc) from exc
        self._started_s = time.monotonic()
        self._sampler = Sampler(
            self._proc.pid,
            self.sample_interval_s,
            progress_fn=self._progress_done,
            t0_s=self._started_s,
        ).start()
        return self

    def _argv_key(self) -> str:
        """The spec key whose program starts this run."""
        if self.spec.launcher:
            return "launcher"
        return "resume" if self.resume and self.spec.resume is not None else "command"

    def _make_follower(self) -> FileProgress | RegexProgress | NoProgress:
        path = self.spec.progress_path(self.params)
        if path is not None:
            return FileProgress(path)
        if self.spec.progress_regex is not None:
            return RegexProgress(self.stdout_path, self.spec.progress_regex)
        return NoProgress()

    def _progress_done(self) -> int | None:
        progress = self._follower.read()
        return None if progress is None else progress.done

    def _require_proc(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise RunError(f"{self.spec.where}: the Run has not been started")
        return self._proc

    @property
    def pid(self) -> int:
        return self._require_proc().pid

    def poll(self) -> int | None:
        returncode = self._require_proc().poll()
        if returncode is not None:
            self._finish(returncode)
        return returncode

    def wait(self, timeout_s: float, *, raise_on_timeout: bool = False) -> int:
        """Wait at most `timeout_s` for the job. On timeout: mark `timed_out`, kill the
        group, and return the (signal) return code, or raise RunTimeoutError if asked."""
        proc = self._require_proc()
        try:
            returncode = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.timed_out = True
            self.kill()
            returncode = self._reap(proc)
        self._finish(returncode)
        if self.timed_out and raise_on_timeout:
            raise RunTimeoutError(
                f"{self.spec.where}: {self.argv!r} did not finish within {timeout_s} s; "
                f"its process group was killed (stderr: {self.stderr_path})"
            )
        return returncode

    def _reap(self, proc: subprocess.Popen[bytes]) -> int:
        try:
            return proc.wait(timeout=REAP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise RunError(
                f"{self.spec.where}: pid {proc.pid} still alive {REAP_TIMEOUT_S} s after SIGKILL"
            ) from None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the job's whole process group (its pgid is its pid: setsid)."""
        _kill_group(self.pid, sig)

    def terminate_group(self, grace_s: float = TERMINATE_GRACE_S) -> int:
        """SIGTERM the group, wait at most `grace_s`, then SIGKILL; the return code."""
        proc = self._require_proc()
        if proc.poll() is None:
            self.kill(signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
        returncode = self._reap(proc)
        self._finish(returncode)
        return returncode

    def close(self) -> None:
        """Teardown: kill the whole group if anything is left, reap, stop sampling."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self.kill()
        self._finish(self._reap(self._proc))

    def _finish(self, returncode: int) -> None:
        if self._ended_s is not None:
            return
        self._ended_s = time.monotonic()
        self.returncode = returncode
        self.host_watch.stop()
        # The job is the group: a grandchild left running would keep writing to the
        # workdir under the next run's feet.
        _kill_group(self.pid, signal.SIGKILL)
        # A descendant that escaped the group (setsid) is found by the token it inherited.
        self.leftovers = kill_leftovers(self.token, self.pid)
        if self._sampler is not None:
            self._sampler.stop()

    def __enter__(self) -> Run:
        return self if self._proc is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- observations

    def progress(self) -> tuple[int, int] | None:
        """(done, total) from the job's latest progress report; total is 0 if unknown."""
        progress = self._follower.read()
        return None if progress is None else (progress.done, progress.total)

    def wait_for_progress(self, done_at_least: int, timeout_s: float) -> bool:
        """True once progress reaches `done_at_least`; False if the job exits first or
        `timeout_s` passes (the job is left running: the caller decides)."""
        proc = self._require_proc()
        deadline = time.monotonic() + timeout_s
        while True:
            current = self.progress()
            if current is not None and current[0] >= done_at_least:
                return True
            if proc.poll() is not None:
                current = self.progress()
                return current is not None and current[0] >= done_at_least
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(PROGRESS_POLL_S, remaining))

    @property
    def samples(self) -> list[Sample]:
        return [] if self._sampler is None else self._sampler.samples

    @property
    def host(self) -> HostFigures:
        """The machine while the job ran (all None until it ended); neighbours set the
        job's own CPU time (the sampler's last reading) apart."""
        samples = self.samples
        return self.host_watch.figures(float(samples[-1].cpu_s) if samples else 0.0)

    @property
    def host_steal_fraction(self) -> float | None:
        """The host's share of this machine's CPU while the job ran (None until it ended)."""
        return self.host_watch.steal

    @property
    def duration_s(self) -> float:
        if self._proc is None:
            return 0.0
        end = self._ended_s if self._ended_s is not None else time.monotonic()
        return end - self._started_s

    def stdout_text(self) -> str:
        return _tail_text(self.stdout_path)

    def stderr_text(self) -> str:
        return _tail_text(self.stderr_path)

    def describe(self) -> str:
        """One line for failure messages: what ran, how it ended, where its output is."""
        ended = "timed out" if self.timed_out else f"exit {self.returncode}"
        left = ""
        if self.leftovers:
            first = self.leftovers[0]
            left = (
                f"; left {len(self.leftovers)} process(es) running outside its process group "
                f"(killed; first: pid {first.pid} {first.cmdline!r})"
            )
        return f"{self.spec.name}: {' '.join(self.argv)} -> {ended}{left} ({self.stderr_path})"


# ---------------------------------------------------------------------------- auxiliaries


def run_aux(
    spec: WorkloadSpec,
    template: Sequence[str],
    params: Mapping[str, object],
    timeout_s: float,
    *,
    key: str = "aux",
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run verify/fingerprint/prepare: own process group, bounded time, and output kept in
    temp files so a chatty command cannot exhaust memory (the last TEXT_BYTES_MAX kept)."""
    argv = spec.argv(template, params, key=key)
    full_env = {**base_env(), **spec.job_env(params), **(env or {})}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(
                argv,
                cwd=spec.spec_dir,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                preexec_fn=_child_setup(os.getpid(), None),
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise _unstartable(spec.where, key, argv, exc) from exc
        try:
            returncode = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=REAP_TIMEOUT_S)
            raise RunTimeoutError(
                f"{spec.where} key {key!r}: {argv!r} did not finish within {timeout_s} s; killed"
            ) from None
        finally:
            _kill_group(proc.pid, signal.SIGKILL)
        return subprocess.CompletedProcess(argv, returncode, _read_tail(out), _read_tail(err))


def prepare(
    spec: WorkloadSpec,
    params: Mapping[str, object],
    prepared_dir: str | os.PathLike[str],
    timeout_s: float,
) -> Path:
    """Run the spec's `prepare` once into `prepared_dir` (the {prepared} placeholder)."""
    target = Path(prepared_dir).absolute()
    target.mkdir(parents=True, exist_ok=True)
    if spec.prepare is None:
        return target
    values = {**spec.base_params(target), **params, "prepared": str(target)}
    done = run_aux(spec, spec.prepare, values, timeout_s, key="prepare")
    if done.returncode != 0:
        raise RunError(
            f"{spec.where} key 'prepare': {done.args!r} exited {done.returncode}: "
            f"{done.stderr[-2000:]}"
        )
    return target
