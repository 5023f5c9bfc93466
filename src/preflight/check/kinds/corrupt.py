"""Checkpoint corruption: pure byte transforms, file application, seeded and hypothesis draws.

A corruption is a small frozen value (:class:`CorruptionSpec`), so the same space is drawn
two ways: from a seed by ``preflight check`` (replayable with ``--seed``), and by the
hypothesis strategy :func:`corruptions` in tests, where a failing case shrinks toward the
simplest kind, the first file and the fewest bits.
"""

from __future__ import annotations

import os
import random
import re
import signal
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from hypothesis import strategies as st

from preflight.check.drive.runner import DriveContext, Trigger, run_attempt
from preflight.check.drive.schedule import FaultExperiment, published_target, stream
from preflight.check.drive.sequence import (
    Injected,
    Workspace,
    conclude,
    finish,
    resume_until_done,
    skippable,
    skipped_history,
)
from preflight.check.drive.watch import expand
from preflight.check.history import Attempt, Control, Corruption, FaultHistory, Reference
from preflight.check.kind import FaultKind, InjectContext, PlanContext

PAGE_BYTES = 4096
JSON_DEPTH = 100_000  # far beyond any sane parser's recursion limit
HUGE_INT_DIGITS = 100_000  # beyond CPython's 4300-digit int parsing limit
BITS_MAX = 64
FILE_BYTES_MAX = 1 << 30  # the harness refuses to load bigger files into memory to damage them

# Simplest first: hypothesis shrinks toward the start of this tuple.
KINDS = (
    "delete",
    "truncate_zero",
    "truncate_half",
    "flip_bits",
    "zero_page",
    "json_malformed",
    "json_deep",
    "json_huge_number",
    "swap",
)
JSON_KINDS = ("json_malformed", "json_deep", "json_huge_number")
_DIGITS_RE = re.compile(r"\d+")
_NUMBER_VALUE_RE = re.compile(rb"(:\s*)(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)")


@dataclass(frozen=True)
class CorruptionSpec:
    kind: str
    target: int = 0  # index (mod count) into the sorted files this kind applies to
    salt: int = 0  # seeds positions and choices inside the transform
    bits: int = 1  # flip_bits only

    def __post_init__(self) -> None:
        assert self.kind in KINDS, f"unknown corruption kind {self.kind!r}"
        assert self.target >= 0 and self.salt >= 0, "target and salt are non-negative"
        assert 1 <= self.bits <= BITS_MAX, f"bits must be in [1, {BITS_MAX}]"

    def label(self) -> str:
        extra = f",bits={self.bits}" if self.kind == "flip_bits" else ""
        return f"{self.kind}(target={self.target},salt={self.salt}{extra})"


# ---- pure transforms -------------------------------------------------------------------


