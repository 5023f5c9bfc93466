"""`trainer bench-infer BUNDLE`: p50/p95/p99 latency and throughput per batch size,
written to reports/bench-infer.json against the single-sample p99 target.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from preflight_examples.serving.infer import Engine, Predictor

PERCENTILES = (50, 95, 99)


# -- bench-infer -----------------------------------------------------------------------------
def latency_summary(latencies_s: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds (pure)."""
    if not latencies_s:
        raise ValueError("latency_summary: no samples")
    ms = np.asarray(latencies_s, dtype=np.float64) * 1e3
    values = np.percentile(ms, PERCENTILES)
    summary = {
        f"latency_ms_p{p}": round(float(v), 3) for p, v in zip(PERCENTILES, values, strict=True)
    }
    summary["latency_ms_max"] = round(float(ms.max()), 3)
    summary["latency_ms_mean"] = round(float(ms.mean()), 3)
    return summary


@dataclass(frozen=True)
class BenchPlan:
    batch_sizes: tuple[int, ...]
    iterations: int  # timed calls per batch size, at most
    warmup: int  # untimed calls first (allocator, lazy init)
    budget_s: float  # wall-clock bound per batch size: a slow box gives fewer samples, no hang


def bench_batch(engine: Engine, batch: np.ndarray, plan: BenchPlan) -> dict[str, Any]:
    for _ in range(plan.warmup):
        engine(batch)
    latencies_s: list[float] = []
    started_s = time.perf_counter()
    while len(latencies_s) < plan.iterations and time.perf_counter() - started_s < plan.budget_s:
        begin_s = time.perf_counter()
        engine(batch)
        latencies_s.append(time.perf_counter() - begin_s)
    busy_s = sum(latencies_s)
    return {
        "batch_size": int(batch.shape[0]),
        "iterations": len(latencies_s),
        **latency_summary(latencies_s),
        "throughput_samples_per_s": round(batch.shape[0] * len(latencies_s) / busy_s, 1),
    }


def bench_infer(predictor: Predictor, plan: BenchPlan, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    shape = predictor.bundle.info.input_shape
    results = []
    for size in plan.batch_sizes:
        batch = rng.integers(0, 256, size=(size, *shape), dtype=np.uint8)
        predictor.logits(batch)  # validates the shape once, outside the timed loop
        results.append(bench_batch(predictor.engine, batch, plan))
    return results


def machine() -> dict[str, Any]:
    import platform

    import torch

    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


SINGLE_SAMPLE_P99_MS_TARGET = 10.0  # the bar on this CPU box (the seed asks < 100 ms)


def bench_report(
    predictor: Predictor, plan: BenchPlan, results: list[dict[str, Any]], threads: int
) -> dict[str, Any]:
    """reports/bench-infer.json: per batch size latencies and throughput, target, verdict."""
    single = next((r for r in results if r["batch_size"] == 1), None)
    measured = single["latency_ms_p99"] if single else None
    passed = None if measured is None else measured <= SINGLE_SAMPLE_P99_MS_TARGET
    return {
        "benchmark": "bench-infer",
        "bundle": predictor.id,
        "bundle_dir": str(predictor.bundle.ref.root),
        "engine": predictor.engine_name,
        "input_shape": list(predictor.bundle.info.input_shape),
        "threads": threads,
        "plan": {"iterations": plan.iterations, "warmup": plan.warmup, "budget_s": plan.budget_s},
        "machine": machine(),
        "results": results,
        "target": {
            "name": "single_sample_latency_ms_p99",
            "measured": measured,
            "target": f"<= {SINGLE_SAMPLE_P99_MS_TARGET}",
            "pass": passed,
        },
        "pass": passed,
    }
