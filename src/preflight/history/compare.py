"""Comparing two recorded results: run choice, baseline choice, deltas and --fail-on.

Pure functions over a snapshot of the history (rows newest first, the stored baselines,
each result's measurements), so every rule here is unit-tested on hand-made histories. The
direction of a measurement (is lower or higher better) comes from the gate's requirements
(preflight.requirements): a measurement that a requirement judges with ``<=`` regresses
upwards, one judged with ``>=`` regresses downwards. Measurements no requirement covers
fall back to the history's naming heuristic (``*_per_s``, ``*ratio`` ... are better higher).
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from preflight.durable.errors import BadInputError
from preflight.history import store as history
from preflight.history.store import FACTOR_DEFAULT, ResultRow
from preflight.requirements import Requirement, higher_is_better

LATEST = "latest"
BASELINE = "baseline"
RUN_SPEC_CHARS_MAX = 200
FAIL_ON_CHARS_MAX = 200
FAIL_ON_MAX = 100
_RUN_ID = re.compile(r"[A-Za-z0-9_.:+-]+")
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
# A plain decimal: "inf", "nan" and hex are refused, as a threshold must be a finite bound.
_AMOUNT = re.compile(r"([+-]?)((?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)(%?)")


@dataclass(frozen=True)
class HistorySnapshot:
    """What a comparison reads from the history: ``rows`` newest first, and per kind the
    result id of its stored baseline."""

    rows: tuple[ResultRow, ...]
    baselines: Mapping[str, int]



@dataclass(frozen=True)
class Chosen:
    row: ResultRow
    why: str  # how the run was chosen, for the header line ("stored baseline", ...)


def direction_higher_is_better(name: str,
                               requirements: Sequence[Requirement] | None = None) -> bool:
    """True when a larger value of measurement ``name`` is better: by the gate requirement
    that judges it (preflight.requirements), else by the history's naming rule."""
    judged = higher_is_better(name, requirements)
    return history.higher_is_better(name) if judged is None else judged


# --- choosing runs -------------------------------------------------------------------------


def check_run_spec(spec: str) -> str:
    """``spec`` when it can name a run (latest, baseline or a run id); BadInputError if not."""
    if not 0 < len(spec) <= RUN_SPEC_CHARS_MAX or not _RUN_ID.fullmatch(spec):
        raise BadInputError(
            f"run {spec[:RUN_SPEC_CHARS_MAX]!r} is not a run id, {LATEST!r} or {BASELINE!r}"
        )
    return spec


def _of_kind(snapshot: HistorySnapshot, kind: str | None) -> list[ResultRow]:
    return [r for r in snapshot.rows if kind is None or r.kind == kind]


def _by_run_id(snapshot: HistorySnapshot, run_id: str, kind: str | None) -> ResultRow:
    """The newest result recorded under ``run_id`` (a gate re-recorded under one id counts
    as its newest recording)."""
    found = [r for r in snapshot.rows if r.run_id == run_id]
    if not found:
        raise BadInputError(
            f"run {run_id!r} is not in the history (newest {len(snapshot.rows)} results read; "
            "`preflight report --list` shows run ids)"
        )
    if kind is not None and found[0].kind != kind:
        raise BadInputError(f"run {run_id!r} is a {found[0].kind} result, not {kind}")
    return found[0]


def latest(snapshot: HistorySnapshot, kind: str | None) -> ResultRow:
    rows = _of_kind(snapshot, kind)
    if not rows:
        raise BadInputError(f"the history holds no {kind or 'gate or soak'} result yet")
    return rows[0]


