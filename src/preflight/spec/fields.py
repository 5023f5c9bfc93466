"""Validators of single workload-spec values (pure): each error names where the value was
and what was wrong."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from preflight.spec import tiers

# Names every template may use; a spec's own sizes (its scale tables) add to these.
BUILTIN_PLACEHOLDERS = frozenset({"workdir", "seed", "spec_dir", "python", "prepared"})
SIZE_MAX = 10**12
TIMEOUT_S_MAX = 30 * 86_400.0  # a soak runs days, not months; inf is refused


class SpecError(ValueError):
    """A workload spec is missing or invalid; the message names the file and the key."""


def _expect_str_list(value: Any, where: str, *, allow_empty: bool) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SpecError(f"{where}: must be a list of strings (an argv), got {value!r}")
    if not value and not allow_empty:
        raise SpecError(f"{where}: must not be empty")
    return tuple(value)


def _expect_str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise SpecError(f"{where}: must be a non-empty string, got {value!r}")
    return value


def _parse_scale(value: Any, where: str) -> dict[str, dict[str, int]]:
    if not isinstance(value, dict):
        raise SpecError(f"{where}: must be a table of tier = {{ size = N }}")
    scale: dict[str, dict[str, int]] = {}
    for tier, table in value.items():
        if tier not in tiers.TIER_NAMES:
            raise SpecError(
                f"{where}: unknown tier {tier!r}; choose from {', '.join(tiers.TIER_NAMES)}"
            )
        if not isinstance(table, dict):
            raise SpecError(f"{where}.{tier}: must be a table of size = integer")
        scale[tier] = {
            name: _parse_size(size, f"{where}.{tier}.{name}") for name, size in table.items()
        }
    _check_size_names(scale, where)
    return scale


def _parse_size(size: Any, where: str) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= SIZE_MAX:
        raise SpecError(f"{where}: must be an integer in 0..{SIZE_MAX}, got {size!r}")
    if not where.rsplit(".", 1)[-1].isidentifier():
        raise SpecError(f"{where}: a size name must be an identifier usable as {{name}}")
    return size


def _check_size_names(scale: Mapping[str, Mapping[str, int]], where: str) -> None:
    names = {n for table in scale.values() for n in table}
    clash = names & BUILTIN_PLACEHOLDERS
    if clash:
        raise SpecError(f"{where}: size name(s) {sorted(clash)} clash with built-in placeholders")
    for tier, table in scale.items():
        partial_ok = tier == tiers.DERIVED_TIER and tiers.DERIVED_FROM_TIER in scale
        missing = names - set(table)
        if missing and not partial_ok:
            raise SpecError(f"{where}.{tier}: missing size(s) {sorted(missing)}")


def _parse_env(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise SpecError(f'{where}: must be a table of NAME = "string"')
    return dict(value)


def _parse_regex(value: Any, where: str) -> str:
    text = _expect_str(value, where)
    try:
        groups = re.compile(text).groups
    except re.error as exc:
        raise SpecError(f"{where}: invalid regular expression: {exc}") from None
    if groups not in (1, 2):
        raise SpecError(f"{where}: needs one group (done) or two (done, total), has {groups}")
    return text


def _parse_timeout(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise SpecError(f"{where}: must be a positive number of seconds, got {value!r}")
    if not value <= TIMEOUT_S_MAX:  # also inf: every wait takes a finite bound
        raise SpecError(
            f"{where}: must be at most {TIMEOUT_S_MAX:.0f} s (30 days), got {value!r}"
        )
    return float(value)


SIGTERM_MODES = ("graceful", "any")


def _parse_sigterm(value: Any, where: str) -> str:
    if value not in SIGTERM_MODES:
        raise SpecError(f"{where}: must be one of {', '.join(SIGTERM_MODES)}, got {value!r}")
    return str(value)
