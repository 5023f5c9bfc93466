"""One scrape of a job's metrics: the Prometheus text format, parsed into plain values.

A snapshot is one target (one job, one run): every sample name has one series. The scrape
time is the harness's wall clock (Unix seconds), which is what PromQL's time() is to the
rules, so the age rules compare it with the timestamps the job exports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from prometheus_client.parser import text_string_to_metric_families

EXPOSITION_BYTES_MAX = 1 << 20
SAMPLES_MAX = 4096
IDENTITY_LABELS = ("workload", "run_id")


class ExpositionError(ValueError):
    """The text is not one target's metrics in the Prometheus text format."""


@dataclass(frozen=True)
class Snapshot:
    t_s: float
    values: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def get(self, name: str) -> float | None:
        return self.values.get(name)


def make_snapshot(
    t_s: float, values: Mapping[str, float], labels: Mapping[str, str] | None = None
) -> Snapshot:
    """A snapshot from plain values (for hand-made series in tests)."""
    return Snapshot(t_s, MappingProxyType(dict(values)), MappingProxyType(dict(labels or {})))


def parse_exposition(text: str, t_s: float) -> Snapshot:
    """Parse one scrape (pure). Two series under one sample name (two jobs in one file)
    are an error: the rules compare series of one target."""
    if len(text) > EXPOSITION_BYTES_MAX:
        raise ExpositionError(f"exposition of {len(text)} chars exceeds {EXPOSITION_BYTES_MAX}")
    values: dict[str, float] = {}
    seen: dict[str, dict[str, str]] = {}
    identity: dict[str, str] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if len(values) >= SAMPLES_MAX:
                    raise ExpositionError(f"more than {SAMPLES_MAX} samples in one scrape")
                name, labels = sample.name, dict(sample.labels)
                key = {k: v for k, v in labels.items() if k in IDENTITY_LABELS}
                if name in values and seen[name] != labels:
                    raise ExpositionError(f"{name}: more than one series ({seen[name]}, {labels})")
                values[name], seen[name] = float(sample.value), labels
                identity = identity or key
    except ExpositionError:
        raise
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise ExpositionError(f"not the Prometheus text format: {exc}") from None
    return make_snapshot(t_s, values, identity)