def choose_baseline(snapshot: HistorySnapshot, kind: str, explicit: str | None = None) -> Chosen:
    """The baseline for results of ``kind``: ``explicit`` (--baseline RUN) first, then the
    stored one (--set-baseline), else the result before the latest, as asv compares to the
    previous commit when told nothing."""
    if explicit is not None:
        if check_run_spec(explicit) in (LATEST, BASELINE):
            raise BadInputError(f"--baseline must name a run id, not {explicit!r}")
        return Chosen(_by_run_id(snapshot, explicit, kind), "--baseline")
    stored = snapshot.baselines.get(kind)
    if stored is not None:
        row = next((r for r in snapshot.rows if r.id == stored), None)
        if row is None:
            raise BadInputError(
                f"the stored {kind} baseline (result {stored}) is older than the newest "
                f"{len(snapshot.rows)} results; set a newer one with --set-baseline RUN"
            )
        return Chosen(row, "stored baseline")
    rows = _of_kind(snapshot, kind)
    if len(rows) < 2:
        raise BadInputError(
            f"no {kind} baseline: none is set and there is no earlier {kind} result "
            "(`preflight report --set-baseline RUN`)"
        )
    return Chosen(rows[1], "previous result (no baseline set)")


def resolve(
    spec: str, snapshot: HistorySnapshot, kind: str | None, explicit_baseline: str | None = None
) -> Chosen:
    """The result ``spec`` names. ``baseline`` is the baseline of ``kind`` (or of the
    latest result's kind when no kind is given)."""
    if check_run_spec(spec) == LATEST:
        return Chosen(latest(snapshot, kind), LATEST)
    if spec == BASELINE:
        return choose_baseline(snapshot, kind or latest(snapshot, None).kind, explicit_baseline)
    return Chosen(_by_run_id(snapshot, spec, kind), "run id")


def resolve_pair(
    spec_a: str, spec_b: str, snapshot: HistorySnapshot, kind: str | None,
    explicit_baseline: str | None = None,
) -> tuple[Chosen, Chosen]:
    """Resolve A and B so that ``baseline`` means the baseline of the other side's kind:
    ``--compare baseline RUN`` with RUN a soak uses the soak baseline."""
    named = [s for s in (spec_a, spec_b) if check_run_spec(s) != BASELINE]
    if kind is None and named:
        kind = resolve(named[0], snapshot, None).row.kind
    return (
        resolve(spec_a, snapshot, kind, explicit_baseline),
        resolve(spec_b, snapshot, kind, explicit_baseline),
    )


# --- comparing measurements ----------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One measurement in A and B (the median of its values in each result)."""

    name: str
    a: float | None
    b: float | None
    higher_is_better: bool

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a

    @property
    def percent(self) -> float | None:
        """The change relative to A; infinite when A is 0 and B is not."""
        if self.delta is None or self.a is None:
            return None
        if self.a == 0:
            return 0.0 if self.delta == 0 else math.copysign(math.inf, self.delta)
        return 100.0 * self.delta / abs(self.a)

    @property
    def worse_by(self) -> float | None:
        """How far B moved in the bad direction (negative when it got better)."""
        if self.delta is None:
            return None
        return -self.delta if self.higher_is_better else self.delta

    def status(self, factor: float = FACTOR_DEFAULT) -> str:
        """regression / improved beyond ``factor`` (relative, asv's default 10%), else
        same; new (only in B) or missing (only in A)."""
        if self.a is None:
            return "new"
        if self.b is None:
            return "missing"
        worse, base = self.worse_by or 0.0, abs(self.a)
        if worse > factor * base or (base == 0 and worse > 0):
            return "regression"
        if -worse > factor * base or (base == 0 and worse < 0):
            return "improved"
        return "same"


def _median(values: Sequence[float] | None) -> float | None:
    return statistics.median(values) if values else None


def compare_values(
    a: Mapping[str, Sequence[float]], b: Mapping[str, Sequence[float]],
    requirements: Sequence[Requirement] | None = None,
) -> list[Change]:
    """One Change per measurement recorded in A or B, sorted by name."""
    return [
        Change(name, _median(a.get(name)), _median(b.get(name)),
               direction_higher_is_better(name, requirements))
        for name in sorted(set(a) | set(b))
    ]


