"""telemetry: Prometheus metrics and JSON-lines logs for the preflight workloads.

One small API (`Telemetry`) that datagen and trainer call at their progress, loss,
checkpoint and error points; `add_cli_options` gives every workload the same flags:
--metrics-port (HTTP endpoint, 127.0.0.1 by default), --metrics-file (node_exporter
textfile, replaced atomically), --metrics-interval, --log-json, --memory-budget-bytes,
--run-id. Metric names are in `telemetry.names`; the alert rules over them are shipped in
alerts/preflight.rules.yml and evaluated by the harness (src/preflight/alerts).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from preflight_examples.telemetry import names
    from preflight_examples.telemetry.core import Telemetry, add_cli_options, new_run_id
    from preflight_examples.telemetry.jsonlog import JsonLog, read_records
    from preflight_examples.telemetry.median import RunningMedian

# Imported on first use (PEP 562): prometheus_client costs ~30 ms, and a command that only
# builds its --help or runs `trainer rollback` (telemetry.clihelp) should not pay it.
_EXPORTS = {
    "JsonLog": "preflight_examples.telemetry.jsonlog",
    "RunningMedian": "preflight_examples.telemetry.median",
    "Telemetry": "preflight_examples.telemetry.core",
    "add_cli_options": "preflight_examples.telemetry.core",
    "new_run_id": "preflight_examples.telemetry.core",
    "read_records": "preflight_examples.telemetry.jsonlog",
}

__all__ = [
    "JsonLog",
    "RunningMedian",
    "Telemetry",
    "add_cli_options",
    "names",
    "new_run_id",
    "read_records",
]


def __getattr__(name: str) -> Any:
    if name == "names":
        return importlib.import_module("preflight_examples.telemetry.names")
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'telemetry' has no attribute {name!r}")
