"""The metric definitions of one job, in a registry of its own (never the global one, so
two jobs, or many tests, in one process do not collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Info
from prometheus_client.metrics import MetricWrapperBase

from preflight_examples.telemetry import names

LABELS = list(names.LABELS)


class Metrics:
    """Gauges, counters and an info, labelled workload and run_id.

    Series that would lie before their first value (loss median, checkpoint time, last
    error) are created lazily: a labelled child exists from `.labels()` on with value 0,
    and a checkpoint timestamp of 0 reads as "55 years old" to the age rule."""

    def __init__(self, workload: str, run_id: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.label_values = (workload, run_id)
        reg = self.registry

        def gauge(name: str, text: str) -> Gauge:
            return Gauge(name, text, LABELS, registry=reg)

        self.up = gauge(names.UP, "1 while the job runs, 0 once it has stopped")
        self.done = gauge(names.PROGRESS_DONE, "units of work done")
        self.total = gauge(names.PROGRESS_PLANNED, "units of work in the whole job")
        self.last_advance = gauge(
            names.PROGRESS_LAST_ADVANCE, "Unix time at which progress_done last changed"
        )
        self.units_done = Counter(
            names.UNITS_DONE,
            "units of work this process completed (rate() of it is the throughput)",
            LABELS,
            registry=reg,
        )
        self.eta = gauge(names.ETA, "estimated seconds to completion (NaN: unknown)")
        self.loss = gauge(names.LOSS, "latest training loss")
        self.loss_median = gauge(
            names.LOSS_MEDIAN,
            f"running median of the last {names.LOSS_MEDIAN_WINDOW} finite losses",
        )
        self.grad_norm = gauge(names.GRAD_NORM, "latest gradient norm")
        self.nonfinite = Counter(
            names.NONFINITE, "non-finite losses or gradients seen", LABELS, registry=reg
        )
        self.rss = gauge(names.RSS, "resident memory of the job's process tree")
        self.memory_budget = gauge(
            names.MEMORY_BUDGET, "memory the job may use (cgroup limit, RAM, or configured)"
        )
        self.ckpt_last = gauge(
            names.CHECKPOINT_LAST_SUCCESS,
            "Unix time of the last successful checkpoint (or of the start, before the first)",
        )
        self.ckpt_duration = gauge(names.CHECKPOINT_DURATION, "duration of the last checkpoint")
        self.last_error = gauge(names.LAST_ERROR, "Unix time of the last error reported")
        self.last_error_info = Info(
            names.LAST_ERROR_INFO, "text of the last error reported", LABELS, registry=reg
        )
        # Created eagerly: 0 is the truth for these until the job says otherwise, and a
        # counter must exist at 0 for increase() to see its first step.
        eager = (self.up, self.done, self.total, self.units_done, self.nonfinite, self.rss)
        for metric in eager:
            self.child(metric)

    def child(self, metric: MetricWrapperBase) -> MetricWrapperBase:
        return metric.labels(*self.label_values)
