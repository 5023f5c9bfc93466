"""Pure evaluation of a session report against the launch policy.

``validate_ready_for_production(report)`` is the pre-launch checklist of seed 000 made
executable: every requirement needs evidence (a measurement recorded by a readiness test),
the worst measured value must meet the threshold, and every readiness test must pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from preflight.evidence import Evidence, RequirementResult, Row, Status, Verdict, rows_of
from preflight.gate.policy import Policy, default_policy
from preflight.requirements import Requirement


def _number(value: float | int | bool | None) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and value == value:
        return float(value)
    return None


def collect_evidence(rows: Sequence[Row], metric: str) -> list[Evidence]:
    """Every recorded measurement whose name ends with ``metric``."""
    found = []
    for row in rows:
        for item in row.measurements:
            value = _number(item.value)
            if value is not None and (item.name == metric or item.name.endswith("." + metric)):
                found.append(Evidence(row.nodeid, item.name, value, row.tier, item.inconclusive))
    return found


def _meets(value: float, comparator: str, threshold: float) -> bool:
    return value <= threshold if comparator == "<=" else value >= threshold


def _metrics_of(rows: Sequence[Row], statuses: tuple[Status, ...]) -> set[str]:
    """The policy metrics that experiments with these statuses would give evidence for."""
    return {m for row in rows if row.status in statuses for m in row.metrics}


def _no_evidence(rows: Sequence[Row], planned: bool, requirement: Requirement, policy: Policy
                 ) -> tuple[Status, bool, str]:
    """(status, ok, note) for a requirement that nothing measured (pure). A gate made of
    experiments knows which metrics it set out to measure: one that no applicable
    experiment gives is not applicable; one whose experiment was inconclusive is
    inconclusive; one it expected and did not get fails for lack of evidence."""
    if planned and requirement.metric in _metrics_of(rows, (Status.INCONCLUSIVE,)):
        return (Status.INCONCLUSIVE, policy.on_inconclusive != "fail",
                "its experiment was inconclusive")
    expected = _metrics_of(rows, (Status.PASSED, Status.FAILED))
    if planned and requirement.metric not in expected:
        return Status.NOT_APPLICABLE, True, "no applicable experiment measures this"
    ok = not policy.require_evidence
    return (Status.PASSED if ok else Status.FAILED), ok, \
        "no readiness test recorded this measurement"


def evaluate_requirement(
    rows: Sequence[Row], planned: bool, requirement: Requirement, policy: Policy
) -> list[RequirementResult]:
    """One result per tier that has evidence, each judged by that tier's threshold; one
    result without evidence when no test recorded the metric. Evidence taken while the host
    took the CPU can make a requirement inconclusive, never failed."""
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

    evidence = collect_evidence(rows, requirement.metric)
    if not evidence:
        status, ok, note = _no_evidence(rows, planned, requirement, policy)
        return [result(requirement.threshold, None, [], ok, note=note, status=status)]
    by_tier: dict[str | None, list[Evidence]] = {}
    for item in evidence:
        by_tier.setdefault(item.tier, []).append(item)
    results = []
    for tier, items in by_tier.items():
        threshold = policy.threshold(requirement, tier)
        status, worst = _judge_tier(items, requirement.comparator, threshold)
        ok = status is Status.PASSED or (status is Status.INCONCLUSIVE
                                         and policy.on_inconclusive != "fail")
        note = "measured while the host took the CPU" if status is Status.INCONCLUSIVE else ""
        results.append(result(threshold, worst, items, ok, tier=tier, status=status, note=note))
    return results


def _judge_tier(items: list[Evidence], comparator: str, threshold: float
                ) -> tuple[Status, float]:
    """(status, worst value): a failing conclusive value fails; a failing value taken on a
    disturbed host alone is inconclusive (pure)."""
    def worst_of(values: list[float]) -> float:
        return max(values) if comparator == "<=" else min(values)

    sure = [e.value for e in items if not e.inconclusive]
    unsure = [e.value for e in items if e.inconclusive]
    if sure and not _meets(worst_of(sure), comparator, threshold):
        return Status.FAILED, worst_of(sure)
    if unsure and not _meets(worst_of(unsure), comparator, threshold):
        return Status.INCONCLUSIVE, worst_of(unsure)
    return Status.PASSED, worst_of(sure + unsure)


def validate_ready_for_production(report: Mapping[str, Any], policy: Policy | None = None
                                  ) -> Verdict:
    """Ready only when every readiness test passed and every requirement is met with
    evidence. ``report``: a session report, or the gate's (``"experiments"`` in it: the
    metrics its experiments set out to measure are known); its tests become Rows here."""
    return judge(rows_of(report.get("tests", [])), "experiments" in report, policy)


def judge(rows: Sequence[Row], planned: bool, policy: Policy | None = None) -> Verdict:
    """The verdict over typed rows (pure): ``planned`` when they are the gate's experiments."""
    policy = policy or default_policy()
    results = tuple(result for r in policy.requirements
                    for result in evaluate_requirement(rows, planned, r, policy))
    failed = tuple(row.nodeid for row in rows if row.status is Status.FAILED)
    unsure = tuple(row.nodeid for row in rows if row.status is Status.INCONCLUSIVE)
    notes = []
    if not rows:
        notes.append("no readiness test ran: nothing proves the job is ready")
    if failed and policy.require_all_tests_pass:
        notes.append(f"{len(failed)} readiness test(s) failed")
    if unsure:
        notes.append(f"{len(unsure)} experiment(s) inconclusive: the host took the CPU while "
                     f"they measured (on_inconclusive = {policy.on_inconclusive!r})")
    ready = bool(rows) and all(r.ok for r in results)
    if policy.require_all_tests_pass:
        ready = ready and not failed
    if policy.on_inconclusive == "fail":
        ready = ready and not unsure
    return Verdict(ready, results, len(rows), failed, tuple(notes), unsure)
