"""``preflight check``'s options (:class:`CheckOptions`) and their checks: every bad value is
a ValueError naming the option (the CLI's exit 2), found before anything runs.

``--work-root`` is the folder every experiment's scratch goes under: a path the job could
never write into (``/proc``, a file, a read-only mount) must be refused here, not surface as
a traceback from the first ``mkdtemp`` minutes into a battery.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from argparse import Namespace
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from preflight.check.checker import RESTARTS_MAX
from preflight.check.drive.schedule import SEED_MAX
from preflight.check.history import KINDS

RESTARTS_LIMIT = 100
DEFAULT_SCALE = "small"


@dataclass(frozen=True)
class CheckOptions:
    workload: str
    spec_file: str | None = None
    scale: str = DEFAULT_SCALE
    faults: tuple[str, ...] = KINDS
    seed: int = 0
    report_dir: str | None = None
    only: tuple[str, ...] = ()
    ckpt_interval: int | None = None
    restarts_max: int = RESTARTS_MAX
    attempt_timeout_s: float | None = None
    work_root: str | None = None
    keep: bool = False
    quiet: bool = False
    # What SIGTERM must do: "graceful" | "any"; None takes the spec's `sigterm` key.
    sigterm: str | None = None

    def meta(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "spec": self.spec_file,
            "scale": self.scale,
            "faults": ",".join(self.faults),
            "seed": self.seed,
            "only": ",".join(self.only) or None,
            "ckpt_interval": self.ckpt_interval,
            "restarts_max": self.restarts_max,
            "sigterm": self.sigterm,
        }


def validate(args: Namespace) -> None:
    """Range checks of the parsed options; creates --work-root (see check_work_root)."""
    if not 0 <= args.seed <= SEED_MAX:
        raise ValueError(f"--seed must be in [0, {SEED_MAX}]")
    if args.ckpt_interval is not None and args.ckpt_interval < 1:
        raise ValueError("--ckpt-interval must be a positive number of progress units")
    if not 0 <= args.restarts <= RESTARTS_LIMIT:
        raise ValueError(f"--restarts must be in [0, {RESTARTS_LIMIT}]")
    if args.attempt_timeout_s is not None and not args.attempt_timeout_s > 0:
        raise ValueError("--attempt-timeout-s must be positive")
    if args.work_root is not None:
        check_work_root(args.work_root)


def check_work_root(path: str) -> Path:
    """Create ``path`` (and its parents) if needed and prove a file can be made there;
    ValueError naming the path and the reason otherwise."""
    if not path:
        raise ValueError("--work-root: must not be empty")
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise ValueError(f"--work-root {path}: not a directory")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--work-root {path}: cannot create it: {_reason(exc)}") from None
    if not root.is_dir():
        raise ValueError(f"--work-root {path}: not a directory")
    try:
        # The real test: permission bits lie to root, and a read-only mount or a
        # pseudo-filesystem (/proc) only says no when asked to create something.
        fd, probe = tempfile.mkstemp(prefix=".preflight-probe-", dir=root)
    except OSError as exc:
        raise ValueError(f"--work-root {path}: cannot create files in it: {_reason(exc)}") from None
    os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(probe)
    return root


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)
