"""harness.exclusive: timing tests hold the machine alone; others share it; a queued writer
is not starved by readers that arrive after it; every wait is bounded."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from harness import exclusive

BOUND_S = 30.0  # a bound on each wait in this test, never a speed expectation


def _in_thread(
    directory: Path, exclusive_: bool, log: list[str], name: str, release: threading.Event
) -> threading.Thread:
    def body() -> None:
        with exclusive.hold(directory, exclusive_, wait_s=BOUND_S):
            log.append(f"{name} in")
            release.wait(BOUND_S)
            log.append(f"{name} out")

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread


def _wait_for(log: list[str], entry: str) -> None:
    event = threading.Event()
    for _ in range(int(BOUND_S / 0.01)):
        if entry in log:
            return
        event.wait(0.01)
    raise AssertionError(f"{entry!r} never happened: {log}")


def test_writer_waits_for_readers_and_later_readers_queue_behind_it(tmp_path: Path) -> None:
    log: list[str] = []
    go_r1, go_w, go_r2 = threading.Event(), threading.Event(), threading.Event()
    r1 = _in_thread(tmp_path, False, log, "r1", go_r1)
    _wait_for(log, "r1 in")
    w = _in_thread(tmp_path, True, log, "w", go_w)
    threading.Event().wait(0.2)  # let the writer take the turnstile
    r2 = _in_thread(tmp_path, False, log, "r2", go_r2)
    threading.Event().wait(0.2)
    assert log == ["r1 in"]  # the writer waits for r1; r2 waits behind the writer
    go_r1.set()
    _wait_for(log, "w in")
    assert "r2 in" not in log  # nothing starts while the timing test runs
    go_w.set()
    _wait_for(log, "r2 in")
    go_r2.set()
    for thread in (r1, w, r2):
        thread.join(BOUND_S)
    assert log == ["r1 in", "r1 out", "w in", "w out", "r2 in", "r2 out"]


def test_readers_share(tmp_path: Path) -> None:
    with exclusive.hold(tmp_path, False, wait_s=BOUND_S):
        with exclusive.hold(tmp_path, False, wait_s=BOUND_S):
            pass


def test_wait_is_bounded(tmp_path: Path) -> None:
    with exclusive.hold(tmp_path, False, wait_s=BOUND_S):
        with pytest.raises(exclusive.MachineLockTimeout, match="machine"):
            with exclusive.hold(tmp_path, True, wait_s=0.2):
                pass
    with exclusive.hold(tmp_path, True, wait_s=BOUND_S):  # the timed-out writer let go
        pass


def test_no_lock_outside_xdist(tmp_path: Path) -> None:
    assert exclusive.lock_dir(tmp_path / "popen-gw0", None) is None
    assert exclusive.lock_dir(tmp_path / "popen-gw0", "gw0") == tmp_path / "preflight-machine"


def test_a_sharing_test_can_be_alone_for_a_block_and_shares_again_after(tmp_path: Path) -> None:
    holder = exclusive.Holder(tmp_path, wait_s=BOUND_S)
    with holder.test(alone=False):
        assert holder.mode == "shared"
        with holder.alone():  # would wait forever on its own share without giving it up
            assert holder.mode == "alone"
            with pytest.raises(exclusive.MachineLockTimeout):  # nobody else gets in
                with exclusive.hold(tmp_path, False, wait_s=0.2):
                    pass
        assert holder.mode == "shared"
        with exclusive.hold(tmp_path, False, wait_s=BOUND_S):  # others share again
            pass
        with pytest.raises(exclusive.MachineLockTimeout):  # ...and no writer gets in
            with exclusive.hold(tmp_path, True, wait_s=0.2):
                pass
    assert holder.mode is None
    with exclusive.hold(tmp_path, True, wait_s=BOUND_S):  # all given back
        pass


def test_alone_inside_a_timing_test_holds_nothing_more(tmp_path: Path) -> None:
    holder = exclusive.Holder(tmp_path, wait_s=BOUND_S)
    with holder.test(alone=True), holder.alone():
        assert holder.mode == "alone"
    with exclusive.Holder(None).test(alone=True):  # outside xdist: no lock, same bookkeeping
        pass
