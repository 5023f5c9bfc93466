"""Alerting: rules over the jobs' Prometheus metrics, evaluated by the harness during runs
and shipped as Prometheus alerting rules (alerts/preflight.rules.yml) for production.

- snapshot:   one scrape of the text format, parsed (pure)
- rules:      Thresholds profiles, the five rules (PromQL text + pure condition), the YAML
- evaluate:   Evaluator / first_fired: alerts over a recorded history (pure)
- watch:      Watcher: polls a textfile or endpoint, records, evaluates live; TraceWatch
- latency:    injection times (job log or fault trace) and detection latency
- experiment: a workload run with one planted condition, judged into a Detection
"""

from preflight.alerts.evaluate import Alert, Evaluator, first_fired
from preflight.alerts.latency import Injection, detection_latency_s, injection_from_log
from preflight.alerts.rules import PROFILES, RULE_KEYS, RULES, Rule, Thresholds, thresholds_for
from preflight.alerts.snapshot import ExpositionError, Snapshot, make_snapshot, parse_exposition
from preflight.alerts.watch import FileSource, HttpSource, TraceWatch, Watcher, WatchResult

__all__ = [
    "PROFILES",
    "RULES",
    "RULE_KEYS",
    "Alert",
    "Evaluator",
    "ExpositionError",
    "FileSource",
    "HttpSource",
    "Injection",
    "Rule",
    "Snapshot",
    "Thresholds",
    "TraceWatch",
    "WatchResult",
    "Watcher",
    "detection_latency_s",
    "first_fired",
    "injection_from_log",
    "make_snapshot",
    "parse_exposition",
    "thresholds_for",
]
