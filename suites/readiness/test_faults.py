"""The fault batteries of the gate, per workload and fault kind, as thin tests over the
gate's FaultBattery experiment: exact resume after kills and crash points, lost work per
kill, corruption repaired or refused (never silent), memory pressure and full disks."""

from __future__ import annotations

import pytest

from .profiles import WORKLOAD_PARAMS
from .test_lifecycle import assert_found, record, run_experiment

KINDS = ("kill", "crashpoints", "corrupt", "memory", "disk")


@pytest.mark.battery
@pytest.mark.timeout(1800)  # a whole battery: dozens of runs, each bounded on its own
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", WORKLOAD_PARAMS)
def test_fault_battery(tmp_path, preflight_record, tier, name, kind):
    finding = run_experiment(name, f"faults.{kind}", tier.name, tmp_path)
    record(preflight_record, name, finding)
    assert_found(finding)
