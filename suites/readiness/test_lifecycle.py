"""Readiness of our two workloads, as thin tests over the gate's own experiments
(preflight.experiments): the same code `preflight gate` runs, here per test so that a failure
names its experiment. Each finding's measurements go into the session report."""

from __future__ import annotations

from pathlib import Path

import pytest

from preflight.experiments import FAIL, INCONCLUSIVE, NOT_APPLICABLE, Context, Finding, for_spec
from preflight.gate.policy import load_policy
from preflight.workload import load_spec

from .profiles import TIER_TIMEOUT_S, WORKLOAD_PARAMS

REPO = Path(__file__).resolve().parents[2]


def run_experiment(name: str, experiment: str, tier: str, base: Path) -> Finding:
    spec = load_spec(name, REPO / "pyproject.toml")
    policy = load_policy(REPO / "pyproject.toml", tier)
    bounds = {r.id: policy.threshold(r, tier) for r in policy.requirements}
    chosen = next(e for e in for_spec(spec) if e.name == experiment)
    assert chosen.applicable(spec) is None, chosen.applicable(spec)
    return chosen.execute(Context(spec, tier, base, 0, bounds))


def record(preflight_record, workload: str, finding: Finding) -> None:
    for m in finding.measurements:
        preflight_record(f"{workload}.{m.name}", m.value, unit=m.unit)
    preflight_record(f"{workload}.{finding.experiment}.status", finding.status)


def assert_found(finding: Finding) -> None:
    """A failure fails the test; an inconclusive timing result (the host took the CPU) is
    recorded and passes: it is no evidence either way, and the gate says so."""
    assert finding.status not in (FAIL, NOT_APPLICABLE), finding.reason
    if finding.status == INCONCLUSIVE:
        print(f"inconclusive: {finding.reason}")


@pytest.mark.long  # drives real jobs for seconds: make test-long (CI runs it)
@pytest.mark.parametrize("experiment", ["completion", "exclusion", "drift"])
@pytest.mark.parametrize("name", WORKLOAD_PARAMS)
def test_lifecycle(tmp_path, preflight_record, tier, name, experiment):
    finding = run_experiment(name, experiment, tier.name, tmp_path)
    record(preflight_record, name, finding)
    assert_found(finding)


@pytest.mark.long  # drives real jobs for seconds: make test-long (CI runs it)
@pytest.mark.parametrize("experiment", ["accounting", "retry"])
def test_datagen_accounting(tmp_path, preflight_record, tier, experiment):
    finding = run_experiment("datagen", experiment, tier.name, tmp_path)
    record(preflight_record, "datagen", finding)
    assert_found(finding)


@pytest.mark.long  # drives real jobs for seconds: make test-long (CI runs it)
@pytest.mark.parametrize("name", WORKLOAD_PARAMS)
@pytest.mark.timing  # throughput over the run: alone, or a neighbour's load reads as decay
@pytest.mark.timeout(TIER_TIMEOUT_S["small"] * 3)
def test_memory_and_throughput_stable(tmp_path, preflight_record, tier, name):
    finding = run_experiment(name, "stability", tier.name, tmp_path)
    record(preflight_record, name, finding)
    assert_found(finding)


@pytest.mark.parametrize("name", WORKLOAD_PARAMS)
@pytest.mark.long
@pytest.mark.timing  # a wall-time ratio: alone, or a neighbour's load swamps it
@pytest.mark.timeout(TIER_TIMEOUT_S["small"] * 3)
def test_checkpoint_overhead(tmp_path, preflight_record, tier, name):
    finding = run_experiment(name, "overhead", tier.name, tmp_path)
    record(preflight_record, name, finding)
    assert_found(finding)
