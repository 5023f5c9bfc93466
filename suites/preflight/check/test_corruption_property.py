"""Hypothesis drives corruptions through a real job; a failure would shrink to the simplest."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from preflight.check.kinds.corrupt import CorruptionSpec, corruptions
from preflight.check.pytest_fixtures import FaultBattery

SPEC = str(Path(__file__).resolve().parents[3] / "fixtures" / "defects.toml")


@settings(
    max_examples=2,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@pytest.mark.long  # drives real jobs for seconds: make test-long (CI runs it)
@given(spec=corruptions())
def test_the_correct_job_never_silently_accepts_a_corrupt_checkpoint(
    fault_battery: FaultBattery, spec: CorruptionSpec
) -> None:
    row = fault_battery("clean_ckpt", spec=SPEC).corruption(spec)
    assert not row.failed, [v.detail for v in row.verdicts if v.failed]
