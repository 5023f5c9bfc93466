"""Fixtures for this folder, and an ordering that keeps it fast under pytest-xdist.

The fixtures come from preflight.check.pytest_fixtures (src/preflight/plugin.py may also load
them; a conftest definition simply takes precedence).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from preflight.check.pytest_fixtures import fault_battery, fault_check  # noqa: F401

HERE = Path(__file__).parent
# Tests that drive real jobs (seconds each); every other test here is milliseconds.
JOB_MODULES = ("test_defects_caught.py", "test_corruption_property.py", "test_unearned.py")


def spread(slow: list[pytest.Item], fast: list[pytest.Item]) -> list[pytest.Item]:
    """Slow tests spaced evenly over the first quarter, fast ones filling the gaps (pure)."""
    if not slow:
        return fast
    quarter = max(len(slow), (len(slow) + len(fast)) // 4)
    out: list[pytest.Item] = []
    fast_iter = iter(fast)
    for index, item in enumerate(slow):
        position = index * quarter // len(slow)
        while len(out) < position:
            out.append(next(fast_iter))
        out.append(item)
    out.extend(fast_iter)
    return out


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # xdist ("load") deals the first quarter of the tests to the workers in consecutive
    # blocks, then the rest in chunks; spacing the job-driving tests evenly over that
    # first quarter puts them on different workers. Only this folder's slots are reordered.
    slots = [i for i, item in enumerate(items) if item.path.parent == HERE]
    mine = [items[i] for i in slots]
    slow = [item for item in mine if item.path.name in JOB_MODULES]
    fast = [item for item in mine if item.path.name not in JOB_MODULES]
    for slot, item in zip(slots, spread(slow, fast), strict=True):
        items[slot] = item
