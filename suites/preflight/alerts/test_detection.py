"""Every alert rule proved on a real job: the telemetry fixture runs once clean and once
per planted condition (a loss explosion, a NaN through the `job.loss` fault point, a
memory balloon, a data-loader sleep through `job.data`, checkpoints that stop), all at
once, each watched through its metrics textfile. Each plant must fire its rule and no
other; the clean run none. Detection latency (injection to first alert) goes into the
readiness report as alerts.<rule>.detection_latency_s, against the 5 s small-tier target.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from preflight.alerts import thresholds_for
from preflight.alerts.experiment import record_attempt, run_dilated
from preflight.alerts.plants import FIXTURE_WORKLOAD, telemetry_plants
from preflight.reports.session import Recorder
from preflight.workload import load_specs
from suites.preflight.helpers import TELEMETRY_SPEC, watching_host

TIER = "small"
TARGET_LATENCY_S = 5.0  # issue 10, small tier (the seed asks for a minute)
LIVENESS_S = 30.0  # the only wall-clock bound asserted: a detector that is merely slow on
# a loaded machine is reported against the target, not failed here
RUN_TIMEOUT_S = 90.0


@pytest.mark.tier("small")
@pytest.mark.long
# "The clean run fires nothing" and latency are wall-clock facts: alone, or a neighbour's
# load starves the jobs into a stall alert.
@pytest.mark.timing
@pytest.mark.timeout(600)  # one attempt, stretched up to 4x on a starved host
def test_every_rule_fires_on_its_planted_condition_and_no_other(
    tmp_path: Path, preflight_record: Recorder
) -> None:
    spec = load_specs(TELEMETRY_SPEC)[FIXTURE_WORKLOAD]
    params = spec.params(TIER)
    th = thresholds_for(TIER)
    step_ms = int(params["step_ms"])
    # Every duration stretched by what the machine gives (run_dilated). Latency and "the
    # clean run fires nothing" are wall-clock facts: measured while the host took the CPU,
    # a failure is inconclusive (docs/contract.md), recorded as such, never a pass.
    with watching_host() as host:
        attempt = run_dilated(spec, params, lambda stretched: telemetry_plants(stretched, step_ms),
                              tmp_path / "attempt", th, timeout_s=RUN_TIMEOUT_S)
    failures = record_attempt(preflight_record, "alerts", attempt, TARGET_LATENCY_S)
    if failures and host.disturbed:
        preflight_record("alerts.status", "inconclusive")
        print(f"inconclusive ({host}): {'; '.join(failures)}")
        return
    assert not failures, "\n".join([*failures, f"host: {host}; dilation {attempt.dilation:.2f}"])

    detections, th = attempt.detections, attempt.thresholds
    clean = detections[0]
    assert clean.plant.expect is None
    # The clean run must have lasted long enough for every rule to have had its chance.
    assert clean.watched_s > max(th.stall_s, th.checkpoint_age_s), clean.to_json()
    liveness_s = LIVENESS_S * attempt.dilation
    slow = {d.plant.name: d.latency_s for d in detections if (d.latency_s or 0) > liveness_s}
    assert not slow, slow
