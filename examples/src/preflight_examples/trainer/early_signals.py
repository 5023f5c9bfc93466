"""Stop signals that arrive before the training loop exists.

`trainer fit` spends a second or more importing torch and opening the dataset before its
loop can react to SIGTERM. A preemption in that window must still end with exit 75 and a
resumable run directory, not a death by signal, so the signal is recorded from the very
start and handed to the loop's handler (trainer.fit.StopSignals) when it takes over.
This module imports nothing heavy on purpose.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Mapping
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
PR_SET_PDEATHSIG = 1
EXIT_ORPHANED = 1
pending: list[int] = []


def _record(signum: int, frame: FrameType | None) -> None:
    pending.append(signum)


def install() -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, _record)


def first_pending() -> int | None:
    return pending[0] if pending else None


def under_launcher(env: Mapping[str, str] | None = None) -> bool:
    """True in a rank started by torchrun (pure over ``env``)."""
    env = os.environ if env is None else env
    return env.get("WORLD_SIZE", "") not in ("", "1") or "TORCHELASTIC_RUN_ID" in env


def die_with_launcher() -> None:
    """Have the kernel SIGKILL this rank when its launcher (torchrun) dies, even by SIGKILL.
    Called first thing, before torch is imported: a rank orphaned during its seconds-long
    start-up would otherwise live on, holding memory, until a collective timed out."""
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the collectives' timeout remains
        return
    if os.getppid() != parent or parent == 1:  # the launcher died before prctl took effect
        os._exit(EXIT_ORPHANED)
