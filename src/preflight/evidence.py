"""The evidence contract: what experiments find and what the verdict and the readiness report
read, typed and frozen (docs/contract.md "Statuses").

- ``Status``: passed, failed, inconclusive, not applicable. A StrEnum whose values are the
  strings every report already emits, so JSON and printed text do not change.
- ``Measurement``: one measured figure; ``inconclusive`` when it was taken on a machine the
  host took (preflight.host.rule).
- ``Finding``: the judged result of one experiment on one workload (preflight.experiments).
- ``Evidence``, ``RequirementResult``, ``Verdict``: the gate's judgement of the rows against
  its policy (gate/verdict.py judges; reports/ and the history read them).
- ``Row``: one entry of the gate's evidence: an experiment as it ran, or a test of a pytest
  session report. Session dicts are converted once, at the border (``Row.from_json``,
  ``rows_of``); an experiment's entry is written back with ``Row.to_json``.

Other vocabularies meet Status only at their borders, through the functions at the end:
pytest's outcomes (``status_of_outcome``), the ``preflight check`` verdicts "pass/fail/skip"
(``verdict_word``, ``status_of_verdict_word``), its rows "PASS/FAIL/SILENT-CORRUPTION/SKIP"
(``row_word``, ``status_of_row_word``) and the readiness report's labels (``label``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    PASSED = "passed"
    FAILED = "failed"  # the job did something wrong
    INCONCLUSIVE = "inconclusive"  # the host took the machine, or no fault was injected
    NOT_APPLICABLE = "not_applicable"  # the spec does not give the experiment's inputs

    @property
    def ok(self) -> bool:
        """Nothing against a launch (an inconclusive result is the policy's to weigh)."""
        return self in (Status.PASSED, Status.NOT_APPLICABLE)


Number = float | int | bool


@dataclass(frozen=True)
class Measurement:
    name: str  # an experiment's "<metric>"; in a Row, "<workload>.<metric>"
    value: Number | None  # None: recorded without a number
    unit: str = ""
    inconclusive: bool = False  # taken while the host took the machine


@dataclass(frozen=True)
class Finding:
    """The judged result of one experiment on one workload."""

    experiment: str
    status: Status
    measurements: tuple[Measurement, ...] = ()
    reason: str = ""  # why it failed, is inconclusive or not applicable
    host: str = ""  # what the host did while it ran (preflight.host.rule.host_text)
    injected: bool | None = None  # for fault experiments: was every fault really injected
    # Evidence files the experiment wrote (paths relative to its Context.base_dir): the
    # samples or histories the readiness report plots (preflight.reports.evidence).
    artifacts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))

    @property
    def ok(self) -> bool:
        return self.status.ok


@dataclass(frozen=True)
class Row:
    """One entry of the gate's evidence. ``experiment`` is None for a pytest test (a
    project suite's), whose ``outcome`` is pytest's word ("error", "skipped", ...) kept as
    recorded; ``status`` is what it means here."""

    nodeid: str
    outcome: str
    status: Status
    measurements: tuple[Measurement, ...] = ()
    tier: str | None = None
    experiment: str | None = None
    workload: str | None = None
    reason: str = ""
    longrepr: str = ""  # a failed test's traceback (pytest rows)
    host: str = ""
    injected: bool | None = None
    wall_s: float | None = None
    attempts: int = 0
    timing: bool = False
    metrics: tuple[str, ...] = ()  # the policy metrics the experiment gives evidence for
    replay: str = ""
    artifacts: tuple[str, ...] = ()

    @property
    def is_experiment(self) -> bool:
        return self.experiment is not None

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Row:
        """A report entry (an experiment's, or a session report's test) as read."""
        outcome = str(doc.get("outcome"))
        unsure = outcome == Status.INCONCLUSIVE
        tier, wall, attempts = doc.get("tier"), doc.get("wall_s"), doc.get("attempts")
        experiment, workload = doc.get("experiment"), doc.get("workload")
        return cls(
            nodeid=str(doc.get("nodeid", "?")), outcome=outcome,
            status=status_of_outcome(outcome),
            measurements=tuple(_measurement(m, unsure) for m in doc.get("measurements") or ()
                               if isinstance(m, Mapping)),
            tier=str(tier) if tier else None,
            experiment=None if experiment is None else str(experiment),
            workload=None if workload is None else str(workload),
            reason=str(doc.get("reason") or ""), longrepr=str(doc.get("longrepr") or ""),
            host=str(doc.get("host") or ""),
            injected=doc.get("injected") if isinstance(doc.get("injected"), bool) else None,
            wall_s=float(wall) if isinstance(wall, int | float) else None,
            attempts=attempts if isinstance(attempts, int) and not isinstance(attempts, bool)
            else 0, timing=bool(doc.get("timing")),
            metrics=tuple(str(m) for m in doc.get("metrics") or ()),
            replay=str(doc.get("replay") or ""),
            artifacts=tuple(str(a) for a in doc.get("artifacts") or ()))

    def to_json(self) -> dict[str, Any]:
        """An experiment's report entry (report.json's shape, keys in their order)."""
        if self.experiment is None:
            raise ValueError(f"{self.nodeid}: a pytest test's entry is its session report's")
        return {
            "nodeid": self.nodeid, "workload": self.workload, "experiment": self.experiment,
            "outcome": self.outcome, "tier": self.tier, "reason": self.reason,
            "host": self.host, "injected": self.injected, "wall_s": self.wall_s,
            "attempts": self.attempts, "timing": self.timing, "metrics": list(self.metrics),
            "replay": self.replay, "artifacts": list(self.artifacts),
            "measurements": [{"name": m.name, "value": m.value, "unit": m.unit,
                              "inconclusive": m.inconclusive} for m in self.measurements],
        }


