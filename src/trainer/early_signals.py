"""Stop signals that arrive before the training loop exists.

`trainer fit` spends a second or more importing torch and opening the dataset before its
loop can react to SIGTERM. A preemption in that window must still end with exit 75 and a
resumable run directory, not a death by signal, so the signal is recorded from the very
start and handed to the loop's handler (trainer.fit.StopSignals) when it takes over.
This module imports nothing heavy on purpose.
"""

from __future__ import annotations

import signal
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
pending: list[int] = []


def _record(signum: int, frame: FrameType | None) -> None:
    pending.append(signum)


def install() -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, _record)


def first_pending() -> int | None:
    return pending[0] if pending else None
