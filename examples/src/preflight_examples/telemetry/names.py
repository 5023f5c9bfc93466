"""The exposition contract: metric and label names every preflight job exports.

The harness's alert rules (src/preflight/alerts) and the shipped Prometheus rules
(alerts/preflight.rules.yml) read these names from the exposition text, never by importing
this module, so a rename here is a breaking change to both.

Named by the Prometheus conventions (`promtool check metrics` is clean, suites/examples/telemetry):
no `job` label of our own (the scrape target's `job` would clash with it; `workload` names the
job kind), `_total` only on counters, and throughput as a counter for rate() rather than a
rate gauge that only the job's own window could average.
"""

from __future__ import annotations

PREFIX = "preflight_"
LABELS = ("workload", "run_id")

UP = "preflight_up"
PROGRESS_DONE = "preflight_progress_done"
# Units of work in the whole job (a gauge: "total" would read as a counter).
PROGRESS_PLANNED = "preflight_progress_planned"
# Wall-clock time (Unix seconds) at which `done` last changed: the stall rule's base.
PROGRESS_LAST_ADVANCE = "preflight_progress_last_advance_timestamp_seconds"
# Units this process completed (a counter; resets on restart, which rate() handles):
# throughput is rate(preflight_units_done_total[5m]).
UNITS_DONE = "preflight_units_done"  # a Counter: exposed as preflight_units_done_total
UNITS_DONE_TOTAL = "preflight_units_done_total"
ETA = "preflight_eta_seconds"
LOSS = "preflight_loss"
# Running median of the finite losses over the last LOSS_MEDIAN_WINDOW values, computed in
# the job so the explosion rule is one comparison: preflight_loss > k * preflight_loss_median.
LOSS_MEDIAN = "preflight_loss_median"
GRAD_NORM = "preflight_grad_norm"
NONFINITE = "preflight_nonfinite"  # a Counter: exposed as preflight_nonfinite_total
NONFINITE_TOTAL = "preflight_nonfinite_total"
RSS = "preflight_rss_bytes"
MEMORY_BUDGET = "preflight_memory_budget_bytes"
CHECKPOINT_LAST_SUCCESS = "preflight_checkpoint_last_success_timestamp_seconds"
CHECKPOINT_DURATION = "preflight_checkpoint_duration_seconds"
LAST_ERROR = "preflight_last_error_timestamp_seconds"
LAST_ERROR_INFO = "preflight_last_error"  # an Info: exposed as preflight_last_error_info

LOSS_MEDIAN_WINDOW = 100
LOSS_MEDIAN_MIN_COUNT = 10  # fewer finite losses than this: no median series yet
ERROR_TEXT_CHARS_MAX = 200  # a label value; long texts would bloat every scrape
