"""What the readiness suites need to know about each workload beyond its spec: which size
is the checkpoint interval, what "one commit at the end" means, and a parameter whose
change is config drift. Everything else comes from the workload spec."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

# Each tier's bound on one test (pytest-timeout; the default is for small-tier tests).
TIER_TIMEOUT_S = {"small": 120, "10pct": 900, "production": 12 * 3600}
# A timing test first waits for the tests running beside it to finish (harness.exclusive):
# at most the longest of them, a fault battery (test_faults.py bounds it at 1800 s).
MACHINE_WAIT_S = 1800


@dataclass(frozen=True)
class Profile:
    name: str
    total_param: str  # the size that is the job's total units of work
    ckpt_param: str  # the size that sets the checkpoint interval
    one_commit: str  # "total": interval = total units (one commit); or a literal value
    drift_param: str  # changing it on an existing workdir is config drift
    stability_scale: int  # multiply the total for the leak/throughput run (enough points)
    retry_flag: str | None = None  # the job's "reprocess only failed items" option
    item_fault: str | None = None  # a fault point that fails one item without stopping
    # Sizes the stability run sets beyond the total (e.g. a progress interval that does not
    # dominate a step: each progress write is two fsyncs).
    stability_params: tuple[tuple[str, int], ...] = ()


PROFILES = {
    "datagen": Profile(
        "datagen", "samples", "shard_size", "total", "seed", 40,
        retry_flag="--retry-errors", item_fault="datagen.before_shard_write:raise@3",
    ),
    # 40 steps x 50 with progress every 100 ms: ~5 s. At x20 with the small tier's 20 ms
    # progress (~3 s, a third of it in progress fsyncs) the host's I/O noise once read as a
    # 22% slowdown (p=0.03).
    "trainer": Profile(
        "trainer", "steps", "ckpt_every", "0", "seed", 50,
        stability_params=(("progress_every_ms", 100),),
    ),
}
WORKLOADS = sorted(PROFILES)
# As pytest parameters: the trainer's runs import torch and train, so its readiness tests are
# `long` (make test-long and the gate run them; make test does not).
WORKLOAD_PARAMS = [
    pytest.param(name, marks=[pytest.mark.long] if name == "trainer" else [], id=name)
    for name in WORKLOADS
]


def one_commit_value(profile: Profile, params: dict[str, object]) -> object:
    return params[profile.total_param] if profile.one_commit == "total" else profile.one_commit
