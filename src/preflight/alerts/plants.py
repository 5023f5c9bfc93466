"""The planted conditions for the telemetry fixture job (fixtures/telemetry.toml), one per
rule plus a clean run, sized from the thresholds so each plant trips its own rule only.

Used by suites/preflight/alerts (the rules proved on every run) and bench_alerts.py.
"""

from __future__ import annotations

import math

from preflight.alerts.experiment import Plant
from preflight.alerts.rules import Thresholds

FIXTURE_WORKLOAD = "telemetry"
INJECT_AT_STEP = 100  # after the loss median has its baseline (telemetry.names)
MARGIN_S = 1.5  # runs go on this long past the last moment an alert could be due


def stall_sleep_s(th: Thresholds) -> float:
    """The planted data-loader sleep: past the stall alert, short of a stale checkpoint."""
    stall_due_s = th.stall_s + th.for_s
    assert stall_due_s + 0.5 < th.checkpoint_age_s, "a stall would also be a stale checkpoint"
    return (stall_due_s + th.checkpoint_age_s) / 2.0


def telemetry_plants(th: Thresholds, step_ms: int) -> list[Plant]:
    """Clean, then one plant per rule. The data-loader sleep lies halfway between the stall
    alert (its threshold plus `for`) and the checkpoint threshold: long enough to stall, too
    short to age the checkpoint. Every run lasts `for` past the moment its alert is due."""
    sleep_s = stall_sleep_s(th)

    def steps_for(seconds: float) -> int:
        return math.ceil(seconds * 1000.0 / step_ms)

    quick = {"steps": INJECT_AT_STEP + steps_for(th.for_s + MARGIN_S)}
    nth = INJECT_AT_STEP
    return [
        Plant("clean", None, {"steps": steps_for(th.checkpoint_age_s + th.for_s + MARGIN_S)}),
        Plant(
            "loss_explosion",
            "loss_explosion",
            {**quick, "explode_at": INJECT_AT_STEP},
            log_fault="loss_explosion",
        ),
        Plant(
            "nonfinite",
            "nonfinite",
            quick,
            faults=f"job.loss:nan@{nth}",
            trace_point="job.loss",
            trace_nth=nth,
        ),
        Plant("memory", "memory", {**quick, "balloon_at": INJECT_AT_STEP}, log_fault="memory"),
        Plant(
            "stall",
            "stall",
            quick,
            faults=f"job.data:sleep={sleep_s:g}@{nth}",
            trace_point="job.data",
            trace_nth=nth,
        ),
        Plant(
            "checkpoint_stale",
            "checkpoint_stale",
            {
                "steps": 20 + steps_for(th.checkpoint_age_s + th.for_s + MARGIN_S),
                "ckpt_stop_at": 20,
            },
            log_fault="checkpoint_stop",
        ),
    ]


# The real workloads (fixtures/telemetry.toml [workloads.trainer_alerts], [datagen_alerts]):
# the fault points they already have, or that the telemetry wiring adds (trainer.data).
TRAINER_WORKLOAD = "trainer_alerts"
DATAGEN_WORKLOAD = "datagen_alerts"
TRAINER_INJECT_AT_STEP = 300
DATAGEN_INJECT_AT_SHARD = 3  # with one worker, the third shard it writes


def workload_plants(th: Thresholds) -> dict[str, list[Plant]]:
    """Per workload: a clean run, then its plants. The trainer runs with --skip-nonfinite,
    so a planted NaN is counted and skipped rather than ending the run."""
    sleep_s = f"{stall_sleep_s(th):g}"
    nth = TRAINER_INJECT_AT_STEP
    short = {"steps": TRAINER_INJECT_AT_STEP + 500}
    return {
        TRAINER_WORKLOAD: [
            Plant("trainer_clean", None),
            Plant(
                "trainer_nonfinite",
                "nonfinite",
                short,
                faults=f"trainer.loss:nan@{nth}",
                trace_point="trainer.loss",
                trace_nth=nth,
            ),
            Plant(
                "trainer_data_stall",
                "stall",
                short,
                faults=f"trainer.data:sleep={sleep_s}@{nth}",
                trace_point="trainer.data",
                trace_nth=nth,
            ),
        ],
        DATAGEN_WORKLOAD: [
            Plant("datagen_clean", None),
            Plant(
                "datagen_stall",
                "stall",
                faults=f"datagen.before_shard_write:sleep={sleep_s}@{DATAGEN_INJECT_AT_SHARD}",
                trace_point="datagen.before_shard_write",
                trace_nth=DATAGEN_INJECT_AT_SHARD,
            ),
        ],
    }
