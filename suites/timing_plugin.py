"""This repository's own test scheduling, loaded by the root conftest (never by the plugin
users install): tests marked `timing` measure wall-time ratios, so under xdist each holds
the machine alone (harness.exclusive), waits (bounded) for a machine worth timing on, and
runs after the others. `preflight gate` does not need any of it: it schedules its own
experiments (harness.experiments.schedule)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager

import pytest

from harness import exclusive, hostload

MACHINE_KEY = pytest.StashKey[exclusive.Holder]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "timing: measures a wall-time ratio; runs alone (no other test of the run starts "
        "while it runs) and after the other tests",
    )
    timing_cpu_wait_s(os.environ)  # a bad value fails at startup, not in the first test


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Timing tests last: each waits for the machine to itself (harness.exclusive), and at the
    # end the other worker has less left to wait for.
    items[:] = sorted(items, key=lambda item: item.get_closest_marker("timing") is not None)


# Before a timing measurement, how long to wait for the machine to give a busy process most
# of a CPU (harness.hostload.wait_for_cpu). The host's steal here comes in bursts of
# minutes; a measurement that starts in one reads the host. Bounded: after it, the test runs
# on the machine as it is, and its own checks (stretching, re-measuring) take over.
TIMING_CPU_WAIT_S = 120.0
CPU_WAIT_ENV = "PREFLIGHT_TIMING_CPU_WAIT_S"  # seconds; 0 measures on the machine as it is


def timing_cpu_wait_s(environ: Mapping[str, str]) -> float:
    """The wait for a quiet machine before a timing test (pure over the environment)."""
    raw = environ.get(CPU_WAIT_ENV, "")
    if not raw:
        return TIMING_CPU_WAIT_S
    try:
        value = float(raw)
    except ValueError:
        message = f"{CPU_WAIT_ENV} must be a number of seconds, got {raw!r}"
        raise pytest.UsageError(message) from None
    if not 0 <= value <= 24 * 3600:
        raise pytest.UsageError(f"{CPU_WAIT_ENV} must be between 0 and 86400 s, got {raw!r}")
    return value



def _machine_holder(config: pytest.Config) -> exclusive.Holder:
    """This worker's hold on the machine lock (harness.exclusive), made on first use."""
    holder = config.stash.get(MACHINE_KEY, None)
    if holder is None:
        # The lock files live beside the xdist workers' temp directories, which pytest cleans
        # up; tmp_path_factory is the tmp_path fixture's own factory, set at configure time.
        factory = getattr(config, "_tmp_path_factory", None)
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        directory = None if factory is None else exclusive.lock_dir(factory.getbasetemp(), worker)
        holder = config.stash[MACHINE_KEY] = exclusive.Holder(directory)
    return holder


# tryfirst: outside pytest-timeout's wrapper, so the wait for the machine is not counted
# against the test's own timeout (it is bounded by the lock's wait instead). Inside it, a
# test queued behind a neighbour's timing tests timed out in this hook and took its xdist
# worker down with an INTERNALERROR.
@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Under xdist: a timing test holds the machine alone, every other test shares it, from
    its setup (including the module and session fixtures it is first to need) to its
    teardown."""
    alone = item.get_closest_marker("timing") is not None
    with _machine_holder(item.config).test(alone):
        if alone:
            _wait_for_cpu(item.user_properties)
        return (yield)


def _wait_for_cpu(properties: list[tuple[str, object]] | None = None) -> None:
    """Wait (bounded) for a machine worth timing on; record what was seen in the report."""
    started = time.monotonic()
    shares = hostload.wait_for_cpu(timing_cpu_wait_s(os.environ))
    if properties is None or shares[-1] is None:
        return
    from harness.gate.report import Recorder

    record = Recorder(properties)
    record("host.cpu_share_at_start", round(shares[-1], 3), unit="fraction")
    record("host.cpu_wait_s", round(time.monotonic() - started, 1), unit="s")


@pytest.fixture(scope="session")
def preflight_machine_alone(
    pytestconfig: pytest.Config,
) -> Callable[[], AbstractContextManager[None]]:
    """For fixtures that measure: ``with preflight_machine_alone(): ...`` runs the block with
    no other test of the run going on beside it (the test's own share is given up for the
    block and taken back after). Outside xdist it holds nothing."""
    holder = _machine_holder(pytestconfig)

    @contextmanager
    def alone() -> Iterator[None]:
        with holder.alone():
            _wait_for_cpu()
            yield

    return alone


