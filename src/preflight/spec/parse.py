"""Workload specs (TOML): the harness's only view of a job (docs/contract.md "Workload spec"),
so a third party's job can be put under test without changing it. Parsing is strict and
bounded; every error names the file and the key."""

from __future__ import annotations

import os
import string
import sys
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from preflight.spec import tiers
from preflight.spec.fields import (
    BUILTIN_PLACEHOLDERS,
    SpecError,
    _expect_str,
    _expect_str_list,
    _parse_env,
    _parse_regex,
    _parse_scale,
    _parse_sigterm,
    _parse_timeout,
)
from preflight.spec.readiness import EXPERIMENT_NAMES, Readiness, ReadinessError, parse_readiness
from preflight.spec.tomlshape import toml_shape_problem

SPEC_BYTES_MAX = 4 << 20
WORKLOADS_FILE = "workloads.toml"
PYPROJECT_FILE = "pyproject.toml"
DEFAULT_SEED = 0
ARGV_KEYS = ("command", "resume", "verify", "fingerprint", "prepare", "launcher")
SPEC_KEYS = frozenset(
    {*ARGV_KEYS, "progress", "progress_regex", "checkpoints", "env", "scale", "timeout_s",
     "readiness", "sigterm"}
)

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
    # What SIGTERM must do (preflight check): "graceful" = exit 75 or 0 after a checkpoint;
    # "any" (default: what a job without a handler honours) = any exit, exact resume.
    sigterm: str = "any"
    # What the gate's readiness experiments need (preflight.spec.readiness); optional.
    readiness: Readiness = field(default_factory=Readiness)

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
    if "sigterm" in table:
        fields["sigterm"] = _parse_sigterm(table["sigterm"], f"{where} key 'sigterm'")
    if "timeout_s" in table:
        fields["timeout_s"] = _parse_timeout(table["timeout_s"], f"{where} key 'timeout_s'")
    if "readiness" in table:
        try:
            fields["readiness"] = parse_readiness(
                table["readiness"], f"{where} key 'readiness'",
                frozenset(n for sizes in fields.get("scale", {}).values() for n in sizes),
                EXPERIMENT_NAMES)
        except ReadinessError as exc:
            raise SpecError(str(exc)) from None
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
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: invalid TOML: {exc}") from None
    problem = toml_shape_problem(text)
    if problem is not None:
        raise SpecError(f"{path}: refused before parsing: {problem}")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
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
