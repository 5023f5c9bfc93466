"""The fault battery of `preflight check`, per workload and fault kind, as readiness tests:
exact resume after kills and crash points, lost work per kill, corruption repaired or
refused (never silent), memory pressure and full disks survived."""

from __future__ import annotations

import pytest

from harness.checker import PASS, SKIP, lost_work_per_fault
from harness.faults.pytest_fixtures import assert_check_passed
from harness.workload import load_spec

from .profiles import PROFILES, WORKLOAD_PARAMS

KINDS = ("kill", "crashpoints", "corrupt", "memory", "disk")


def _record(preflight_record, name: str, kind: str, result) -> None:
    rows = result.report.rows
    interval = result.report.reference.ckpt_interval
    exact = [v for r in rows for v in r.verdicts if v.name == "exact" and v.status != SKIP]
    if exact:
        preflight_record(f"{name}.{kind}.exact", all(v.status == PASS for v in exact),
                         unit="bool")
    losses = [lost for r in rows if not r.history.corruptions
              for _, lost in lost_work_per_fault(r.history) if lost is not None]
    if losses and interval:
        preflight_record(f"{name}.{kind}.lost_work_intervals", max(losses) / interval,
                         unit="intervals")
    if kind == "corrupt":
        silent = sum(1 for r in rows if r.status == "SILENT-CORRUPTION")
        preflight_record(f"{name}.silent_corruptions", silent, unit="count")
    preflight_record(f"{name}.{kind}.experiments", len(rows), unit="count")
    preflight_record(f"{name}.{kind}.failed", sum(r.failed for r in rows), unit="count")
    preflight_record(f"{name}.{kind}.wall_s", result.report.wall_s, unit="s")


@pytest.mark.battery
@pytest.mark.timeout(1800)  # a whole battery: dozens of runs, each bounded on its own
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", WORKLOAD_PARAMS)
def test_fault_battery(fault_check, preflight_record, tier, name, kind):
    # The interval is known from the spec's sizes; deriving it from sampled progress can
    # read one unit short and turn a correct one-interval loss into a failure.
    profile = PROFILES[name]
    interval = int(load_spec(name).params(tier.name)[profile.ckpt_param])
    result = fault_check(name, scale=tier.name, faults=(kind,), seed=0, ckpt_interval=interval)
    _record(preflight_record, name, kind, result)
    assert_check_passed(result)
