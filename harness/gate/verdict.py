"""Pure evaluation of a session report against the launch policy.

``validate_ready_for_production(report)`` is the pre-launch checklist of seed 000 made
executable: every requirement needs evidence (a measurement recorded by a readiness test),
the worst measured value must meet the threshold, and every readiness test must pass.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from harness.gate.policy import Policy, Requirement, default_policy


@dataclass(frozen=True)
class Evidence:
    nodeid: str
    name: str
    value: float


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


@dataclass(frozen=True)
class Verdict:
    ready: bool
    results: tuple[RequirementResult, ...]
    tests_total: int
    tests_failed: tuple[str, ...]
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and value == value:
        return float(value)
    return None


def collect_evidence(report: dict[str, Any], metric: str) -> list[Evidence]:
    """Every recorded measurement whose name ends with ``metric``."""
    found = []
    for test in report.get("tests", []):
        for item in test.get("measurements", []):
            name = str(item.get("name", ""))
            value = _number(item.get("value"))
            if value is not None and (name == metric or name.endswith("." + metric)):
                found.append(Evidence(str(test.get("nodeid", "?")), name, value))
    return found


def _meets(value: float, requirement: Requirement) -> bool:
    if requirement.comparator == "<=":
        return value <= requirement.threshold
    return value >= requirement.threshold


def evaluate_requirement(
    report: dict[str, Any], requirement: Requirement, require_evidence: bool
) -> RequirementResult:
    evidence = collect_evidence(report, requirement.metric)
    base = (
        requirement.id,
        requirement.description,
        requirement.comparator,
        requirement.threshold,
        requirement.unit,
    )
    if not evidence:
        note = "no readiness test recorded this measurement"
        return RequirementResult(*base, None, (), not require_evidence, note)
    values = [e.value for e in evidence]
    worst = max(values) if requirement.comparator == "<=" else min(values)
    return RequirementResult(*base, worst, tuple(evidence), _meets(worst, requirement))


def _failed_tests(report: dict[str, Any]) -> tuple[str, ...]:
    bad = ("failed", "error")
    return tuple(t.get("nodeid", "?") for t in report.get("tests", []) if t.get("outcome") in bad)


def validate_ready_for_production(report: dict[str, Any], policy: Policy | None = None) -> Verdict:
    """Ready only when every readiness test passed and every requirement is met with evidence."""
    policy = policy or default_policy()
    results = tuple(
        evaluate_requirement(report, r, policy.require_evidence) for r in policy.requirements
    )
    tests = report.get("tests", [])
    failed = _failed_tests(report)
    notes = []
    if not tests:
        notes.append("no readiness test ran: nothing proves the job is ready")
    if failed and policy.require_all_tests_pass:
        notes.append(f"{len(failed)} readiness test(s) failed")
    ready = bool(tests) and all(r.ok for r in results)
    if policy.require_all_tests_pass:
        ready = ready and not failed
    return Verdict(ready, results, len(tests), failed, tuple(notes))
