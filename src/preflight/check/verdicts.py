"""What the checker's verdicts are made of (pure): the statuses, the verdict record and two
readings of a recorded history that several verdicts share."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from preflight.check.history import FAULT_NONE, Attempt, FaultHistory, Reference

PASS, FAIL, SKIP = "pass", "fail", "skip"
SIGTERM_GRACEFUL, SIGTERM_ANY = "graceful", "any"
SIGTERM_MODES = (SIGTERM_GRACEFUL, SIGTERM_ANY)


@dataclass(frozen=True)
class CheckVerdict:
    name: str
    status: str  # PASS | FAIL | SKIP
    detail: str
    critical: bool = False  # silent corruption: worse than any other failure

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def short_of_total(attempt: Attempt, reference: Reference | None) -> tuple[int, int] | None:
    """(done, total) when the attempt exited having published less than its total."""
    total = attempt.total or (reference.total if reference is not None else None)
    if not total or attempt.last_done is None or attempt.last_done >= total:
        return None
    return attempt.last_done, total


def lost_work_per_fault(history: FaultHistory) -> list[tuple[int, int | None]]:
    """(attempt index, lost progress or None when unobserved) for each fault that stopped
    the job; a resume that starts past the last observation lost nothing we can see."""
    losses: list[tuple[int, int | None]] = []
    attempts = history.attempts
    for attempt, resumed in zip(attempts, attempts[1:], strict=False):
        if attempt.fault == FAULT_NONE:
            continue
        if attempt.fault_at_done is None or resumed.start_done is None:
            losses.append((attempt.index, None))
        else:
            losses.append((attempt.index, max(0, attempt.fault_at_done - resumed.start_done)))
    return losses
