"""The fault kinds `preflight check` knows, by name, in battery order.

Every kind is an object following ``preflight.check.kind.FaultKind`` (each kind module's
``KIND``), registered here; a kind of another team registers itself with :func:`register`.
Kinds beyond ``history.KINDS`` (ours: power loss) are not in the default battery: ask for
them with ``--faults``.
"""

from __future__ import annotations

from preflight.check.drive.schedule import FaultExperiment
from preflight.check.drive.sequence import skipped_history
from preflight.check.history import KINDS, KNOWN_KINDS, FaultHistory
from preflight.check.kind import FaultKind, InjectContext, PlanContext
from preflight.check.kinds import corrupt, crashpoints, disk, kill, memory, rank
from preflight.check.kinds.powerloss import kind as powerloss

_REGISTRY: dict[str, FaultKind] = {}


def register(kind: FaultKind) -> FaultKind:
    """Add (or replace) a kind; its name becomes valid for Experiments and --faults."""
    assert isinstance(kind, FaultKind), f"{kind!r} does not follow the FaultKind contract"
    assert kind.name and "," not in kind.name, f"bad fault kind name {kind.name!r}"
    _REGISTRY[kind.name] = kind
    KNOWN_KINDS.add(kind.name)
    return kind


def unregister(name: str) -> None:
    """Remove a kind registered for a while (tests); ours stay."""
    assert name not in KINDS, f"{name} is one of the battery's own kinds"
    _REGISTRY.pop(name, None)
    KNOWN_KINDS.discard(name)


for _kind in (
    kill.KIND,
    crashpoints.KIND,
    corrupt.KIND,
    memory.KIND,
    disk.KIND,
    rank.KIND,
    powerloss.KIND,
):
    register(_kind)


def names() -> tuple[str, ...]:
    """Every registered kind: ours in battery order, then the others by name."""
    return (*KINDS, *sorted(set(_REGISTRY) - set(KINDS)))


def get(name: str) -> FaultKind:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown fault kind {name!r}; known: {', '.join(names())}") from None


def plan(kinds: tuple[str, ...], ctx: PlanContext) -> list[FaultExperiment]:
    return [exp for name in kinds for exp in get(name).plan(ctx)]


def inject(ctx: InjectContext, experiment: FaultExperiment) -> FaultHistory:
    """Run one experiment with its kind; a planned skip never starts the job."""
    if "skip" in experiment.schedule:
        return skipped_history(experiment, ctx.seed)
    return get(experiment.kind).inject(ctx, experiment)
