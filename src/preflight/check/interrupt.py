"""Stopping a check cleanly: SIGTERM/SIGHUP (a CI time bound, a scheduler) become an
exception in the main thread, so the partial report is written and scratch removed."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Interrupted(BaseException):
    """The check itself was told to stop (SIGTERM/SIGHUP, e.g. by its time bound). A
    BaseException, like KeyboardInterrupt: no experiment's error handler may swallow it."""


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into an exception in the main thread, so the partial report is
    written and the scratch dir removed on the way out (a no-op off the main thread)."""

    def stop(signum: int, _frame: object) -> None:
        raise Interrupted(f"stopped by {signal.Signals(signum).name}")

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
