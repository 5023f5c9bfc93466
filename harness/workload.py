"""Workload specs (TOML) and Runs: any job driven as a subprocess, sampled and bounded.

A spec is the harness's only view of a job (DESIGN.md "Workload spec"), so a third party's
job can be put under test without changing it. A `Run` starts the job in its own session
and process group, tells the kernel to kill it if the harness dies, captures its output to
files, follows its progress, samples its process tree, and always kills the whole group on
timeout or teardown. Every wait has a bound.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import os
import re
import signal
import string
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any

from harness import hostload, tiers
from harness.sampler import Sample, Sampler

SPEC_BYTES_MAX = 4 << 20
WORKLOADS_FILE = "workloads.toml"
PYPROJECT_FILE = "pyproject.toml"
# Names every template may use; a spec's own sizes (its scale tables) add to these.
BUILTIN_PLACEHOLDERS = frozenset({"workdir", "seed", "spec_dir", "python", "prepared"})
DEFAULT_SEED = 0
ARGV_KEYS = ("command", "resume", "verify", "fingerprint", "prepare", "launcher")
SPEC_KEYS = frozenset(
    {*ARGV_KEYS, "progress", "progress_regex", "checkpoints", "env", "scale", "timeout_s"}
)
SIZE_MAX = 10**12

# Bounds for the Run's own waits and reads.
REAP_TIMEOUT_S = 10.0  # SIGKILL is not ignorable; a group still alive after this is a bug
TERMINATE_GRACE_S = 5.0
PROGRESS_POLL_S = 0.02
PROGRESS_FILE_BYTES_MAX = 1 << 20
STDOUT_TAIL_BYTES_MAX = 1 << 20  # read per progress poll
STDOUT_LINE_BYTES_MAX = 64 << 10  # a longer "line" is not a progress line
TEXT_BYTES_MAX = 16 << 20  # stdout_text()/stderr_text() return at most the last this-many
PARENT_GONE_EXIT = 125


class SpecError(ValueError):
    """A workload spec is missing or invalid; the message names the file and the key."""


class RunError(RuntimeError):
    """A Run could not be started, or its process group would not die."""


class RunTimeoutError(RunError, TimeoutError):
    """A bounded wait for a job (or an auxiliary command) ran out; the group was killed."""


# ---------------------------------------------------------------------------- templates

_FORMATTER = string.Formatter()


def placeholders(template: str, where: str) -> list[str]:
    """The `{name}` placeholders in `template`; anything fancier is a SpecError."""
    try:
        parsed = list(_FORMATTER.parse(template))
    except ValueError as exc:
        raise SpecError(f"{where}: bad placeholder in {template!r}: {exc}") from None
    names = []
    for _literal, name, format_spec, conversion in parsed:
        if name is None:
            continue
        # Format specs, conversions, indexing and attributes would let a spec reach into
        # the harness's objects; a placeholder is a plain name and nothing else.
        if not name.isidentifier() or format_spec or conversion:
            raise SpecError(
                f"{where}: bad placeholder {{{name}}} in {template!r}; write a plain {{name}}"
            )
        names.append(name)
    return names


def render(template: str, values: Mapping[str, object], where: str) -> str:
    """Substitute placeholders in one string; the result is one string, never split."""
    out = []
    for literal, name, _spec, _conv in _FORMATTER.parse(template):
        out.append(literal)
        if name is None:
            continue
        if name not in values:
            raise SpecError(f"{where}: no value for placeholder {{{name}}} in {template!r}")
        text = str(values[name])
        if "\0" in text:
            raise SpecError(f"{where}: value for {{{name}}} contains a NUL byte")
        out.append(text)
    return "".join(out)


# ---------------------------------------------------------------------------- the spec


@dataclass(frozen=True)
class WorkloadSpec:
    """One job as the harness sees it. Built by `load_spec`, which validates every field."""

    name: str
    source: Path
    command: tuple[str, ...]
    resume: tuple[str, ...] = ()  # empty: resume by running `command` again
    progress: str | None = None
    progress_regex: str | None = None
    verify: tuple[str, ...] | None = None
    fingerprint: tuple[str, ...] | None = None
    checkpoints: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    scale: Mapping[str, Mapping[str, int]] = field(default_factory=lambda: MappingProxyType({}))
    prepare: tuple[str, ...] | None = None
    launcher: tuple[str, ...] = ()  # argv prefix for command/resume, e.g. torchrun
    timeout_s: float | None = None

    @property
    def spec_dir(self) -> Path:
        return self.source.parent

    @property
    def where(self) -> str:
        return f"{self.source} [workloads.{self.name}]"

    @property
    def size_names(self) -> frozenset[str]:
        return frozenset(n for table in self.scale.values() for n in table)

    def params(self, tier: str) -> dict[str, int]:
        """The sizes at `tier`; 10pct is 10% of production except for sizes given for it."""
        try:
            tiers.get_tier(tier)
        except ValueError as exc:
            raise SpecError(f"{self.where}: {exc}") from None
        if not self.scale:
            return {}
        given = dict(self.scale.get(tier, {}))
        if tier == tiers.DERIVED_TIER and tiers.DERIVED_FROM_TIER in self.scale:
            return {**tiers.derive_10pct(self.scale[tiers.DERIVED_FROM_TIER]), **given}
        if tier not in self.scale:
            raise SpecError(f"{self.where}: key 'scale' has no sizes for tier {tier!r}")
        return given

    def base_params(
        self, workdir: str | os.PathLike[str], *, seed: int = DEFAULT_SEED
    ) -> dict[str, object]:
        """The built-in placeholder values for a run in `workdir`."""
        return {
            "workdir": str(Path(workdir).absolute()),
            "seed": seed,
            "spec_dir": str(self.spec_dir),
            "python": sys.executable,
        }

    def argv(
        self, template: Sequence[str], params: Mapping[str, object], *, key: str = "argv"
    ) -> list[str]:
        """Render an argv template item by item: a value can never become two arguments."""
        where = f"{self.where} key {key!r}"
        return [render(item, params, where) for item in template]

    def job_argv(self, params: Mapping[str, object], *, resume: bool = False) -> list[str]:
        """launcher + resume (or command, when resume is not given or not asked for); a
        command that already starts with the launcher is not given it twice."""
        key = "resume" if resume and self.resume else "command"
        template = self.resume if key == "resume" else self.command
        launcher = self.argv(self.launcher, params, key="launcher")
        job = self.argv(template, params, key=key)
        if launcher and job[: len(launcher)] == launcher:
            return job
        return launcher + job

    def progress_path(self, params: Mapping[str, object]) -> Path | None:
        if self.progress is None:
            return None
        return Path(render(self.progress, params, f"{self.where} key 'progress'"))

    def checkpoint_globs(self, params: Mapping[str, object]) -> list[str]:
        return self.argv(self.checkpoints, params, key="checkpoints")

    def job_env(self, params: Mapping[str, object]) -> dict[str, str]:
        return {k: render(v, params, f"{self.where} key 'env.{k}'") for k, v in self.env.items()}


# ---------------------------------------------------------------------------- loading


def _expect_str_list(value: Any, where: str, *, allow_empty: bool) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SpecError(f"{where}: must be a list of strings (an argv), got {value!r}")
    if not value and not allow_empty:
        raise SpecError(f"{where}: must not be empty")
    return tuple(value)


def _expect_str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise SpecError(f"{where}: must be a non-empty string, got {value!r}")
    return value


def _parse_scale(value: Any, where: str) -> dict[str, dict[str, int]]:
    if not isinstance(value, dict):
        raise SpecError(f"{where}: must be a table of tier = {{ size = N }}")
    scale: dict[str, dict[str, int]] = {}
    for tier, table in value.items():
        if tier not in tiers.TIER_NAMES:
            raise SpecError(
                f"{where}: unknown tier {tier!r}; choose from {', '.join(tiers.TIER_NAMES)}"
            )
        if not isinstance(table, dict):
            raise SpecError(f"{where}.{tier}: must be a table of size = integer")
        scale[tier] = {
            name: _parse_size(size, f"{where}.{tier}.{name}") for name, size in table.items()
        }
    _check_size_names(scale, where)
    return scale


def _parse_size(size: Any, where: str) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= SIZE_MAX:
        raise SpecError(f"{where}: must be an integer in 0..{SIZE_MAX}, got {size!r}")
    if not where.rsplit(".", 1)[-1].isidentifier():
        raise SpecError(f"{where}: a size name must be an identifier usable as {{name}}")
    return size


def _check_size_names(scale: Mapping[str, Mapping[str, int]], where: str) -> None:
    names = {n for table in scale.values() for n in table}
    clash = names & BUILTIN_PLACEHOLDERS
    if clash:
        raise SpecError(f"{where}: size name(s) {sorted(clash)} clash with built-in placeholders")
    for tier, table in scale.items():
        partial_ok = tier == tiers.DERIVED_TIER and tiers.DERIVED_FROM_TIER in scale
        missing = names - set(table)
        if missing and not partial_ok:
            raise SpecError(f"{where}.{tier}: missing size(s) {sorted(missing)}")


def _parse_env(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise SpecError(f'{where}: must be a table of NAME = "string"')
    return dict(value)


def _parse_regex(value: Any, where: str) -> str:
    text = _expect_str(value, where)
    try:
        groups = re.compile(text).groups
    except re.error as exc:
        raise SpecError(f"{where}: invalid regular expression: {exc}") from None
    if groups not in (1, 2):
        raise SpecError(f"{where}: needs one group (done) or two (done, total), has {groups}")
    return text


def _parse_timeout(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise SpecError(f"{where}: must be a positive number of seconds, got {value!r}")
    return float(value)


def _templates(spec: WorkloadSpec) -> Iterable[tuple[str, str]]:
    """Every (key, template) pair of a spec, for placeholder validation."""
    for key in ARGV_KEYS:
        for item in getattr(spec, key) or ():
            yield key, item
    for item in spec.checkpoints:
        yield "checkpoints", item
    for name, value in spec.env.items():
        yield f"env.{name}", value
    if spec.progress is not None:
        yield "progress", spec.progress


def parse_spec(name: str, table: Any, source: Path, section: str) -> WorkloadSpec:
    """Validate one workload table; every error names the file, the table and the key."""
    where = f"{source}: [{section}.{name}]"
    if not isinstance(table, dict):
        raise SpecError(f"{where}: must be a table")
    unknown = sorted(set(table) - SPEC_KEYS)
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(SPEC_KEYS)}")
    if "command" not in table:
        raise SpecError(f"{where}: missing required key 'command'")
    if "progress" in table and "progress_regex" in table:
        raise SpecError(f"{where}: give either 'progress' or 'progress_regex', not both")
    fields: dict[str, Any] = {}
    for key in ARGV_KEYS:
        if key in table:
            allow_empty = key in ("resume", "launcher")
            fields[key] = _expect_str_list(
                table[key], f"{where} key {key!r}", allow_empty=allow_empty
            )
    if "progress" in table:
        fields["progress"] = _expect_str(table["progress"], f"{where} key 'progress'")
    if "progress_regex" in table:
        fields["progress_regex"] = _parse_regex(
            table["progress_regex"], f"{where} key 'progress_regex'"
        )
    if "checkpoints" in table:
        fields["checkpoints"] = _expect_str_list(
            table["checkpoints"], f"{where} key 'checkpoints'", allow_empty=True
        )
    if "env" in table:
        fields["env"] = MappingProxyType(_parse_env(table["env"], f"{where} key 'env'"))
    if "scale" in table:
        scale = _parse_scale(table["scale"], f"{where} key 'scale'")
        fields["scale"] = MappingProxyType(
            {tier: MappingProxyType(sizes) for tier, sizes in scale.items()}
        )
    if "timeout_s" in table:
        fields["timeout_s"] = _parse_timeout(table["timeout_s"], f"{where} key 'timeout_s'")
    spec = WorkloadSpec(name=name, source=source, **fields)
    allowed = BUILTIN_PLACEHOLDERS | spec.size_names
    for key, template in _templates(spec):
        for placeholder in placeholders(template, f"{where} key {key!r}"):
            if placeholder not in allowed:
                raise SpecError(
                    f"{where} key {key!r}: unknown placeholder {{{placeholder}}}; "
                    f"known: {', '.join(sorted(allowed))}"
                )
    return spec


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            data = handle.read(SPEC_BYTES_MAX + 1)
    except OSError as exc:
        raise SpecError(f"{path}: cannot read workload spec: {exc.strerror or exc}") from None
    if len(data) > SPEC_BYTES_MAX:
        raise SpecError(f"{path}: larger than {SPEC_BYTES_MAX} bytes; not a workload spec")
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SpecError(f"{path}: invalid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses per nesting level: [[[[...]]]] is hostile
        raise SpecError(f"{path}: invalid TOML: nested too deeply") from None


def _workload_tables(doc: dict[str, Any], path: Path) -> tuple[str, dict[str, Any]]:
    """(section name, tables) from a pyproject.toml or a workloads.toml document."""
    if path.name == PYPROJECT_FILE:
        section = "tool.preflight.workloads"
        tables: Any = doc
        for key in ("tool", "preflight", "workloads"):
            tables = tables.get(key, {}) if isinstance(tables, dict) else None
    else:
        section = "workloads"
        unknown = sorted(set(doc) - {"workloads"})
        if unknown:
            raise SpecError(
                f"{path}: unknown top-level key(s) {unknown}; expected [workloads.NAME]"
            )
        tables = doc.get("workloads", {})
    if not isinstance(tables, dict):
        raise SpecError(f"{path}: [{section}] must be a table of workload tables")
    return section, tables


def load_specs(path: str | os.PathLike[str]) -> dict[str, WorkloadSpec]:
    """Every workload in a pyproject.toml ([tool.preflight.workloads]) or any other TOML
    file ([workloads]), validated strictly."""
    source = Path(path).absolute()
    section, tables = _workload_tables(_read_toml(source), source)
    return {name: parse_spec(name, table, source, section) for name, table in tables.items()}


def find_spec(name: str, candidates: Sequence[str | os.PathLike[str]]) -> WorkloadSpec:
    """The workload `name` from the first of `candidates` (existing files) that defines it."""
    paths = [Path(c) for c in candidates]
    for path in paths:
        if path.is_file():
            specs = load_specs(path)
            if name in specs:
                return specs[name]
    looked = " or ".join(str(p) for p in paths)
    raise SpecError(
        f"workload {name!r} not found in {looked} "
        f"(looked for [workloads.{name}] and [tool.preflight.workloads.{name}])"
    )


def load_spec(name: str, spec_file: str | os.PathLike[str] | None = None) -> WorkloadSpec:
    """The workload `name` from `spec_file`, or from ./workloads.toml then ./pyproject.toml."""
    if spec_file is None:
        return find_spec(name, [WORKLOADS_FILE, PYPROJECT_FILE])
    if not Path(spec_file).is_file():
        raise SpecError(f"{spec_file}: workload spec file does not exist")
    return find_spec(name, [spec_file])


# ---------------------------------------------------------------------------- progress


@dataclass(frozen=True)
class Progress:
    done: int
    total: int  # 0 when the job does not report a total


class FileProgress:
    """Progress from a JSON file the job replaces atomically; a torn or absent file keeps
    the last good value rather than inventing one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last: Progress | None = None
        self._lock = threading.Lock()

    def read(self) -> Progress | None:
        with self._lock:
            parsed = self._parse()
            if parsed is not None:
                self._last = parsed
            return self._last

    def _parse(self) -> Progress | None:
        # Read here, not through durable.read_json: that import pulls in numpy, and the
        # first sample must not wait for it. The size bound is the same idea.
        try:
            with open(self.path, "rb") as handle:
                data = handle.read(PROGRESS_FILE_BYTES_MAX + 1)
        except OSError:
            return None
        if len(data) > PROGRESS_FILE_BYTES_MAX:
            return None
        try:
            raw = json.loads(data)
        except (ValueError, RecursionError):
            return None
        return _progress_from(raw.get("done"), raw.get("total")) if isinstance(raw, dict) else None


