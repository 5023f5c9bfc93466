"""Alerting readiness: on the real trainer and datagen (telemetry on), each planted
condition — a NaN loss, a data-loader sleep, a generator stall — fires its alert and the
clean run fires none. Detection latency (injection to first alert) is recorded for the gate
(`max_alert_latency_s`, 5 s at the small tier)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import hostload
from harness.alerts import thresholds_for
from harness.alerts.experiment import run_experiments
from harness.alerts.plants import FIXTURE_SPEC, workload_plants
from harness.workload import load_specs, prepare

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
    spec = load_specs(FIXTURE_SPEC)[name]
    thresholds = thresholds_for(tier.name)
    params: dict[str, object] = dict(spec.params(tier.name))
    params["prepared"] = str(prepare(spec, params, tmp_path / "prepared", PREPARE_TIMEOUT_S))
    plants = workload_plants(thresholds)[name]
    # Measured again while the host was taking the CPU (harness.hostload): a starved clean
    # trainer once missed its checkpoint age and fired an alert that was the host's.
    detections, steal = hostload.measure_settled(
        lambda attempt: run_experiments(spec, params, plants, tmp_path / f"attempt-{attempt}",
                                        thresholds, timeout_s=RUN_TIMEOUT_S),
        lambda found: all(d.ok for d in found),
    )
    workload = name.removesuffix("_alerts")
    for detection in detections:
        rule = detection.plant.expect
        preflight_record.verdict(f"{workload}.alerts.{rule or 'clean'}", detection)
        if rule is not None and detection.latency_s is not None:
            preflight_record(f"{workload}.alerts.{rule}.detection_latency_s",
                             round(detection.latency_s, 3), unit="s",
                             threshold=TARGET_LATENCY_S,
                             ok=detection.latency_s <= TARGET_LATENCY_S)
    failures = [f"{d.plant.name}: {d.reason}" for d in detections if not d.ok]
    assert not failures, "\n".join([*failures, f"host steal per attempt: {steal}"])
