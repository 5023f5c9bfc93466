"""`trainer promote BUNDLE --to DEPLOY_DIR` and `trainer rollback DEPLOY_DIR`.

```
DEPLOY_DIR/bundles/<id>/   verified copies of promoted bundles (never modified afterwards)
DEPLOY_DIR/current         symlink -> bundles/<id>, replaced atomically (what `serve` follows)
DEPLOY_DIR/history.json    {"stack": [ids, current last], "events": [...]}, written atomically
DEPLOY_DIR/.lock           held while a promote or rollback runs
```

history.json is the commit point: a command writes it first, then switches ``current``. A
command killed in between leaves ``current`` one step behind, and the next promote or
rollback finishes the switch first (roll forward), so the two never disagree for long and
never disagree silently. No torch here: the rollback clock includes this process's start.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from preflight.durable import (
    BadInputError,
    RunLock,
    VerifyError,
    atomic_write,
    fsync_dir,
    manifest,
    read_json,
)
from preflight.durable.jsonio import require_fields
from preflight_examples.serving.bundle import ID_HEX_CHARS, BundleRef, verify_bundle

DEPLOY_FORMAT = "preflight-deploy/1"
CURRENT = "current"
BUNDLES = "bundles"
HISTORY = "history.json"
STACK_MAX = 100  # rollbacks reach this far back; older promotions stay in bundles/
EVENTS_MAX = 1_000
TEMP_MARK = ".tmp-"
POLL_S_DEFAULT = 0.2  # how often `serve` checks ``current``: a switch is served within this


@dataclass(frozen=True)
class History:
    stack: tuple[str, ...]  # promoted bundle ids, the current one last
    events: tuple[dict[str, Any], ...]

    def to_json(self) -> dict[str, Any]:
        return {"format": DEPLOY_FORMAT, "stack": list(self.stack), "events": list(self.events)}

    @property
    def current(self) -> str | None:
        return self.stack[-1] if self.stack else None


def _valid_id(value: Any) -> bool:
    return (
        isinstance(value, str)
        and len(value) == ID_HEX_CHARS
        and all(c in "0123456789abcdef" for c in value)
    )


def parse_history(raw: Any, where: str) -> History:
    """Validate history.json (pure)."""
    require_fields(raw, where, {"format": str, "stack": list, "events": list})
    if raw["format"] != DEPLOY_FORMAT:
        raise BadInputError(f"{where}: format {raw['format']!r} is not {DEPLOY_FORMAT!r}")
    if not all(_valid_id(v) for v in raw["stack"]) or len(raw["stack"]) > STACK_MAX:
        raise BadInputError(f"{where}: field 'stack' must list at most {STACK_MAX} bundle ids")
    if not all(isinstance(e, dict) for e in raw["events"]):
        raise BadInputError(f"{where}: field 'events' must list objects")
    return History(tuple(raw["stack"]), tuple(raw["events"][-EVENTS_MAX:]))


def _event(action: str, bundle: str, **extra: Any) -> dict[str, Any]:
    at = datetime.now(UTC).isoformat(timespec="milliseconds")
    return {"action": action, "bundle": bundle, "at": at, **extra}


def pushed(history: History, bundle: str, source: str) -> History:
    """After promoting ``bundle`` (pure); the oldest entries fall off past STACK_MAX."""
    stack = (*history.stack, bundle)[-STACK_MAX:]
    events = (*history.events, _event("promote", bundle, source=source))[-EVENTS_MAX:]
    return History(stack, events)


def popped(history: History) -> History:
    """After a rollback (pure); BadInputError when there is nothing to return to."""
    if len(history.stack) < 2:
        what = "nothing was promoted" if not history.stack else "only one bundle was promoted"
        raise BadInputError(f"rollback: nothing to roll back to ({what})")
    stack = history.stack[:-1]
    event = _event("rollback", stack[-1], replaced=history.stack[-1])
    return History(stack, (*history.events, event)[-EVENTS_MAX:])


# -- I/O -------------------------------------------------------------------------------------
def read_history(deploy: Path) -> History:
    path = deploy / HISTORY
    if not path.exists():
        return History((), ())
    try:
        return parse_history(read_json(path), str(path))
    except BadInputError as exc:
        raise VerifyError(str(path), str(exc)) from None


def current_target(deploy: Path) -> str | None:
    """The bundle id ``current`` points at, or None when there is no such symlink."""
    link = deploy / CURRENT
    if not link.is_symlink():
        return None
    return Path(os.readlink(link)).name


def switch_current(deploy: Path, bundle: str) -> None:
    """Point ``current`` at bundles/<bundle>: a new symlink renamed over the old one, so a
    reader sees the old target or the new one, never a missing link."""
    temp = deploy / f".{CURRENT}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}"
    os.symlink(f"{BUNDLES}/{bundle}", temp)
    try:
        os.replace(temp, deploy / CURRENT)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(deploy)


def _copy_bundle(ref: BundleRef, dest: Path) -> None:
    """Copy exactly the manifest's files, verify the copy, rename it into place."""
    temp = dest.with_name(f".{dest.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")
    temp.mkdir()
    try:
        for entry in ref.committed.files:
            target = temp / entry.path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ref.root / entry.path, target)
        shutil.copyfile(ref.root / manifest.MANIFEST_NAME, temp / manifest.MANIFEST_NAME)
        copied = verify_bundle(temp)  # pair assertion: the copy is the bundle we verified
        if copied.info.id != ref.info.id:
            raise VerifyError(str(temp), "copy differs from the promoted bundle")
        os.rename(temp, dest)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    fsync_dir(dest.parent)