def _measurement(doc: Mapping[str, Any], row_inconclusive: bool) -> Measurement:
    value = doc.get("value")
    number = value if isinstance(value, int | float) and not (
        isinstance(value, float) and math.isnan(value)) else None
    return Measurement(str(doc.get("name", "")), number, str(doc.get("unit") or ""),
                       bool(doc.get("inconclusive")) or row_inconclusive)


def rows_of(tests: Iterable[Row | Mapping[str, Any]]) -> tuple[Row, ...]:
    """A report's ``tests`` as Rows: the one place session dicts become evidence (Rows
    pass through, so a caller holding Rows already converts nothing)."""
    return tuple(t if isinstance(t, Row) else Row.from_json(t) for t in tests
                 if isinstance(t, Row | Mapping))


# ------------------------------------------------------------------------------ borders

# pytest's outcomes (preflight.reports.session): an error is a failure; a skipped test
# proves nothing and fails nothing; an expected failure is what its author expected.
_OUTCOMES = {"passed": Status.PASSED, "failed": Status.FAILED, "error": Status.FAILED,
             "inconclusive": Status.INCONCLUSIVE, "not_applicable": Status.NOT_APPLICABLE,
             "skipped": Status.NOT_APPLICABLE, "xfailed": Status.PASSED,
             "xpassed": Status.PASSED}


def status_of_outcome(outcome: str) -> Status:
    """A report entry's outcome (a Status value, or pytest's word) as a Status; anything
    else counts as neither passed nor failed (not applicable)."""
    return _OUTCOMES.get(outcome, Status.NOT_APPLICABLE)


# The readiness report's words for a status.
LABELS = {Status.PASSED: "PASS", Status.FAILED: "FAIL", Status.INCONCLUSIVE: "INCONCLUSIVE",
          Status.NOT_APPLICABLE: "N/A"}


def label(status: Status) -> str:
    return LABELS[status]


# ``preflight check``'s verdicts (preflight.check.checker): "skip" is a verdict that could
# not be judged (inconclusive) or did not apply; both are written "skip".
_VERDICT_WORDS = {Status.PASSED: "pass", Status.FAILED: "fail", Status.INCONCLUSIVE: "skip",
                  Status.NOT_APPLICABLE: "skip"}


def verdict_word(status: Status) -> str:
    return _VERDICT_WORDS[status]


def status_of_verdict_word(word: str) -> Status:
    found = {"pass": Status.PASSED, "fail": Status.FAILED, "skip": Status.INCONCLUSIVE}
    return found[word]


# ``preflight check``'s rows (preflight.check.report): a silent corruption is a failure
# that says so; SKIP is a row whose fault was never injected (inconclusive).
SILENT_CORRUPTION = "SILENT-CORRUPTION"


def row_word(status: Status, *, silent_corruption: bool = False) -> str:
    if status is Status.FAILED:
        return SILENT_CORRUPTION if silent_corruption else "FAIL"
    return "PASS" if status is Status.PASSED else "SKIP"


def status_of_row_word(word: str) -> Status:
    found = {"PASS": Status.PASSED, "FAIL": Status.FAILED, SILENT_CORRUPTION: Status.FAILED,
             "SKIP": Status.INCONCLUSIVE}
    return found[word]


# --- the gate's verdict (gate/verdict.py judges; reports/ renders) ---------------------------


@dataclass(frozen=True)
class Evidence:
    nodeid: str
    name: str
    value: float
    tier: str | None = None  # the tier of the test that recorded it
    inconclusive: bool = False  # taken while the host took the CPU (preflight.experiments)


@dataclass(frozen=True)
class RequirementResult:
    id: str
    description: str
    comparator: str
    threshold: float
    unit: str
    measured: float | None  # the worst value over all evidence; None when there is none
    evidence: tuple[Evidence, ...]
    ok: bool
    note: str = ""
    tier: str | None = None  # the tier whose threshold applies (None: no evidence)
    status: Status | None = None  # None only in results made without one


@dataclass(frozen=True)
class Verdict:
    ready: bool
    results: tuple[RequirementResult, ...]
    tests_total: int
    tests_failed: tuple[str, ...]
    notes: tuple[str, ...] = field(default=())
    tests_inconclusive: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
