"""Test-suite settings of the readiness suites. What the experiments know per workload lives
in the workload spec ([tool.preflight.workloads.X.readiness]), not here."""

from __future__ import annotations

import pytest

from preflight.spec import tiers

# Each tier's bound on one test (pytest-timeout; the default is for small-tier tests).
TIER_TIMEOUT_S = {t.name: t.test_timeout_s for t in tiers.TIERS}
# A timing test first waits for the tests running beside it to finish (suites.timing_plugin):
# at most the longest of them, a fault battery (test_faults.py bounds it at 1800 s).
MACHINE_WAIT_S = 1800
WORKLOADS = ("datagen", "trainer")
# The trainer's runs import torch and train, so its readiness tests are `long`
# (make test-long runs them; make test does not).
WORKLOAD_PARAMS = [
    pytest.param(name, marks=[pytest.mark.long] if name == "trainer" else [], id=name)
    for name in WORKLOADS
]
