"""Fuzz workload spec parsing (TOML -> WorkloadSpec) and prove argv rendering can't inject."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st

from preflight.durable.errors import BadInputError
from preflight.gate.policy import load_policy
from preflight.workload import SpecError, load_specs, parse_spec
from suites.security.strategies import deep, json_values, mutated_document

Fuzz = Callable[..., Any]

VALID_TOML = b"""
[workloads.job]
command = ["python", "-c", "pass", "--out", "{workdir}", "--n", "{samples}"]
resume = []
progress = "{workdir}/PROGRESS.json"
verify = ["python", "-c", "pass", "{workdir}"]
checkpoints = ["{workdir}/ckpt/*"]
env = { OMP_NUM_THREADS = "1" }
timeout_s = 60
[workloads.job.scale]
production = { samples = 1000 }
small = { samples = 10 }
"""
VALID_TABLE: dict[str, Any] = {
    "command": ["python", "-c", "pass", "--out", "{workdir}", "--n", "{samples}"],
    "progress": "{workdir}/PROGRESS.json",
    "checkpoints": ["{workdir}/ckpt/*"],
    "env": {"OMP_NUM_THREADS": "1"},
    "timeout_s": 60,
    "scale": {"production": {"samples": 1000}, "small": {"samples": 10}},
}
TOKENS = (
    b"[",
    b"]",
    b"{",
    b"}",
    b"=",
    b'"',
    b"'''",
    b"\n",
    b"\x00",
    b"{workdir!r}",
    b"{workdir.__class__}",
    b"{0}",
    b"{",
    b"1e999",
    b"nan",
    b"inf",
    b"9" * 400,
)


def test_toml_specs_parse_or_raise_spec_error(tmp_path: Path, fuzz: Fuzz) -> None:
    path = tmp_path / "workloads.toml"
    pyproject = tmp_path / "pyproject.toml"
    spliced = st.tuples(st.integers(0, len(VALID_TOML)), st.sampled_from(TOKENS)).map(
        lambda t: VALID_TOML[: t[0]] + t[1] + VALID_TOML[t[0] :]
    )
    data = st.one_of(
        spliced,
        st.binary(max_size=400),
        st.integers(0, len(VALID_TOML)).map(lambda n: VALID_TOML[:n]),
        st.integers(100, 5_000).map(lambda d: b"a = " + deep(d)),
        st.integers(100, 5_000).map(lambda d: b"a = " + deep(d, "{b=", "}")),
        st.sampled_from([b"tool = 1", b"[tool]\npreflight = []", b"workloads = 3"]),
    )

    def check(case: tuple[bool, bytes]) -> None:
        as_pyproject, raw = case
        target = pyproject if as_pyproject else path
        target.write_bytes(raw)
        load_specs(target)

    tally = fuzz("workload_spec", st.tuples(st.booleans(), data), check, (SpecError,))
    assert tally.refused > 0 and not tally.crashes


def test_workload_tables_parse_or_raise_spec_error(tmp_path: Path, fuzz: Fuzz) -> None:
    source = tmp_path / "workloads.toml"
    tables = st.one_of(mutated_document(VALID_TABLE), json_values())

    def check(table: Any) -> None:
        spec = parse_spec("job", table, source, "workloads")
        params = {**spec.base_params(tmp_path), **spec.params("small")} if spec.scale else None
        if params is not None:
            spec.job_argv(params)

    tally = fuzz("workload_table", tables, check, (SpecError,))
    assert tally.refused > 0 and not tally.crashes


def test_placeholder_values_never_split_or_add_arguments(tmp_path: Path, fuzz: Fuzz) -> None:
    source = tmp_path / "workloads.toml"
    spec = parse_spec("job", VALID_TABLE, source, "workloads")
    hostile = st.one_of(
        st.text(max_size=60),
        st.sampled_from(
            [
                "a b",
                "--help",
                "-rf /",
                "x; rm -rf ~",
                "$(touch pwned)",
                "`id`",
                "'q' \"q\"",
                "\n--flag",
                "{samples}",
                "--out=/etc",
            ]
        ),
    )

    def check(workdir: str) -> None:
        params = {**spec.base_params(tmp_path), "workdir": workdir, "samples": 10}
        argv = spec.job_argv(params)
        template = spec.command
        assert len(argv) == len(template)
        assert argv[4] == workdir  # the whole value is one item, verbatim
        assert argv[:4] == list(template[:4]) and argv[5] == "--n" and argv[6] == "10"

    tally = fuzz("workload_argv", hostile, check, (SpecError,))
    assert not tally.crashes


def test_deeply_nested_toml_and_non_table_tool_are_spec_errors(tmp_path: Path) -> None:
    path = tmp_path / "workloads.toml"
    path.write_bytes(b"a = " + deep(50_000))
    with pytest.raises(SpecError, match="nested too deeply"):
        load_specs(path)
    pyproject = tmp_path / "pyproject.toml"
    for text in ("tool = 1", "[tool]\npreflight = []", "[tool.preflight]\nworkloads = 3"):
        pyproject.write_text(text)
        with pytest.raises(SpecError, match="must be a table"):
            load_specs(pyproject)


def test_gate_policy_toml_loads_or_raises_bad_input_error(tmp_path: Path, fuzz: Fuzz) -> None:
    path = tmp_path / "pyproject.toml"
    valid = (
        b"[tool.preflight.gate]\nmax_stall_s = 30\n[tool.preflight.gate.small]\nmax_stall_s = 5\n"
    )
    data = st.one_of(
        st.tuples(st.integers(0, len(valid)), st.sampled_from(TOKENS)).map(
            lambda t: valid[: t[0]] + t[1] + valid[t[0] :]
        ),
        st.integers(100, 5_000).map(lambda d: b"a = " + deep(d)),
        st.sampled_from([b"tool = 1", b"[tool]\npreflight = []", b"[tool.preflight]\ngate = 2"]),
        st.binary(max_size=200),
    )

    def check(raw: bytes) -> None:
        path.write_bytes(raw)
        load_policy(path, "small")

    tally = fuzz("gate_policy", data, check, (BadInputError,))
    assert tally.refused > 0 and not tally.crashes
