"""Rule evaluation over recorded snapshots: pure, incremental, and the same live or after.

An alert is pending from the first snapshot where its condition holds, and fires at the
first snapshot where it has held for `for_s` (at once when for_s is 0), as in Prometheus.
A snapshot where the condition is false resets it. `first_fired` replays a whole history
through the same `Evaluator` the Watcher feeds live, so both always agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from preflight.alerts.rules import RULES, Rule, Thresholds
from preflight.alerts.snapshot import Snapshot


@dataclass(frozen=True)
class Alert:
    rule: str  # Rule.key
    t_s: float  # scrape time (Unix seconds) of the snapshot where it fired
    index: int  # that snapshot's position in the history

    def to_json(self) -> dict[str, object]:
        return {"rule": self.rule, "t_s": self.t_s, "index": self.index}


class Evaluator:
    """Feed snapshots in order; it returns the alerts that fire (first firing per rule)."""

    def __init__(self, thresholds: Thresholds, rules: Sequence[Rule] = RULES) -> None:
        self.thresholds = thresholds
        self.rules = tuple(rules)
        self.fired: dict[str, Alert] = {}
        self._pending_since: dict[str, float] = {}
        self._next = 0

    def feed(self, history: Sequence[Snapshot], i: int) -> list[Alert]:
        """Evaluate snapshot `i`; snapshots must be fed in order, each once."""
        if i != self._next:
            raise ValueError(f"Evaluator: expected snapshot {self._next}, got {i}")
        if i > 0 and history[i].t_s < history[i - 1].t_s:
            raise ValueError(f"Evaluator: snapshot {i} goes back in time")
        self._next += 1
        fired = []
        for item in self.rules:
            if item.key in self.fired:
                continue
            if not item.condition(history, i, self.thresholds):
                self._pending_since.pop(item.key, None)
                continue
            since = self._pending_since.setdefault(item.key, history[i].t_s)
            if history[i].t_s - since >= self.thresholds.for_s:
                alert = Alert(item.key, history[i].t_s, i)
                self.fired[item.key] = alert
                fired.append(alert)
        return fired


def first_fired(
    history: Sequence[Snapshot], thresholds: Thresholds, rules: Sequence[Rule] = RULES
) -> dict[str, Alert]:
    """Each rule's first firing over a recorded history (pure)."""
    evaluator = Evaluator(thresholds, rules)
    for i in range(len(history)):
        evaluator.feed(history, i)
    return dict(evaluator.fired)
