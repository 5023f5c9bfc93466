"""The launch policy: ``[tool.preflight.gate]`` of pyproject.toml, validated strictly.

Each policy key becomes one requirement over the measurements that readiness tests record.
A measurement matches a requirement when its name ends with the requirement's metric
(``datagen.leak_bytes_per_unit`` matches ``leak_bytes_per_unit``), so new workloads join the
gate just by recording measurements under the conventional names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from preflight.durable.errors import BadInputError
from preflight.requirements import REQUIREMENTS, Requirement
from preflight.spec.pyproject import preflight_table

THRESHOLD_ABS_MAX = 1e300
_FLAGS = {"require_all_tests_pass": True, "require_evidence": True}
# The range a threshold may take, by unit: a bound outside it disables its requirement
# (min_exact_resume = -1 passes every resume; a ratio above 1 can never be reached).
_UNIT_RANGES: dict[str, tuple[float, float]] = {
    "bool": (0.0, 1.0),
    "ratio": (0.0, 1.0),
    "fraction": (0.0, 1.0),
}
_DEFAULT_RANGE = (0.0, THRESHOLD_ABS_MAX)
# Invariants, not tunables: any bound above zero lets that many silent corruptions, lost or
# duplicated items or parser crashes through a gate that says the job is safe.
_ZERO_ONLY = frozenset(
    {"max_silent_corruptions", "max_lost_items", "max_duplicate_items", "max_parser_crashes"}
)
# What an inconclusive timing measurement (taken while the host stole the CPU) means for the
# launch: "fail" (no evidence, no launch), "warn" (ready, said plainly), "rerun" (measure
# again, at most inconclusive_reruns times, then warn).
ON_INCONCLUSIVE = ("fail", "warn", "rerun")
RERUNS_MAX = 5
# Keys that are not thresholds: the project's own pytest suites the gate also runs (their
# recorded measurements are evidence too), and the inconclusive rule.
_OPTIONS = ("suites", "on_inconclusive", "inconclusive_reruns")
# A sub-table per tier overrides thresholds for that tier only, e.g. [tool.preflight.gate.small]:
# small-tier runs last seconds, so start-up noise dominates ratios such as checkpoint overhead.
_TIERS = ("small", "10pct", "production")


@dataclass(frozen=True)
class Policy:
    requirements: tuple[Requirement, ...]
    require_all_tests_pass: bool = True
    require_evidence: bool = True  # a requirement with no measurement fails, never passes
    # Thresholds by the tier a measurement was taken at: a 10pct gate also runs small-tier
    # tests, and their seconds-long runs are judged by the small tier's bounds, not 10pct's.
    tier_thresholds: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    suites: tuple[str, ...] = ()
    on_inconclusive: str = "rerun"
    inconclusive_reruns: int = 2

    def threshold(self, requirement: Requirement, tier: str | None) -> float:
        """The bound for evidence taken at ``tier`` (the policy's own when tier is unknown)."""
        return self.tier_thresholds.get(tier or "", {}).get(requirement.id, requirement.threshold)


def default_policy() -> Policy:
    return policy_from_table({}, "<defaults>")


def policy_from_table(table: dict[str, Any], where: str, scale: str | None = None) -> Policy:
    """Build a policy from the TOML table (pure); unknown keys are errors naming the key."""
    unknown = sorted(set(table) - set(REQUIREMENTS) - set(_FLAGS) - set(_TIERS) - set(_OPTIONS))
    if unknown:
        raise BadInputError(f"{where}: unknown key(s) in [tool.preflight.gate]: {unknown}")
    for tier in _TIERS:
        override = table.get(tier, {})
        if not isinstance(override, dict) or set(override) - set(REQUIREMENTS):
            raise BadInputError(
                f"{where}: [tool.preflight.gate.{tier}] may only override thresholds "
                f"({sorted(REQUIREMENTS)})"
            )
    tier_thresholds = {t: _thresholds({**table, **table.get(t, {})}, where) for t in _TIERS}
    thresholds = tier_thresholds.get(scale or "") or _thresholds(table, where)
    requirements = tuple(
        Requirement(key, description, metric, comparator, thresholds[key], unit)
        for key, (metric, comparator, _, unit, description) in REQUIREMENTS.items()
    )
    flags = {}
    for key, default in _FLAGS.items():
        value = table.get(key, default)
        if not isinstance(value, bool):
            raise BadInputError(f"{where}: [tool.preflight.gate] {key} must be true or false")
        flags[key] = value
    return Policy(requirements, **flags, tier_thresholds=tier_thresholds,
                  **_options(table, where))


def _options(table: dict[str, Any], where: str) -> dict[str, Any]:
    """The gate's non-threshold keys, checked (pure)."""
    suites = table.get("suites", [])
    if not isinstance(suites, list) or not all(isinstance(s, str) and s for s in suites):
        raise BadInputError(f"{where}: [tool.preflight.gate] suites must be a list of paths")
    mode = table.get("on_inconclusive", "rerun")
    if mode not in ON_INCONCLUSIVE:
        raise BadInputError(f"{where}: [tool.preflight.gate] on_inconclusive must be one of "
                            f"{', '.join(ON_INCONCLUSIVE)}, got {mode!r}")
    reruns = table.get("inconclusive_reruns", 2)
    if isinstance(reruns, bool) or not isinstance(reruns, int) or not 0 <= reruns <= RERUNS_MAX:
        raise BadInputError(f"{where}: [tool.preflight.gate] inconclusive_reruns must be an "
                            f"integer from 0 to {RERUNS_MAX}")
    return {"suites": tuple(suites), "on_inconclusive": mode, "inconclusive_reruns": reruns}


def _thresholds(table: dict[str, Any], where: str) -> dict[str, float]:
    """Every requirement's threshold from ``table`` or its default, checked (pure)."""
    thresholds = {}
    for key, (_, _, default, _, _) in REQUIREMENTS.items():
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            raise BadInputError(f"{where}: [tool.preflight.gate] {key} must be a number")
        if not -THRESHOLD_ABS_MAX <= value <= THRESHOLD_ABS_MAX:  # inf or a 400-digit int
            raise BadInputError(f"{where}: [tool.preflight.gate] {key} must be a finite number")
        _check_range(key, float(value), where)
        thresholds[key] = float(value)
    return thresholds


def _check_range(key: str, value: float, where: str) -> None:
    """BadInputError naming the file and key when ``value`` would disable the requirement."""
    if key in _ZERO_ONLY:
        if value != 0:
            raise BadInputError(
                f"{where}: [tool.preflight.gate] {key} must be 0 (an invariant), got {value:g}"
            )
        return
    unit = REQUIREMENTS[key][3]
    low, high = _UNIT_RANGES.get(unit, _DEFAULT_RANGE)
    if not low <= value <= high:
        raise BadInputError(
            f"{where}: [tool.preflight.gate] {key} must be in [{low:g}, {high:g}], got {value:g}"
        )


def load_policy(pyproject: str | Path = "pyproject.toml", scale: str | None = None) -> Policy:
    """Read ``[tool.preflight.gate]``; a missing file or table gives the defaults."""
    path = Path(pyproject)
    table = preflight_table(path).get("gate", {})
    if not isinstance(table, dict):
        raise BadInputError(f"{path}: [tool.preflight.gate] must be a table")
    return policy_from_table(table, str(path), scale)