def stored_bundle(deploy: Path, ref: BundleRef) -> Path:
    """bundles/<id>, copied from ``ref`` unless a copy that verifies is already there."""
    dest = deploy / BUNDLES / ref.info.id
    if dest.exists():
        try:
            if verify_bundle(dest).info.id == ref.info.id:
                return dest
        except (VerifyError, BadInputError):
            pass
        # A damaged stored copy is replaced, never served: uncommit first, then delete.
        (dest / manifest.MANIFEST_NAME).unlink(missing_ok=True)
        shutil.rmtree(dest)
    _copy_bundle(ref, dest)
    return dest


def _reconcile(deploy: Path, history: History) -> str | None:
    """Finish a switch a killed command left undone; returns what was repaired."""
    wanted = history.current
    if wanted is None or current_target(deploy) == wanted:
        return None
    verify_bundle(deploy / BUNDLES / wanted)
    switch_current(deploy, wanted)
    return wanted


def _prepare_deploy_dir(deploy: Path) -> None:
    if deploy.exists() and not deploy.is_dir():
        raise BadInputError(f"--to: {deploy} exists and is not a directory")
    if not deploy.parent.is_dir():
        raise BadInputError(f"--to: parent directory {deploy.parent} does not exist")
    (deploy / BUNDLES).mkdir(parents=True, exist_ok=True)


def promote(bundle_dir: str | os.PathLike[str], deploy_dir: str | os.PathLike[str]) -> dict:
    """Verify BUNDLE, store it under DEPLOY_DIR, record it, switch ``current`` to it."""
    deploy = Path(deploy_dir)
    ref = verify_bundle(bundle_dir)
    _prepare_deploy_dir(deploy)
    with RunLock(deploy):
        history = read_history(deploy)
        repaired = _reconcile(deploy, history)
        stored_bundle(deploy, ref)
        previous = history.current
        if previous == ref.info.id:
            return {
                "action": "promote",
                "bundle": ref.info.id,
                "changed": False,
                "previous": previous,
                "repaired": repaired,
            }
        atomic_write(deploy / HISTORY, pushed(history, ref.info.id, str(ref.root)).to_json())
        switch_current(deploy, ref.info.id)
    return {
        "action": "promote",
        "bundle": ref.info.id,
        "changed": True,
        "previous": previous,
        "repaired": repaired,
    }


def rollback(deploy_dir: str | os.PathLike[str]) -> dict:
    """Return ``current`` to the bundle promoted before it (verified first)."""
    deploy = Path(deploy_dir)
    if not (deploy / HISTORY).is_file():
        raise BadInputError(f"rollback: {deploy} has no {HISTORY}; nothing was ever promoted")
    with RunLock(deploy):
        history = read_history(deploy)
        repaired = _reconcile(deploy, history)
        after = popped(history)
        assert after.current is not None
        verify_bundle(deploy / BUNDLES / after.current)  # never switch to a damaged bundle
        atomic_write(deploy / HISTORY, after.to_json())
        switch_current(deploy, after.current)
    return {
        "action": "rollback",
        "bundle": after.current,
        "replaced": history.current,
        "repaired": repaired,
    }


def is_deploy_dir(path: Path) -> bool:
    return (path / CURRENT).is_symlink()
