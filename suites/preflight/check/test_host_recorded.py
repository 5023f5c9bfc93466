"""The host figures are recorded with a fault history when it is built, never patched in
afterwards: the experiment's watch travels in the DriveContext and ends at recording time."""

from __future__ import annotations

from pathlib import Path

from preflight.check.drive.runner import DriveContext
from preflight.check.drive.schedule import FaultExperiment
from preflight.check.drive.sequence import build_history, skipped_history
from preflight.check.history import FAULT_SIGKILL, Attempt


class _Watch:
    """A HostWatch as build_history sees it: stop(), then the frozen share."""

    def __init__(self, frozen: float | None) -> None:
        self.frozen_share, self.stops = frozen, 0

    def stop(self) -> None:
        self.stops += 1

    @property
    def frozen(self) -> float | None:
        return self.frozen_share if self.stops else None


def _ctx(tmp_path: Path, watch: _Watch | None) -> DriveContext:
    # No spec is read: the attempts below never completed, so nothing is verified.
    return DriveContext(spec=None, params={}, root=tmp_path, host=watch)  # type: ignore[arg-type]


def test_the_frozen_share_is_recorded_when_the_history_is_built(tmp_path: Path) -> None:
    watch = _Watch(0.64)
    exp = FaultExperiment("kill-time", "kill", {})
    attempts = [Attempt(0, False, fault=FAULT_SIGKILL, rc=-9), Attempt(1, True, rc=1)]
    history = build_history(_ctx(tmp_path, watch), exp, 0, tmp_path, attempts, [], 0.0)
    assert history.host_frozen == 0.64 and watch.stops == 1
    assert (
        build_history(_ctx(tmp_path, None), exp, 0, tmp_path, attempts, [], 0.0).host_frozen is None
    )


def test_a_skipped_history_takes_the_figure_at_recording_too(tmp_path: Path) -> None:
    exp = FaultExperiment("disk-full", "disk", {})
    watch = _Watch(0.3)
    skipped = skipped_history(exp, 0, "no tmpfs", host_frozen=_ctx(tmp_path, watch).host_frozen())
    assert skipped.host_frozen == 0.3 and skipped.skipped == "no tmpfs"
    assert skipped_history(exp, 0, "no tmpfs").host_frozen is None
