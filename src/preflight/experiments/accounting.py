"""Work accounting: after a kill and a resume no item is lost or committed twice, and the
job's "retry failed items" option reprocesses only the failed ones. The job says which items
it committed through the spec's ``readiness.items`` command, which prints one JSON object
``{"total": N, "items": [i, ...]}`` (each committed item's index, repeated if committed
twice)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from preflight.experiments.base import (
    FAIL,
    PASS,
    Context,
    Finding,
    Measurement,
    aux,
    checkpoint_files,
    tail,
)
from preflight.run.job import run_aux
from preflight.spec.parse import WorkloadSpec

PROGRESS_WAIT_S = 300.0
ITEMS_MAX = 10_000_000


class AccountingError(ValueError):
    """The items command printed something that is not the documented JSON."""


def parse_items(text: str) -> tuple[int, list[int]]:
    """(total, committed item indices) from the items command's output (pure)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AccountingError(f"items command: not JSON ({exc})") from None
    total, items = (doc.get("total"), doc.get("items")) if isinstance(doc, dict) else (None, None)
    if isinstance(total, bool) or not isinstance(total, int) or not 0 <= total <= ITEMS_MAX:
        raise AccountingError("items command: 'total' must be an integer count")
    if not isinstance(items, list) or len(items) > 2 * ITEMS_MAX or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in items):
        raise AccountingError("items command: 'items' must be a list of item indices")
    return total, items


def lost_and_duplicated(total: int, items: list[int]) -> tuple[int, int]:
    """Items of 0..total-1 never committed, and extra commits of the same item (pure)."""
    counts = [0] * total
    outside = 0
    for index in items:
        if 0 <= index < total:
            counts[index] += 1
        else:
            outside += 1
    return sum(1 for c in counts if c == 0), sum(c - 1 for c in counts if c > 1) + outside


@dataclass(frozen=True)
class AccountingObservation:
    reached_half: bool
    resumed_rc: int | None
    total: int
    items: tuple[int, ...]
    verify_rc: int | None
    stderr_tail: str
    error: str = ""


def judge_accounting(obs: AccountingObservation) -> Finding:
    problems = []
    if not obs.reached_half:
        problems.append("the run never reached half its work, so no kill was made")
    if obs.resumed_rc != 0:
        problems.append(f"the resumed run exited {obs.resumed_rc}: {obs.stderr_tail}")
    if obs.error:
        problems.append(obs.error)
    lost, duplicated = lost_and_duplicated(obs.total, list(obs.items))
    if lost or duplicated:
        problems.append(f"{lost} item(s) lost and {duplicated} committed twice after a kill "
                        "and a resume")
    if obs.verify_rc not in (None, 0):
        problems.append(f"verify exited {obs.verify_rc}")
    found = ()
    if obs.resumed_rc == 0 and not obs.error:
        found = (Measurement("lost_items", lost, "items"),
                 Measurement("duplicate_items", duplicated, "items"))
    return Finding("accounting", FAIL if problems else PASS, found, "; ".join(problems))


class Accounting:
    name, timing, metrics = "accounting", False, ("lost_items", "duplicate_items")

    def applicable(self, spec: WorkloadSpec) -> str | None:
        if spec.readiness.items is None:
            return "readiness.items not given (a command that lists the committed items)"
        if spec.progress is None and spec.progress_regex is None:
            return "the spec publishes no progress, so the kill cannot land mid-run"
        return None

    def execute(self, ctx: Context) -> Finding:
        handle = ctx.handle(self.name)
        params = handle.params()
        first = handle.start(params)
        target = 1
        if first.wait_for_progress(1, PROGRESS_WAIT_S):
            known = first.progress()
            target = max(1, (known[1] if known and known[1] else 2) // 2)
        reached = first.wait_for_progress(target, PROGRESS_WAIT_S)
        first.kill()
        first.wait(PROGRESS_WAIT_S)
        resumed = handle.run(params, workdir=first.workdir, resume=bool(ctx.spec.resume))
        total, items, error = 0, [], ""
        if resumed.returncode == 0:
            try:
                total, items = parse_items(aux(resumed, "items", ctx.spec.readiness.items)[1])
            except AccountingError as exc:
                error = f"{ctx.spec.where}: {exc}"
        verify_rc = aux(resumed, "verify")[0] if resumed.returncode == 0 else None
        return judge_accounting(AccountingObservation(
            reached, resumed.returncode, total, tuple(items), verify_rc, tail(resumed), error))


@dataclass(frozen=True)
class RetryObservation:
    failed_rc: int | None
    committed: int
    regenerated: int
    retried_rc: int | None
    verify_rc: int | None
    stderr_tail: str


def judge_retry(obs: RetryObservation) -> Finding:
    problems = []
    if obs.failed_rc == 0:
        problems.append("the planted item failure did not fail the run")
    if not obs.committed:
        problems.append("no checkpoint was committed before the failure")
    if obs.retried_rc != 0:
        problems.append(f"the retry exited {obs.retried_rc}: {obs.stderr_tail}")
    if obs.regenerated:
        problems.append(f"the retry rewrote {obs.regenerated} committed checkpoint file(s)")
    if obs.verify_rc not in (None, 0):
        problems.append(f"verify exited {obs.verify_rc}")
    found = (Measurement("retry_regenerated_committed", obs.regenerated, "files"),)
    return Finding("retry", FAIL if problems else PASS, found, "; ".join(problems))


class Retry:
    name, timing, metrics = "retry", False, ()

    def applicable(self, spec: WorkloadSpec) -> str | None:
        if spec.readiness.retry_flag is None or spec.readiness.item_fault is None:
            return "readiness.retry_flag and readiness.item_fault not both given"
        if not spec.checkpoints:
            return "the spec names no checkpoints"
        return None

    def execute(self, ctx: Context) -> Finding:
        handle = ctx.handle(self.name)
        failed = handle.run(faults=ctx.spec.readiness.item_fault)
        committed = {p: Path(p).stat().st_mtime_ns
                     for p in checkpoint_files(ctx.spec, failed.params)}
        argv = [*ctx.spec.command, str(ctx.spec.readiness.retry_flag)]
        retried = run_aux(ctx.spec, argv, failed.params, handle.timeout_s, key="command")
        regenerated = sum(1 for p, t in committed.items()
                          if not Path(p).exists() or Path(p).stat().st_mtime_ns != t)
        verify_rc = aux(failed, "verify")[0] if retried.returncode == 0 else None
        return judge_retry(RetryObservation(failed.returncode, len(committed), regenerated,
                                            retried.returncode, verify_rc,
                                            retried.stderr[-600:]))
