"""``[workloads.X.readiness]``: what the gate's readiness experiments need to know about a
job beyond its command, progress and checkpoints. Every key is optional; an experiment
whose inputs are missing is reported as not applicable, never failed (docs/contract.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

DEFAULT_FAULTS = ("kill", "crashpoints", "corrupt", "memory", "disk")
KNOWN_FAULTS = ("kill", "crashpoints", "corrupt", "memory", "disk", "rank", "powerloss")
# The gate's readiness experiments (preflight.experiments), in the order they run.
EXPERIMENT_NAMES = ("completion", "exclusion", "drift", "accounting", "retry", "faults",
                    "stability", "overhead")
DEFAULT_STABILITY_SCALE = 10
STABILITY_SCALE_MAX = 1000
STABILITY_SAMPLE_S_DEFAULT = 0.025
READINESS_KEYS = frozenset({
    "total_param", "checkpoint_param", "checkpoint_off", "drift_param", "retry_flag",
    "item_fault", "items", "stability_scale", "stability_params", "stability_sample_s",
    "concurrent_exit", "faults", "experiments",
})


class ReadinessError(ValueError):
    """A readiness table is invalid; the message names the file, table and key."""


@dataclass(frozen=True)
class Readiness:
    total_param: str | None = None  # the size that is the job's total units of work
    checkpoint_param: str | None = None  # the size that sets the checkpoint interval
    # The value of checkpoint_param that means "one commit at the end": "total" (the total
    # size's value) or a literal such as 0.
    checkpoint_off: str | int = "total"
    drift_param: str | None = None  # changing it on an existing workdir must be refused
    retry_flag: str | None = None  # "reprocess only the failed items" option of the job
    item_fault: str | None = None  # PREFLIGHT_FAULTS spec that fails one item mid-run
    items: tuple[str, ...] | None = None  # argv printing {"total": N, "items": [...]}
    stability_scale: int = DEFAULT_STABILITY_SCALE
    stability_params: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    stability_sample_s: float = STABILITY_SAMPLE_S_DEFAULT
    concurrent_exit: int | None = None  # exit code of a run refused for a locked workdir
    faults: tuple[str, ...] = DEFAULT_FAULTS
    experiments: tuple[str, ...] | None = None  # only these experiments (default: all)


def _name(value: Any, where: str, sizes: frozenset[str]) -> str:
    if not isinstance(value, str) or value not in sizes:
        raise ReadinessError(f"{where}: must name one of the spec's sizes "
                             f"({', '.join(sorted(sizes)) or 'none'}), got {value!r}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 4096:
        raise ReadinessError(f"{where}: must be a non-empty string")
    return value


def _int(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ReadinessError(f"{where}: must be an integer from {low} to {high}, got {value!r}")
    return value


def _str_list(value: Any, where: str, allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or len(value) > 256:
        raise ReadinessError(f"{where}: must be a non-empty list of strings")
    for item in value:
        if not isinstance(item, str) or not item:
            raise ReadinessError(f"{where}: must be a non-empty list of strings")
        if allowed is not None and item not in allowed:
            raise ReadinessError(f"{where}: unknown {item!r}; choose from {', '.join(allowed)}")
    return tuple(value)


def _sizes_table(value: Any, where: str, sizes: frozenset[str]) -> Mapping[str, int]:
    if not isinstance(value, dict):
        raise ReadinessError(f"{where}: must be a table of sizes")
    return MappingProxyType({_name(k, where, sizes): _int(v, f"{where}.{k}", 0, 10**12)
                             for k, v in value.items()})


def parse_readiness(table: Any, where: str, sizes: frozenset[str],
                    experiment_names: tuple[str, ...] = ()) -> Readiness:
    """Validate one ``readiness`` table (pure)."""
    if not isinstance(table, dict):
        raise ReadinessError(f"{where}: must be a table")
    unknown = sorted(set(table) - READINESS_KEYS)
    if unknown:
        raise ReadinessError(f"{where}: unknown key(s) {unknown}; known: {sorted(READINESS_KEYS)}")
    out: dict[str, Any] = {}
    for key in ("total_param", "checkpoint_param"):
        if key in table:
            out[key] = _name(table[key], f"{where} key {key!r}", sizes)
    if "drift_param" in table:  # the seed is a parameter too
        out["drift_param"] = _name(table["drift_param"], f"{where} key 'drift_param'",
                                   sizes | {"seed"})
    for key in ("retry_flag", "item_fault"):
        if key in table:
            out[key] = _text(table[key], f"{where} key {key!r}")
    if "checkpoint_off" in table:
        value = table["checkpoint_off"]
        out["checkpoint_off"] = value if value == "total" else _int(
            value, f"{where} key 'checkpoint_off' (or \"total\")", 0, 10**12)
    if "items" in table:
        out["items"] = _str_list(table["items"], f"{where} key 'items'")
    if "stability_scale" in table:
        out["stability_scale"] = _int(table["stability_scale"], f"{where} key 'stability_scale'",
                                      1, STABILITY_SCALE_MAX)
    if "stability_params" in table:
        out["stability_params"] = _sizes_table(table["stability_params"],
                                               f"{where} key 'stability_params'", sizes)
    if "stability_sample_s" in table:
        value = table["stability_sample_s"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
                0.005 <= value <= 10):
            raise ReadinessError(f"{where} key 'stability_sample_s': must be 0.005 to 10 s")
        out["stability_sample_s"] = float(value)
    if "concurrent_exit" in table:
        out["concurrent_exit"] = _int(table["concurrent_exit"], f"{where} key 'concurrent_exit'",
                                      1, 255)
    if "faults" in table:
        out["faults"] = _str_list(table["faults"], f"{where} key 'faults'", KNOWN_FAULTS)
    if "experiments" in table:
        out["experiments"] = _str_list(table["experiments"], f"{where} key 'experiments'",
                                       experiment_names or None)
    return Readiness(**out)