def _progress_from(done: Any, total: Any) -> Progress | None:
    if isinstance(done, bool) or not isinstance(done, int) or done < 0:
        return None
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        total = 0
    return Progress(done, total)


class RegexProgress:
    """Progress from the last stdout line matching a regex (group 1 done, group 2 total).

    Tails the captured stdout file incrementally, a bounded chunk per call."""

    def __init__(self, stdout_path: Path, pattern: str) -> None:
        self.path = stdout_path
        self.regex = re.compile(pattern.encode())
        self._offset = 0
        self._partial = b""
        self._last: Progress | None = None
        self._lock = threading.Lock()

    def read(self) -> Progress | None:
        with self._lock:
            for line in self._new_lines():
                match = self.regex.search(line)
                if match is not None:
                    total = int(match.group(2)) if self.regex.groups == 2 else 0
                    parsed = _progress_from(int(match.group(1)), total)
                    self._last = parsed or self._last
            return self._last

    def _new_lines(self) -> list[bytes]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read(STDOUT_TAIL_BYTES_MAX)
        except OSError:
            return []
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > STDOUT_LINE_BYTES_MAX:
            self._partial = b""
        return lines


class NoProgress:
    def read(self) -> Progress | None:
        return None


# ---------------------------------------------------------------------------- the run

