"""telemetry: Prometheus metrics and JSON-lines logs for the preflight workloads.

One small API (`Telemetry`) that datagen and trainer call at their progress, loss,
checkpoint and error points; `add_cli_options` gives every workload the same flags:
--metrics-port (HTTP endpoint, 127.0.0.1 by default), --metrics-file (node_exporter
textfile, replaced atomically), --metrics-interval, --log-json, --memory-budget-bytes,
--run-id. Metric names are in `telemetry.names`; the alert rules over them are shipped in
alerts/preflight.rules.yml and evaluated by the harness (harness/alerts).
"""

from telemetry import names
from telemetry.core import Telemetry, add_cli_options, new_run_id
from telemetry.jsonlog import JsonLog, read_records
from telemetry.median import RunningMedian

__all__ = [
    "JsonLog",
    "RunningMedian",
    "Telemetry",
    "add_cli_options",
    "names",
    "new_run_id",
    "read_records",
]
