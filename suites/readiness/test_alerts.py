"""Alerting readiness: on the real trainer and datagen (telemetry on), each planted
condition — a NaN loss, a data-loader sleep, a generator stall — fires its alert and the
clean run fires none. Detection latency (injection to first alert) is recorded for the gate
(`max_alert_latency_s`, 5 s at the small tier)."""

from __future__ import annotations

from pathlib import Path

import pytest

from preflight.alerts import thresholds_for
from preflight.alerts.experiment import record_attempt, run_dilated
from preflight.alerts.plants import workload_plants
from preflight.workload import load_specs, prepare
from suites.preflight.helpers import TELEMETRY_SPEC, watching_host

from .profiles import MACHINE_WAIT_S, TIER_TIMEOUT_S

RUN_TIMEOUT_S = 180.0
PREPARE_TIMEOUT_S = 180.0
TARGET_LATENCY_S = 5.0


@pytest.mark.long
# Latency and "the clean run fires nothing" are wall-clock facts: beside a neighbour's jobs on
# 2 cores, three clean trainers once went 3.5 s without a step and fired stall alerts.
@pytest.mark.timing
@pytest.mark.timeout(TIER_TIMEOUT_S["small"] + MACHINE_WAIT_S)
@pytest.mark.parametrize("name", ["datagen_alerts", "trainer_alerts"])
def test_alerts_fire_on_planted_conditions(tmp_path: Path, preflight_record, tier, name):
    spec = load_specs(TELEMETRY_SPEC)[name]
    thresholds = thresholds_for(tier.name)
    params: dict[str, object] = dict(spec.params(tier.name))
    params["prepared"] = str(prepare(spec, params, tmp_path / "prepared", PREPARE_TIMEOUT_S))
    # Every duration stretched by what the machine gives (preflight.alerts.experiment
    # .run_dilated). On a host taking 70% of the CPU a clean datagen fired alerts that were
    # the host's: a failure measured while the host took the CPU is inconclusive
    # (docs/contract.md), recorded as such, never a pass.
    with watching_host() as host:
        attempt = run_dilated(spec, params, lambda th: workload_plants(th)[name],
                              tmp_path / "attempt", thresholds, timeout_s=RUN_TIMEOUT_S)
    workload = name.removesuffix("_alerts")
    failures = record_attempt(preflight_record, f"{workload}.alerts", attempt, TARGET_LATENCY_S)
    if failures and host.disturbed:
        preflight_record(f"{workload}.alerts.status", "inconclusive")
        print(f"inconclusive ({host}): {'; '.join(failures)}")
        return
    assert not failures, "\n".join([*failures, f"host: {host}; dilation {attempt.dilation:.2f}"])