_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    # Resolved once in the parent: the forked child must not dlopen or look up symbols.
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_PRCTL = _load_prctl()
_LOG_SEQ = itertools.count(1)


def _child_setup(parent_pid: int, preexec: Callable[[], None] | None) -> Callable[[], None]:
    """Runs in the child after setsid, before exec."""

    def setup() -> None:
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # The harness may have died between fork and prctl; then nobody would kill us.
        if os.getppid() != parent_pid:
            os._exit(PARENT_GONE_EXIT)
        if preexec is not None:
            preexec()

    return setup


def _kill_group(pgid: int, sig: int) -> bool:
    """Signal a whole process group; False when no member is left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def _tail_text(path: Path, bytes_max: int = TEXT_BYTES_MAX) -> str:
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            handle.seek(max(0, size - bytes_max))
            return handle.read(bytes_max).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


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
    ) -> None:
        if not sample_interval_s > 0:
            raise ValueError(f"sample_interval_s must be positive, got {sample_interval_s}")
        self.spec = spec
        self.workdir = Path(workdir).absolute()
        self.params: dict[str, object] = {**spec.base_params(self.workdir), **params}
        self.params["workdir"] = str(self.workdir)
        self.resume = resume
        self.argv = spec.job_argv(self.params, resume=resume)
        self.env = {**base_env(), **spec.job_env(self.params), **(env or {})}
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
        self._cpu_at_start: hostload.CpuTimes | None = None
        self.returncode: int | None = None
        self.timed_out = False
        # The host's share of this machine's CPU while the job ran (harness.hostload).
        self.host_steal_fraction: float | None = None

    # -- lifecycle

    def start(self) -> Run:
        if self._proc is not None:
            raise RunError(f"{self.spec.where}: this Run was already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._follower = self._make_follower()
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
                raise RunError(f"{self.spec.where}: cannot start {self.argv!r}: {exc}") from exc
        self._started_s = time.monotonic()
        self._cpu_at_start = hostload.read_cpu_times()
        self._sampler = Sampler(
            self._proc.pid,
            self.sample_interval_s,
            progress_fn=self._progress_done,
            t0_s=self._started_s,
        ).start()
        return self

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
        self.host_steal_fraction = hostload.steal_fraction(
            self._cpu_at_start, hostload.read_cpu_times()
        )
        # The job is the group: a grandchild left running would keep writing to the
        # workdir under the next run's feet.
        _kill_group(self.pid, signal.SIGKILL)
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
        return f"{self.spec.name}: {' '.join(self.argv)} -> {ended} ({self.stderr_path})"


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
            raise RunError(f"{spec.where} key {key!r}: cannot start {argv!r}: {exc}") from exc
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


def _read_tail(handle: Any, bytes_max: int = TEXT_BYTES_MAX) -> str:
    size = handle.seek(0, os.SEEK_END)
    handle.seek(max(0, size - bytes_max))
    return handle.read(bytes_max).decode("utf-8", errors="replace")


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


# ---------------------------------------------------------------------------- for tests

FAULTS_ENV = "PREFLIGHT_FAULTS"  # the durable fault-point spec a job reads (DESIGN.md)


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
