"""pytest fixtures for fault experiments (registered by src/preflight/plugin.py).

``fault_check(workload, ...)`` runs the same battery as ``preflight check`` in the test's
tmp_path and returns the BatteryResult (preflight.check.battery);
``assert_check_passed(result)`` fails the test with every failed verdict and the command
that replays it.

``fault_battery(workload, ...)`` (session scope) keeps one reference run per workload for
property tests: with ``preflight.check.kinds.corrupt.corruptions()`` as the hypothesis strategy,
``battery.corruption(spec)`` runs one drawn corruption, and a failing case shrinks to the
simplest corruption that still fails::

    @settings(max_examples=10, deadline=None)
    @given(spec=corruptions())
    def test_no_silent_corruption(fault_battery, spec):
        row = fault_battery("datagen").corruption(spec)
        assert not row.failed, row.replay
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from preflight.check.battery import Battery, BatteryResult, run_battery
from preflight.check.history import KINDS
from preflight.check.options import CheckOptions

FaultCheck = Callable[..., BatteryResult]
FaultBattery = Callable[..., Battery]


def failure_text(result: BatteryResult) -> str:
    lines = list(result.report.errors)
    for row in result.report.rows:
        if row.failed:
            lines.append(f"{row.experiment.id}: {row.status}")
            lines += [f"    {v.name}: {v.detail}" for v in row.verdicts if v.failed]
            lines.append(f"    replay: {row.replay}")
    return "\n".join(lines)


def assert_check_passed(result: BatteryResult) -> None:
    assert result.passed, "preflight check failed:\n" + failure_text(result)


@pytest.fixture
def fault_check(tmp_path: Path) -> FaultCheck:
    """Run fault experiments on a workload; workdirs and the report live in tmp_path."""

    def run(
        workload: str,
        *,
        spec: str | None = None,
        scale: str = "small",
        faults: Iterable[str] = KINDS,
        seed: int = 0,
        only: Iterable[str] = (),
        ckpt_interval: int | None = None,
    ) -> BatteryResult:
        return run_battery(
            CheckOptions(
                workload=workload,
                spec_file=spec,
                scale=scale,
                faults=tuple(k for k in KINDS if k in set(faults)),
                seed=seed,
                report_dir=str(tmp_path / "report"),
                only=tuple(only),
                ckpt_interval=ckpt_interval,
                work_root=str(tmp_path),
                quiet=True,
            )
        )

    return run


@pytest.fixture(scope="session")
def fault_battery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultBattery]:
    """Batteries (reference run done once) keyed by workload, spec, scale and seed."""
    batteries: dict[tuple[str, str | None, str, int], Battery] = {}

    def get(
        workload: str, *, spec: str | None = None, scale: str = "small", seed: int = 0
    ) -> Battery:
        key = (workload, spec, scale, seed)
        if key not in batteries:
            opts = CheckOptions(
                workload=workload,
                spec_file=spec,
                scale=scale,
                seed=seed,
                work_root=str(tmp_path_factory.mktemp("battery")),
                quiet=True,
            )
            battery = Battery(opts)
            battery.start()
            assert not battery.error, battery.error
            batteries[key] = battery
        return batteries[key]

    yield get
    for battery in batteries.values():
        battery.close()
