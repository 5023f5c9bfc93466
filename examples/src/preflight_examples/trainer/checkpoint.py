"""Checkpoints: committed directories ``checkpoints/step-NNNNNNNN/{state.pt, manifest.json}``.

A checkpoint is written with durable's manifest-last protocol: state.pt atomically, then
manifest.json (meta: kind, step, config hash). It counts only when the manifest verifies,
its recorded step matches the directory name (a swapped or misplaced directory is caught)
and the state inside records the same step and config hash. state.pt holds only tensors and
plain values, so ``torch.load(weights_only=True)`` reads it without arbitrary unpickling.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from preflight.durable import VerifyError, faults, fsync_dir, manifest, sha256_bytes
from preflight.durable.atomic import named
from preflight.durable.manifest import MANIFEST_NAME
from preflight.durable.paths import refuse_symlink

STATE_NAME = "state.pt"
STATE_FORMAT = "preflight-trainer-state/1"
KIND_CHECKPOINT = "trainer-checkpoint"
KIND_FINAL = "trainer-final"
DIR_RE = re.compile(r"^step-(\d{8,9})$")
PERSIST_JOIN_TIMEOUT_S = 600.0
REFUSAL_LISTED_MAX = 20
REFUSAL_TEXT_CHARS_MAX = 300

Warn = Callable[[str], None]


def dirname(step: int) -> str:
    return f"step-{step:08d}"


@dataclass(frozen=True)
class Snapshot:
    """A checkpoint in memory: the state serialized at a step boundary.

    Serializing on the training thread (~2 ms for the default model) is CheckFreq's
    snapshot phase: the bytes own their memory, so training may mutate the weights at once,
    and the persist thread is left with I/O and hashing, which release the GIL. Pickling
    there instead would hold the GIL against the training loop's every op.
    """

    step: int
    data: bytes


def serialize(state: Mapping[str, Any]) -> bytes:
    """torch.save into memory; tensors are copied out, so later in-place updates are safe."""
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    return buffer.getvalue()


def remove_dir(path: Path) -> None:
    """Uncommit first (manifest.json), then delete: a half-deleted directory never verifies.

    No fsync: a removal that power loss undoes or tears leaves an old checkpoint (a valid
    older fallback) or a broken one (warned about and removed at the next start), never a
    wrong resume; the fsyncs would only lengthen every persist.
    """
    # A symlink here would make the unlink below delete another directory's manifest.
    refuse_symlink(path, "a run's directories are never links")
    manifest_path = path / MANIFEST_NAME
    # A directory where manifest.json belongs commits nothing: the rmtree takes it.
    if not manifest_path.is_dir() or manifest_path.is_symlink():
        manifest_path.unlink(missing_ok=True)
    shutil.rmtree(path)


def write_committed(
    directory: Path,
    data: bytes,
    meta: dict[str, Any],
    config: dict[str, Any],
    point_prefix: str = "trainer.persist",
) -> None:
    """Write serialized state into ``directory`` (replacing whatever is there); commit it.

    Fault points ``{point_prefix}_before_commit`` / ``_after_commit`` bracket the commit.
    """
    # (checkpoints/ itself is checked when the run opens: RUN_DIR may be a link, on purpose)
    if directory.exists() or directory.is_symlink():
        remove_dir(directory)
    directory.mkdir(parents=True)
    fsync_dir(directory.parent)
    expected_sha256 = sha256_bytes(data)
    # No temp file and rename: the directory is not committed until its manifest is, so a
    # torn state.pt can never be used. The fsync orders the data before the manifest.
    state_path = directory / STATE_NAME
    try:
        with open(state_path, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        # A write's ENOSPC/EIO names no file; the message must say which disk filled up.
        raise named(exc, state_path) from None
    faults.point(f"{point_prefix}_before_commit")
    committed = manifest.commit(directory, files=[STATE_NAME], config=config, meta=meta)
    # Pair assertion: the manifest hashed the file as it is on disk; it must be what we wrote.
    entry = committed.entry(STATE_NAME)
    if entry is None or entry.sha256 != expected_sha256:
        raise VerifyError(str(directory / STATE_NAME), "read back differs from what was written")
    faults.point(f"{point_prefix}_after_commit")


def load_committed(
    directory: Path, kind: str, step: int | None, config_hash: str | None
) -> dict[str, Any]:
    """Verify and load a committed state; VerifyError names the file that is wrong.

    ``step`` / ``config_hash`` None: accept what the manifest records (used by commands that
    inspect a run without knowing its options); the state must still agree with the manifest.
    """
    manifest_path = str(directory / MANIFEST_NAME)
    refuse_symlink(directory, "a committed state is never a link")
    try:
        committed = manifest.verify(directory)
    except VerifyError as exc:
        # A mismatch may lie in either file; name both so the damaged one is always named.
        if exc.path == manifest_path:
            raise
        raise VerifyError(exc.path, f"{exc.reason} (per {manifest_path})") from None
    meta = committed.meta
    if committed.entry(STATE_NAME) is None:
        raise VerifyError(manifest_path, f"does not list {STATE_NAME}")
    if meta.get("kind") != kind:
        raise VerifyError(manifest_path, f"kind {meta.get('kind')!r} is not {kind!r}")
    if step is not None and meta.get("step") != step:
        raise VerifyError(
            manifest_path,
            f"records step {meta.get('step')!r} but the directory is {directory.name} "
            "(swapped or misplaced checkpoint)",
        )
    if config_hash is not None and meta.get("config_hash") != config_hash:
        raise VerifyError(manifest_path, "belongs to a different configuration (config hash)")
    state_path = directory / STATE_NAME
    refuse_symlink(state_path)
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise VerifyError(str(state_path), f"cannot be loaded: {_load_error(exc)}") from None
    _check_state(state, str(state_path), meta.get("step"), meta.get("config_hash"))
    return state


def _load_error(exc: Exception) -> str:
    """The reason, without torch's advice to retry with weights_only=False: a state.pt that
    needs arbitrary unpickling is refused, never loaded unsafely."""
    text = str(exc)
    for line in text.splitlines():
        if "WeightsUnpickler error:" in line:
            reason = line.split("WeightsUnpickler error:", 1)[1].split(". Please", 1)[0]
            return "refused by weights_only unpickling: " + reason.strip()[:REFUSAL_TEXT_CHARS_MAX]
    return text[:REFUSAL_TEXT_CHARS_MAX]


def _check_state(state: Any, where: str, step: Any, config_hash: Any) -> None:
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise VerifyError(where, f"not a {STATE_FORMAT} state")
    if state.get("step") != step or state.get("config_hash") != config_hash:
        raise VerifyError(
            where, f"records step {state.get('step')!r} / another config; the manifest says {step}"
        )


@dataclass(frozen=True)
class Found:
    path: Path
    step: int
    committed: bool  # manifest.json present (not yet verified)


def scan(root: Path, warn: Warn) -> list[Found]:
    """Checkpoint directories under ``root``, newest first; strays are reported, not touched."""
    refuse_symlink(root, "a run's directories are never links")
    if not root.is_dir():
        return []
    found = []
    for entry in sorted(root.iterdir()):
        match = DIR_RE.match(entry.name)
        if match is None or not entry.is_dir() or entry.is_symlink():
            warn(f"ignoring {entry}: not a checkpoint directory")
            continue
        found.append(Found(entry, int(match.group(1)), (entry / MANIFEST_NAME).exists()))
    return sorted(found, key=lambda f: f.step, reverse=True)


def select_resume(root: Path, config_hash: str, warn: Warn) -> tuple[Path, dict[str, Any]] | None:
    """The newest valid checkpoint (directory, state), or None when none was ever committed.

    Uncommitted directories (killed mid-persist) are removed. An invalid committed one is
    named in a warning and we fall back to the next older; invalid ones are removed only
    once a valid one is found, so a refusal (no valid checkpoint) leaves the evidence.
    """
    invalid: list[tuple[Found, VerifyError]] = []
    for found in scan(root, warn):
        if not found.committed:
            warn(f"removing {found.path}: never committed (no {MANIFEST_NAME})")
            remove_dir(found.path)
            continue
        try:
            state = load_committed(found.path, KIND_CHECKPOINT, found.step, config_hash)
        except VerifyError as exc:
            warn(f"checkpoint {found.path} is invalid: {exc}; falling back to an older one")
            invalid.append((found, exc))
            continue
        for bad, _ in invalid:
            remove_dir(bad.path)
        return found.path, state
    if invalid:
        listed = "".join(f"\n  {exc}" for _, exc in invalid[:REFUSAL_LISTED_MAX])
        raise VerifyError(
            str(root),
            "no valid checkpoint to resume from (they are left in place for inspection; "
            f"--new starts over):{listed}",
        )
    return None


def prune(root: Path, newest_step: int, keep: int) -> None:
    """Keep the ``keep`` newest committed checkpoints up to ``newest_step``; delete older."""
    committed = [f for f in scan(root, lambda _: None) if f.committed and f.step <= newest_step]
    for found in committed[keep:]:
        remove_dir(found.path)


class Persister:
    """Persists snapshots on one background thread, one at a time (CheckFreq's pipeline).

    ``submit`` first waits for the previous persist to be committed, so at most one
    checkpoint is ever in flight and a failure surfaces at the next boundary or at ``wait``.
    """

    def __init__(
        self,
        persist: Callable[[Snapshot], None],
        join_timeout_s: float = PERSIST_JOIN_TIMEOUT_S,
    ) -> None:
        self._persist = persist
        self._join_timeout_s = join_timeout_s
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.committed_step: int | None = None

    def _run(self, snapshot: Snapshot) -> None:
        try:
            self._persist(snapshot)
            self.committed_step = snapshot.step
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread in wait()
            self._error = exc

    def wait(self) -> None:
        """Join the in-flight persist (bounded); re-raise its error in the caller."""
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(self._join_timeout_s)
            if thread.is_alive():
                raise TimeoutError(
                    f"checkpoint persist did not finish within {self._join_timeout_s:.0f} s"
                )
        error, self._error = self._error, None
        if error is not None:
            raise error

    def submit(self, snapshot: Snapshot) -> None:
        self.wait()
        self._thread = threading.Thread(
            target=self._run, args=(snapshot,), name="trainer-persist", daemon=True
        )
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self._thread is not None
