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
    tier: str | None = None  # the tier of the test that recorded it


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
                tier = test.get("tier")
                found.append(
                    Evidence(str(test.get("nodeid", "?")), name, value, str(tier) if tier else None)
                )
    return found


def _meets(value: float, comparator: str, threshold: float) -> bool:
    return value <= threshold if comparator == "<=" else value >= threshold


def evaluate_requirement(
    report: dict[str, Any], requirement: Requirement, policy: Policy
) -> list[RequirementResult]:
    """One result per tier that has evidence, each judged by that tier's threshold; one
    result without evidence when no test recorded the metric."""
    def result(
        threshold: float, measured: float | None, items: list[Evidence], ok: bool, **extra: Any
    ) -> RequirementResult:
        return RequirementResult(
            requirement.id,
            requirement.description,
            requirement.comparator,
            threshold,
            requirement.unit,
            measured,
            tuple(items),
            ok,
            **extra,
        )

    evidence = collect_evidence(report, requirement.metric)
    if not evidence:
        note = "no readiness test recorded this measurement"
        return [result(requirement.threshold, None, [], not policy.require_evidence, note=note)]
    by_tier: dict[str | None, list[Evidence]] = {}
    for item in evidence:
        by_tier.setdefault(item.tier, []).append(item)
    results = []
    for tier, items in by_tier.items():
        threshold = policy.threshold(requirement, tier)
        values = [e.value for e in items]
        worst = max(values) if requirement.comparator == "<=" else min(values)
        ok = _meets(worst, requirement.comparator, threshold)
        results.append(result(threshold, worst, items, ok, tier=tier))
    return results


def _failed_tests(report: dict[str, Any]) -> tuple[str, ...]:
    bad = ("failed", "error")
    return tuple(t.get("nodeid", "?") for t in report.get("tests", []) if t.get("outcome") in bad)


def validate_ready_for_production(report: dict[str, Any], policy: Policy | None = None) -> Verdict:
    """Ready only when every readiness test passed and every requirement is met with evidence."""
    policy = policy or default_policy()
    results = tuple(
        result for r in policy.requirements for result in evaluate_requirement(report, r, policy)
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