# --- --fail-on -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Threshold:
    """``NAME:+10%`` or ``NAME:+0.05``: fail when a measurement named NAME (or ending in
    ``.NAME``) got worse from A to B by more than the amount, relative to A or absolute."""

    text: str
    name: str
    amount: float
    relative: bool

    def matches(self, measurement: str) -> bool:
        return measurement == self.name or measurement.endswith("." + self.name)

    def exceeded_by(self, change: Change) -> bool:
        """True when ``change`` breaks this threshold. A measurement that A has and B lost
        breaks every threshold on it: the evidence is gone."""
        if change.a is None:
            return False  # new in B: nothing to regress from
        if change.b is None:
            return True
        worse = change.worse_by or 0.0
        if not self.relative:
            return worse > self.amount
        if change.a == 0:
            return worse > 0  # from zero any worsening is an unbounded percentage
        return 100.0 * worse / abs(change.a) > self.amount


def parse_fail_on(text: str, requirements: Sequence[Requirement] | None = None) -> Threshold:
    """Parse one ``--fail-on`` expression; BadInputError naming it when malformed.

    The sign is optional and, when given, must point the bad way for that measurement
    (``+`` where lower is better, ``-`` where higher is better), so that
    ``throughput_ratio:+10%`` is refused instead of silently meaning a drop."""
    shown = repr(text[:FAIL_ON_CHARS_MAX])
    if len(text) > FAIL_ON_CHARS_MAX:
        raise BadInputError(f"--fail-on {shown}...: longer than {FAIL_ON_CHARS_MAX} characters")
    name, colon, amount_text = text.rpartition(":")
    if not colon or not _NAME.fullmatch(name):
        raise BadInputError(
            f"--fail-on {shown}: expected MEASUREMENT:+AMOUNT or MEASUREMENT:+PERCENT%, "
            "e.g. leak_bytes_per_unit:+10% or checkpoint_overhead:+0.05"
        )
    match = _AMOUNT.fullmatch(amount_text.strip())
    if match is None:
        raise BadInputError(
            f"--fail-on {shown}: {amount_text!r} is not an amount like +10% or +0.05"
        )
    sign, number, percent = match.groups()
    amount = float(number)
    if not math.isfinite(amount):
        raise BadInputError(f"--fail-on {shown}: the amount must be finite")
    higher_better = direction_higher_is_better(name, requirements)
    bad_sign = "-" if higher_better else "+"
    if sign and sign != bad_sign:
        better = "higher" if higher_better else "lower"
        raise BadInputError(
            f"--fail-on {shown}: {name} is better {better}, so a regression is a "
            f"{'drop' if higher_better else 'rise'}: write {name}:{bad_sign}{number}{percent}"
        )
    return Threshold(text, name, amount, bool(percent))


def parse_fail_ons(texts: Sequence[str],
                   requirements: Sequence[Requirement] | None = None) -> list[Threshold]:
    if len(texts) > FAIL_ON_MAX:
        raise BadInputError(f"--fail-on given {len(texts)} times; at most {FAIL_ON_MAX}")
    return [parse_fail_on(t, requirements) for t in texts]


@dataclass(frozen=True)
class Breach:
    threshold: Threshold
    change: Change


def check_thresholds(thresholds: Sequence[Threshold], changes: Sequence[Change]) -> list[Breach]:
    """Every (threshold, measurement) pair that breaks; BadInputError for a threshold that
    names no measurement of A or B, since a check on nothing would pass silently."""
    breaches = []
    for threshold in thresholds:
        matched = [c for c in changes if threshold.matches(c.name)]
        if not matched:
            known = ", ".join(sorted({c.name for c in changes})[:20]) or "none"
            raise BadInputError(
                f"--fail-on {threshold.text!r}: no measurement named {threshold.name} in "
                f"either run (measurements: {known})"
            )
        breaches += [Breach(threshold, c) for c in matched if threshold.exceeded_by(c)]
    return breaches
