"""Checkpoint overhead: wall time with the spec's checkpoint interval against one commit at
the end, the best of interleaved runs each (a ratio side by side, never seconds), less the
time the host froze the machine. Over the bound on a disturbed host it is inconclusive."""

from __future__ import annotations

from dataclasses import dataclass

from preflight.experiments.base import (
    FAIL,
    PASS,
    Context,
    Finding,
    Measurement,
    tail,
    timing_status,
)
from preflight.host.rule import host_text
from preflight.host.watch import watching_frozen
from preflight.spec.parse import WorkloadSpec

REPS_MIN, REPS_MAX, SIDE_S = 2, 5, 20.0


@dataclass(frozen=True)
class OverheadObservation:
    sharded_s: tuple[float, ...]
    single_s: tuple[float, ...]
    frozen_s: float
    steal: float | None  # the worst steal share over the runs
    frozen: float | None  # the share of the time the harness was frozen
    bound: float | None
    error: str = ""
    neighbours: float | None = None  # the most other processes took during a run


def judge_overhead(obs: OverheadObservation) -> Finding:
    host = host_text(obs.steal, obs.frozen, obs.neighbours)
    if obs.error:
        return Finding("overhead", FAIL, (), obs.error, host)
    overhead = min(obs.sharded_s) / min(obs.single_s) - 1.0
    found = (Measurement("checkpoint_overhead", max(overhead, 0.0), "fraction"),
             Measurement("checkpoint_overhead_raw", overhead, "fraction"),
             Measurement("checkpoint_overhead_runs", len(obs.single_s), "pairs"))
    over = obs.bound is not None and overhead > obs.bound
    status = timing_status(over, obs.steal, obs.frozen, obs.neighbours)
    reason = ""
    if over:
        reason = f"checkpointing costs {overhead:.3f} of the wall time, bound {obs.bound:g}"
        if status != FAIL:
            reason = f"measured while the machine was taken ({host}): {reason}"
    return Finding("overhead", status if over else PASS, found, reason, host)


class Overhead:
    name, timing, metrics = "overhead", True, ("checkpoint_overhead",)

    def applicable(self, spec: WorkloadSpec) -> str | None:
        readiness = spec.readiness
        if readiness.checkpoint_param is None:
            return "readiness.checkpoint_param not given (the size that sets the interval)"
        if readiness.checkpoint_off == "total" and readiness.total_param is None:
            return "readiness.checkpoint_off is \"total\" but readiness.total_param is not given"
        return None

    def execute(self, ctx: Context) -> Finding:
        readiness = ctx.spec.readiness
        handle = ctx.handle(self.name)
        sharded = handle.params()
        off = (sharded[str(readiness.total_param)] if readiness.checkpoint_off == "total"
               else readiness.checkpoint_off)
        single = {**sharded, str(readiness.checkpoint_param): off}
        walls: dict[str, list[float]] = {"sharded": [], "single": []}
        frozen_s, steal, wall_total, neighbours = 0.0, 0.0, 0.0, 0.0
        for rep in range(REPS_MAX):
            if rep >= REPS_MIN and sum(walls["single"]) >= SIDE_S:
                break
            for label, params in (("sharded", sharded), ("single", single)):
                with watching_frozen():
                    run = handle.run(params)
                host = run.host
                neighbours = max(neighbours, host.neighbours or 0.0)
                if run.returncode != 0:
                    return judge_overhead(OverheadObservation(
                        (), (), 0.0, None, None, None,
                        f"the {label} run failed (exit {run.returncode}): {tail(run)}"))
                walls[label].append(max(run.duration_s - host.frozen_s, 1e-3))
                frozen_s += host.frozen_s
                wall_total += run.duration_s
                steal = max(steal, host.steal or 0.0)
        return judge_overhead(OverheadObservation(
            tuple(walls["sharded"]), tuple(walls["single"]), frozen_s, steal,
            frozen_s / wall_total if wall_total else None,
            ctx.bounds.get("max_checkpoint_overhead"), neighbours=neighbours))