def truncate(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


def flip_bits(data: bytes, count: int, salt: int) -> bytes:
    """Flip ``count`` distinct bits (fewer when the data is shorter) chosen by ``salt``."""
    if not data:
        return data
    rng = random.Random(salt)
    positions = rng.sample(range(len(data) * 8), min(count, len(data) * 8))
    out = bytearray(data)
    for bit in positions:
        out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def zero_page(data: bytes, salt: int) -> bytes:
    """Zero one 4 KiB-aligned page (the last one may be partial), chosen by ``salt``."""
    if not data:
        return data
    pages = -(-len(data) // PAGE_BYTES)
    start = (salt % pages) * PAGE_BYTES
    end = min(start + PAGE_BYTES, len(data))
    return data[:start] + bytes(end - start) + data[end:]


def json_malformed(data: bytes, salt: int) -> bytes:
    # A NUL is invalid anywhere in JSON text (even inside strings), so this never parses.
    cut = salt % (len(data) + 1)
    out = data[:cut] + b"\x00{"
    # The original may already end that way (hypothesis found it); then end differently.
    return out if out != data else data[:cut] + b"\x00}"


def json_deep(data: bytes, salt: int) -> bytes:
    opener, closer = (b"[", b"]") if salt % 2 == 0 else (b'{"a":', b"}")
    return opener * JSON_DEPTH + b"0" + closer * JSON_DEPTH


def json_huge_number(data: bytes, salt: int) -> bytes:
    """Replace the first number value with a huge one, keeping the rest of the document."""
    huge = b"1" + b"0" * HUGE_INT_DIGITS if salt % 2 == 0 else b"1e999999"
    replaced, count = _NUMBER_VALUE_RE.subn(lambda m: m.group(1) + huge, data, count=1)
    return replaced if count else b'{"value": ' + huge + b"}"


def corrupt_bytes(spec: CorruptionSpec, data: bytes) -> bytes | None:
    """The damaged content for a single-file kind; None means delete the file."""
    transforms = {
        "delete": lambda: None,
        "truncate_zero": lambda: b"",
        "truncate_half": lambda: truncate(data, 0.5),
        "flip_bits": lambda: flip_bits(data, spec.bits, spec.salt),
        "zero_page": lambda: zero_page(data, spec.salt),
        "json_malformed": lambda: json_malformed(data, spec.salt),
        "json_deep": lambda: json_deep(data, spec.salt),
        "json_huge_number": lambda: json_huge_number(data, spec.salt),
    }
    assert spec.kind in transforms, f"{spec.kind} is not a single-file corruption"
    return transforms[spec.kind]()


# ---- choosing files --------------------------------------------------------------------


def looks_like_json(path: Path) -> bool:
    if path.suffix == ".json":
        return True
    try:
        with open(path, "rb") as handle:
            head = handle.read(64).lstrip()
    except OSError:
        return False
    return head[:1] in (b"{", b"[")


def candidates(spec: CorruptionSpec, files: list[Path]) -> list[Path]:
    """The files (sorted) this kind can damage."""
    regular = sorted({p for p in files if p.is_file() and not p.is_symlink()})
    if spec.kind in JSON_KINDS:
        return [p for p in regular if looks_like_json(p)]
    return regular


def file_kind(path: Path) -> str:
    """Files of one kind differ only in their numbers: shard-00001.json ~ shard-00002.json,
    shards/00001/videos.npy ~ shards/00002/videos.npy (pure)."""
    return _DIGITS_RE.sub("#", path.name)


def swap_pair(groups: list[list[Path]], target: int, salt: int) -> tuple[Path, Path] | None:
    """Two different files of the same kind matched by one checkpoints glob (two shards),
    or None when no glob matched two files of one kind."""
    pools: list[list[Path]] = []
    for group in groups:
        by_kind: dict[str, set[Path]] = {}
        for path in group:
            by_kind.setdefault(file_kind(path), set()).add(path)
        pools += [sorted(paths) for _, paths in sorted(by_kind.items()) if len(paths) >= 2]
    if not pools:
        return None
    pool = pools[target % len(pools)]
    first, second = random.Random(salt).sample(range(len(pool)), 2)
    return pool[first], pool[second]


# ---- applying (I/O) --------------------------------------------------------------------


def _read_bounded(path: Path) -> bytes:
    size = path.stat().st_size
    if size > FILE_BYTES_MAX:
        raise ValueError(f"{path}: {size} bytes is too big to corrupt in memory")
    return path.read_bytes()


def _rel(path: Path, workdir: Path) -> str:
    try:
        return str(path.relative_to(workdir))
    except ValueError:
        return str(path)


def inside(path: Path, workdir: Path) -> bool:
    """True when ``path`` really lies under ``workdir``: a glob match reached through a
    symlinked directory (or a symlinked file) pointing elsewhere is never damaged."""
    root = Path(os.path.realpath(workdir))
    real = Path(os.path.realpath(path))
    return not path.is_symlink() and root in real.parents


def _contained(groups: list[list[Path]], workdir: Path) -> list[list[Path]]:
    return [[p for p in group if inside(p, workdir)] for group in groups]


def apply(spec: CorruptionSpec, groups: list[list[Path]], workdir: Path) -> Corruption | None:
    """Damage one file (two for ``swap``, from one glob's matches); None when no file suits
    this kind. ``groups`` holds the files each checkpoints glob matched; only regular files
    inside ``workdir`` (symlinks resolved, never followed out) are touched."""
    groups = _contained(groups, workdir)
    if spec.kind == "swap":
        return _swap(spec, groups, workdir)
    pool = candidates(spec, [p for group in groups for p in group])
    if not pool:
        return None
    path = pool[spec.target % len(pool)]
    before = _read_bounded(path)
    after = corrupt_bytes(spec, before)
    if after is None:
        path.unlink()
    else:
        path.write_bytes(after)
    changed = after != before  # a deleted file (None) always changed
    same = "" if changed else " (content unchanged: no-op)"
    return Corruption(spec.kind, (_rel(path, workdir),), spec.label() + same, changed)


def _swap(spec: CorruptionSpec, groups: list[list[Path]], workdir: Path) -> Corruption | None:
    regular = [[p for p in g if p.is_file() and not p.is_symlink()] for g in groups]
    pair = swap_pair(regular, spec.target, spec.salt)
    if pair is None:
        return None
    first, second = pair
    data_first, data_second = _read_bounded(first), _read_bounded(second)
    first.write_bytes(data_second)
    second.write_bytes(data_first)
    changed = data_first != data_second  # a swap of identical contents leaves both as they were
    same = "" if changed else " (identical content: no-op)"
    paths = (_rel(first, workdir), _rel(second, workdir))
    return Corruption("swap", paths, spec.label() + same, changed)


# ---- drawing ---------------------------------------------------------------------------


def draw(rng: random.Random, kind: str) -> CorruptionSpec:
    """A seeded draw of one corruption of ``kind`` (the CLI's replayable schedule)."""
    bits = rng.randint(1, BITS_MAX) if kind == "flip_bits" else 1
    return CorruptionSpec(kind, rng.randrange(1 << 16), rng.randrange(1 << 32), bits)


def corruptions(kinds: tuple[str, ...] = KINDS) -> st.SearchStrategy[CorruptionSpec]:
    """Hypothesis strategy over the same space as :func:`draw`; shrinks to simple cases."""
    return st.builds(
        CorruptionSpec,
        kind=st.sampled_from(kinds),
        target=st.integers(0, (1 << 16) - 1),
        salt=st.integers(0, (1 << 32) - 1),
        bits=st.integers(1, BITS_MAX),
    )


# ---- experiments -----------------------------------------------------------------------

STOP_LOW, STOP_HIGH = 0.4, 0.8  # stop the partial run in this fraction of the work


def plan(reference: Reference, seed: int) -> list[FaultExperiment]:
    """One experiment per corruption kind, each with its own seeded draw and stop point."""
    exps = []
    for kind in KINDS:
        rng = stream(seed, f"corrupt-{kind}")
        spec = draw(rng, kind)
        if reference.total:
            stop: dict[str, object] = {
                "at_done": published_target(rng, reference, STOP_LOW, STOP_HIGH)
            }
        else:
            stop = {"at_s": round(rng.uniform(STOP_LOW, STOP_HIGH) * reference.duration_s, 3)}
        schedule = {"corruption": asdict(spec), "stop": stop}
        exps.append(FaultExperiment(f"corrupt-{kind}", "corrupt", schedule))
    return exps


def _stop_trigger(stop: dict[str, object]) -> Trigger:
    at_s, at_done = stop.get("at_s"), stop.get("at_done")
    return Trigger(
        signal.SIGKILL,
        at_s=float(at_s) if isinstance(at_s, int | float) else None,
        at_done=int(at_done) if isinstance(at_done, int) else None,
    )


@skippable
def execute(
    ctx: DriveContext, exp: FaultExperiment, seed: int, reference: Reference | None = None
) -> FaultHistory:
    """Partial run (SIGKILL at the stop point), damage one checkpoint file, resume. When the
    resume finishes with another fingerprint than the reference, a kill-only control from
    the same stop point tells an inexact resume from damage that went unnoticed."""
    space = Workspace.open(ctx, exp)
    spec = CorruptionSpec(**exp.schedule["corruption"])
    trigger = _stop_trigger(dict(exp.schedule["stop"]))
    outcome = run_attempt(ctx, space.workdir, 0, resume=False, trigger=trigger, log_dir=space.logs)
    groups = [expand([g]) for g in ctx.spec.checkpoint_globs(ctx.run_params(space.workdir))]
    damage = apply(spec, groups, space.workdir)
    if damage is None:
        count = sum(len(g) for g in groups)
        reason = f"no checkpoint file suits {spec.kind} ({count} matched the globs)"
        return skipped_history(exp, seed, reason, host_frozen=ctx.host_frozen())
    if not damage.changed:
        # Nothing was done to the job (docs/contract.md "Statuses"): resuming proves nothing.
        reason = (f"inconclusive: the corruption changed no byte ({damage.kind} "
                  f"{'+'.join(damage.paths)}: the same bytes before and after; {damage.detail})")
        skipped = skipped_history(exp, seed, reason, host_frozen=ctx.host_frozen())
        return replace(skipped, corruptions=(damage,), injected=False, injected_detail=reason)
    injected = Injected(True, f"{damage.kind} {'+'.join(damage.paths)}")
    history = conclude(
        ctx,
        exp,
        seed,
        space,
        [outcome.attempt],
        [outcome.note],
        injected=injected,
        stop_on_failure=True,
        corruptions=(damage,),
    )
    if reference is not None and _suspicious(history, reference):
        return replace(history, control=control_run(ctx, space, outcome.attempt))
    return history


def _suspicious(history: FaultHistory, reference: Reference) -> bool:
    """Finished with a fingerprint other than the reference's: silent corruption, or an
    inexact resume that would happen without the damage too."""
    last = history.attempts[-1] if history.attempts else None
    return (
        last is not None
        and last.rc == 0
        and history.fingerprint is not None
        and reference.fingerprint is not None
        and history.fingerprint != reference.fingerprint
    )


def control_run(ctx: DriveContext, space: Workspace, stopped: Attempt) -> Control:
    """The same stop (at the progress the damaged run was stopped at), no damage, resume."""
    workdir = space.base / "control"
    at_done = stopped.fault_at_done
    trigger = Trigger(signal.SIGKILL, at_done=at_done) if at_done else None
    if trigger is None:
        trigger = Trigger(signal.SIGKILL, at_s=max(0.001, stopped.duration_s))
    first = run_attempt(ctx, workdir, 0, resume=False, trigger=trigger, log_dir=space.logs)
    attempts = resume_until_done(ctx, workdir, [first.attempt], log_dir=space.logs)
    last = attempts[-1]
    done = finish(ctx, workdir) if last.rc == 0 else None
    return Control(
        rc=last.rc,
        fingerprint=done.fingerprint if done else None,
        verify_rc=done.verify_rc if done else None,
        stop_at_done=first.attempt.fault_at_done,
    )


class Corrupt(FaultKind):
    name = "corrupt"

    def plan(self, ctx: PlanContext) -> list[FaultExperiment]:
        return plan(ctx.reference, ctx.seed)

    def inject(self, ctx: InjectContext, experiment: FaultExperiment) -> FaultHistory:
        return execute(ctx.run, experiment, ctx.seed, ctx.reference)


KIND = Corrupt()
