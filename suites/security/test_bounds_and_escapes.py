"""Issue 19, items 5, 7 and 8: small inputs never buy unbounded resources, policy values
cannot disable the gate, and a job that escapes its process group is found and killed."""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

import pytest
from preflight_examples.datagen.generate import check_workers_fit
from preflight_examples.trainer.config import FitConfig, check_model_fits, parameter_estimate
from preflight_examples.trainer.distributed import check_nproc_fits

from preflight.durable import BadInputError
from preflight.gate.policy import load_policy, policy_from_table
from preflight.run.job import Run
from preflight.spec.parse import SpecError, load_specs, parse_spec, toml_shape_problem

GIB = 1 << 30
RUN_TIMEOUT_S = 60.0

# ------------------------------------------------------------------ item 5: TOML bounds

HOSTILE_TOML = {
    "dotted key": "x." + ".".join(["a"] * 20_000) + " = 1\n",
    "dotted header": "[" + ".".join(["a"] * 5_000) + "]\n",
    "quoted dotted key": ".".join(['"a"'] * 5_000) + " = 1\n",
    "nested arrays": "x = " + "[" * 200 + "]" * 200 + "\n",
    "nested inline tables": "x = " + "{a = " * 200 + "1" + "}" * 200 + "\n",
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_TOML))
def test_hostile_toml_is_refused_before_parsing(tmp_path: Path, kind: str) -> None:
    text = HOSTILE_TOML[kind]
    assert toml_shape_problem(text) is not None
    spec = tmp_path / "workloads.toml"
    spec.write_text(text)
    with pytest.raises(SpecError, match="refused before parsing"):
        load_specs(spec)
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[tool.preflight.gate]\n" + text)
    with pytest.raises(BadInputError, match="refused before parsing"):
        load_policy(pyproject)


def test_real_specs_and_strings_with_dots_are_not_refused() -> None:
    repo = Path(__file__).resolve().parents[2]
    for path in [repo / "pyproject.toml", *sorted((repo / "fixtures").glob("*.toml"))]:
        assert toml_shape_problem(path.read_text()) is None, path
    assert toml_shape_problem('x = "' + "a." * 500 + '"\n# ' + "b." * 500 + "\n") is None
    assert toml_shape_problem("x = [1.5, 2.5, 3.5]\n[a.b.c]\nd.e = 1\n") is None


# ------------------------------------------------------------------ item 5: machine bounds


def test_workers_nproc_and_model_size_are_bounded_by_the_machine() -> None:
    check_workers_fit(8, cores=2)
    with pytest.raises(BadInputError, match="--workers: 256"):
        check_workers_fit(256, cores=2)
    check_nproc_fits(2, cores=2, available_bytes=4 * GIB)
    with pytest.raises(BadInputError, match="--nproc: 1000"):
        check_nproc_fits(1000, cores=2, available_bytes=64 * GIB)
    with pytest.raises(BadInputError, match="MiB"):
        check_nproc_fits(4, cores=64, available_bytes=1 * GIB)
    huge = FitConfig(data="d", out="o", steps=1, channels=1024, depth=6)
    assert parameter_estimate(1024, 6) > 10**10  # the 19-billion-parameter model
    with pytest.raises(BadInputError, match="--channels 1024 --depth 6"):
        check_model_fits(huge, 64 * GIB)
    check_model_fits(FitConfig(data="d", out="o", steps=1), 1 * GIB)


def test_datagen_refuses_more_workers_than_the_machine_takes(tmp_path: Path) -> None:
    from preflight_examples.datagen.cli import main

    out = tmp_path / "ds"
    assert main(["generate", "--out", str(out), "--samples", "8", "--workers", "256"]) == 2
    assert not out.exists()


def test_parameter_estimate_matches_the_model() -> None:
    from preflight_examples.trainer.model import VideoClassifier, parameter_count

    for channels, depth in ((4, 2), (16, 3), (8, 5)):
        model = VideoClassifier(3, 4, channels, depth, 0.1)
        head = channels * 2 ** (depth - 1) * 4 + 4
        assert parameter_estimate(channels, depth) == parameter_count(model) - head


# ------------------------------------------------------------------ item 7: policy ranges

DISABLING = {
    "min_exact_resume": [-1, 2, math.nan, math.inf],
    "max_silent_corruptions": [1e9, 1, -1],
    "max_lost_items": [5],
    "max_duplicate_items": [0.5],
    "max_parser_crashes": [3],
    "min_throughput_ratio": [-0.1, 1.5],
    "max_checkpoint_overhead": [2.0],
    "max_stall_s": [-1, math.inf, -math.inf],
    "max_leak_bytes_per_unit": [math.nan],
}


@pytest.mark.parametrize(
    ("key", "value"), [(k, v) for k, values in DISABLING.items() for v in values]
)
def test_policy_values_that_disable_the_gate_are_refused(key: str, value: float) -> None:
    with pytest.raises(BadInputError, match=f"policy.toml: .*{key}"):
        policy_from_table({key: value}, "policy.toml")
    with pytest.raises(BadInputError, match=key):
        policy_from_table({"small": {key: value}}, "policy.toml")


def test_policy_values_in_range_are_kept(tmp_path: Path) -> None:
    policy = policy_from_table(
        {"min_exact_resume": 1, "min_throughput_ratio": 0.5, "max_stall_s": 60}, "p"
    )
    assert {r.id: r.threshold for r in policy.requirements}["max_stall_s"] == 60.0
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[tool.preflight.gate]\nmin_exact_resume = nan\n")
    with pytest.raises(BadInputError, match="min_exact_resume"):
        load_policy(pyproject)


# ------------------------------------------------------------------ item 8: harness gaps


def _spec(tmp_path: Path, code: str, **extra: object) -> object:
    table = {"command": [sys.executable, "-c", code], **extra}
    return parse_spec("escaper", table, tmp_path / "workloads.toml", "workloads")


@pytest.mark.parametrize("value", [math.inf, 1e12, -1.0, math.nan])
def test_timeout_s_must_be_finite_and_bounded(tmp_path: Path, value: float) -> None:
    with pytest.raises(SpecError, match="timeout_s"):
        _spec(tmp_path, "pass", timeout_s=value)


ESCAPER = """
import subprocess, sys
child = subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True
)
print(child.pid, flush=True)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rpartition(b")")[2].split()[0] != b"Z"
    except OSError:
        return False


def test_a_job_that_escapes_its_process_group_is_killed_and_reported(tmp_path: Path) -> None:
    spec = _spec(tmp_path, ESCAPER)
    run = Run(spec, tmp_path / "work", {}, cwd=tmp_path)  # type: ignore[arg-type]
    with run:
        assert run.wait(RUN_TIMEOUT_S) == 0
    escaped = int(run.stdout_text().split()[0])
    assert [item.pid for item in run.leftovers] == [escaped]
    assert "left 1 process" in run.describe()
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while _alive(escaped) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(escaped)


def test_a_well_behaved_job_leaves_nothing(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "import os; print(os.getpid())")
    with Run(spec, tmp_path / "work", {}, cwd=tmp_path) as run:  # type: ignore[arg-type]
        assert run.wait(RUN_TIMEOUT_S) == 0
    assert run.leftovers == [] and os.environ.get("PREFLIGHT_RUN_TOKEN") != run.token
