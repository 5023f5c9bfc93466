"""The fault kinds `preflight check` knows, by name, in battery order.

Our kinds are objects following ``preflight.check.kind.FaultKind``. A new kind registers
itself with :func:`register` (a FaultKind object), or, written as a module with
``plan(reference, seed)`` and ``execute(ctx, exp, seed)`` functions, through
:class:`ModuleKind`. Optional kinds whose module may not exist yet are listed in
``OPTIONAL_MODULES`` and registered when importable. Kinds beyond ``history.KINDS`` are not
in the default battery: ask for them with ``--faults``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType

from preflight.check.drive.runner import Context
from preflight.check.drive.schedule import Experiment
from preflight.check.drive.sequence import skipped_history
from preflight.check.history import KINDS, KNOWN_KINDS, History, Reference
from preflight.check.kind import FaultKind, InjectContext, PlanContext
from preflight.check.kinds import corrupt, crashpoints, disk, kill, memory, rank

# (kind name, module): registered when the module imports (another team's kinds).
OPTIONAL_MODULES = (("powerloss", "preflight.check.kinds.powerloss.kind"),)

_REGISTRY: dict[str, FaultKind] = {}


class ModuleKind:
    """A FaultKind made of a module's ``plan(reference, seed)`` and
    ``execute(ctx, exp, seed)`` functions (kill.py's original shape)."""

    def __init__(
        self,
        name: str,
        plan: Callable[[Reference, int], list[Experiment]],
        execute: Callable[[Context, Experiment, int], History],
    ) -> None:
        self.name = name
        self._plan = plan
        self._execute = execute

    @classmethod
    def from_module(cls, name: str, module: ModuleType) -> ModuleKind:
        return cls(name, module.plan, module.execute)

    def plan(self, ctx: PlanContext) -> list[Experiment]:
        return self._plan(ctx.reference, ctx.seed)

    def inject(self, ctx: InjectContext, experiment: Experiment) -> History:
        return self._execute(ctx.run, experiment, ctx.seed)


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


def _register_optional() -> None:
    for name, module_name in OPTIONAL_MODULES:
        if name in _REGISTRY:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise  # the module exists but is broken: never hide that
            continue
        found = getattr(module, "KIND", None)  # a FaultKind object, or just its name
        register(found if isinstance(found, FaultKind) else ModuleKind.from_module(name, module))


for _kind in (kill.KIND, crashpoints.KIND, corrupt.KIND, memory.KIND, disk.KIND, rank.KIND):
    register(_kind)
_register_optional()


def names() -> tuple[str, ...]:
    """Every registered kind: ours in battery order, then the others by name."""
    return (*KINDS, *sorted(set(_REGISTRY) - set(KINDS)))


def get(name: str) -> FaultKind:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown fault kind {name!r}; known: {', '.join(names())}") from None


def plan(kinds: tuple[str, ...], ctx: PlanContext) -> list[Experiment]:
    return [exp for name in kinds for exp in get(name).plan(ctx)]


def inject(ctx: InjectContext, experiment: Experiment) -> History:
    """Run one experiment with its kind; a planned skip never starts the job."""
    if "skip" in experiment.schedule:
        return skipped_history(experiment, ctx.seed)
    return get(experiment.kind).inject(ctx, experiment)
