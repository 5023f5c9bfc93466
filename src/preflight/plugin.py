"""pytest plugin for preflight: tiers, workload fixtures, and the session report.

Loaded through the `pytest11` entry point. Only hooks and fixtures live here; tiers are in
preflight.spec.tiers, jobs in preflight.workload, the report in preflight.reports.session. Heavy
imports
(psutil, numpy, matplotlib) happen inside fixtures and hooks, so every pytest run in an
environment with preflight installed stays fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from preflight.spec import tiers

if TYPE_CHECKING:
    from preflight.reports.session import Recorder, SessionCollector
    from preflight.workload import Workloads

SCALE_KEY = pytest.StashKey[str]()
REPORTER_KEY = pytest.StashKey["SessionReportPlugin"]()
REPORTER_NAME = "preflight-session-report"
REPORT_OFF = "none"
DEFAULT_SAMPLE_INTERVAL_S = 0.2
DEFAULT_WORKLOAD_FILES = ("workloads.toml", "pyproject.toml")
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("preflight", "preflight production-readiness harness")
    group.addoption(
        "--scale",
        choices=tiers.TIER_NAMES,
        default=None,
        help="highest tier to run; tests above it are deselected (ini: preflight_scale)",
    )
    group.addoption(
        "--preflight-report",
        metavar="DIR",
        default=None,
        help=f"session report directory, or '{REPORT_OFF}' (ini: preflight_report_dir)",
    )
    group.addoption(
        "--sample-interval",
        metavar="S",
        type=float,
        default=None,
        help="seconds between process-tree samples of workload runs (default 0.2)",
    )
    parser.addini("preflight_scale", "highest tier to run", default=tiers.DEFAULT_TIER)
    parser.addini(
        "preflight_report_dir",
        f"session report directory; '{REPORT_OFF}' (the default) writes none",
        default=REPORT_OFF,
    )
    parser.addini(
        "preflight_sample_interval_s",
        "seconds between samples",
        default=str(DEFAULT_SAMPLE_INTERVAL_S),
    )
    parser.addini(
        "preflight_workloads",
        "workload spec files searched by name (relative to rootdir)",
        type="linelist",
        default=list(DEFAULT_WORKLOAD_FILES),
    )


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _scale(config: pytest.Config) -> str:
    scale = config.getoption("scale")
    if scale is None and "slow" in str(config.getoption("markexpr", "") or ""):
        # docs/contract.md "pytest plugin": `pytest -m slow` runs the tiers above small.
        # Without an explicit --scale the ceiling must not deselect them, so it rises to the
        # top tier.
        scale = tiers.TIER_NAMES[-1]
    scale = scale or config.getini("preflight_scale")
    if scale not in tiers.TIER_NAMES:
        raise pytest.UsageError(
            f"preflight_scale = {scale!r}: choose one of {', '.join(tiers.TIER_NAMES)}"
        )
    return str(scale)


def _report_dir(config: pytest.Config) -> Path | None:
    option = config.getoption("preflight_report")
    if option is not None:
        return None if option == REPORT_OFF else Path(option).absolute()
    ini = str(config.getini("preflight_report_dir"))
    return None if ini == REPORT_OFF else config.rootpath / ini


def _sample_interval_s(config: pytest.Config) -> float:
    value = config.getoption("sample_interval")
    if value is None:
        value = float(config.getini("preflight_sample_interval_s"))
    if not value > 0:
        raise pytest.UsageError(f"--sample-interval must be positive, got {value}")
    return float(value)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "tier(name): the scale tier a test runs at (small, 10pct, production); tests above "
        "--scale are deselected",
    )
    config.addinivalue_line("markers", "slow: takes minutes or more (every tier above small)")
    config.addinivalue_line(
        "markers",
        "long: a small-tier test that drives several real jobs (many seconds); `make test` "
        "leaves it to `make test-long`, which CI runs",
    )
    config.stash[SCALE_KEY] = _scale(config)
    # The fault-experiment fixtures (fault_check, fault_battery) for any suite; docs/contract.md:
    # "the same experiments are available to pytest through fixtures".
    config.pluginmanager.import_plugin("preflight.check.pytest_fixtures")
    _sample_interval_s(config)  # fail at startup, not in the first fixture
    report_dir = _report_dir(config)
    if report_dir is not None and not _is_xdist_worker(config):
        from preflight.reports.session import SessionCollector

        reporter = SessionReportPlugin(
            SessionCollector(config.stash[SCALE_KEY]), report_dir, config.rootpath
        )
        config.stash[REPORTER_KEY] = reporter
        config.pluginmanager.register(reporter, REPORTER_NAME)


def pytest_unconfigure(config: pytest.Config) -> None:
    reporter = config.stash.get(REPORTER_KEY, None)
    if reporter is not None:
        config.pluginmanager.unregister(reporter)


def item_tier(item: pytest.Item) -> str:
    """The tier an item runs at: its tier marker, or small."""
    marker = item.get_closest_marker("tier")
    if marker is None:
        return tiers.DEFAULT_TIER
    args = list(marker.args) + list(marker.kwargs.values())
    if len(args) != 1 or args[0] not in tiers.TIER_NAMES:
        raise pytest.UsageError(
            f"{item.nodeid}: tier marker takes one of {', '.join(tiers.TIER_NAMES)}, "
            f"got {marker.args or ''}{marker.kwargs or ''}"
        )
    return str(args[0])


# tryfirst: the slow marker must be on the items before pytest's own -m selection runs.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    scale = config.stash[SCALE_KEY]
    selected: list[pytest.Item] = []
    deselected: list[pytest.Item] = []
    for item in items:
        name = item_tier(item)
        item.user_properties.append(("preflight.tier", name))
        if tiers.get_tier(name).slow:
            item.add_marker(pytest.mark.slow)
        (selected if tiers.is_selected(name, scale) else deselected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
    items[:] = selected


def report_message(report: pytest.TestReport) -> str:
    """A failure's explanation, or why a test was skipped (a self-test skips, naming the
    host's steal, when it could not be measured): the report must say which."""
    if report.failed:
        return failure_message(report.longreprtext)
    if report.skipped and isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        return f"skipped: {report.longrepr[2].removeprefix('Skipped: ')}"
    return ""


def failure_message(longrepr: str, limit: int = 2000) -> str:
    """What a report keeps of a failure (pure): pytest's explanation lines (those marked
    ``E``: the assertion and its message, e.g. a job's stderr tail), then the location
    line, cut to the last ``limit`` characters. The location alone hides why it failed."""
    lines = longrepr.splitlines()
    if not lines:
        return ""
    explained = [line[1:].strip() for line in lines if line.startswith("E ")]
    return "\n".join([*explained, lines[-1]])[-limit:]


class SessionReportPlugin:
    """Registered on the controller (or the only process): feeds every test report to the
    collector and writes the session report at the end. Under xdist the workers' reports,
    user_properties included, arrive here through pytest_runtest_logreport."""

    def __init__(self, collector: SessionCollector, report_dir: Path, rootpath: Path) -> None:
        self.collector = collector
        self.report_dir = report_dir
        self.rootpath = rootpath
        self.written: Path | None = None
        self.error: str | None = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.collector.add(
            report.nodeid,
            report.when,
            report.outcome,
            report.duration,
            report.user_properties,
            message=report_message(report),
            xfail=hasattr(report, "wasxfail"),
        )

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if not self.collector.tests:
            return  # --collect-only, or nothing selected: no session worth a report
        from preflight.reports.session import git_commit, write_report

        report = self.collector.build(
            exitstatus=int(exitstatus), git_commit=git_commit(self.rootpath)
        )
        try:
            self.written = write_report(report, self.report_dir)
        except OSError as exc:
            # The tests' own outcome stands; a missing report is said loudly, not hidden.
            self.error = f"cannot write the session report in {self.report_dir}: {exc}"

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.written is not None:
            terminalreporter.write_line(f"preflight report: {self.written / 'report.html'}")
        if self.error is not None:
            terminalreporter.write_line(f"preflight report: ERROR {self.error}", red=True)


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture
def tier(request: pytest.FixtureRequest) -> tiers.TierContext:
    """The tier this test runs at (its marker, else small) and the session's --scale."""
    name = item_tier(request.node)
    return tiers.TierContext(tiers.get_tier(name), request.config.stash[SCALE_KEY])


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A fresh, empty directory for one job's outputs."""
    path = tmp_path / "workdir"
    path.mkdir()
    return path


@pytest.fixture
def preflight_record(request: pytest.FixtureRequest) -> Recorder:
    """Record measurements and verdicts into the session report:
    preflight_record("name", value, unit=..., threshold=..., ok=...),
    preflight_record.verdict("name", verdict)."""
    from preflight.reports.session import Recorder

    return Recorder(request.node.user_properties)


@pytest.fixture
def workload(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    tier: tiers.TierContext,
    preflight_record: Recorder,
) -> Iterator[Workloads]:
    """workload(name, spec_file=None) -> handle; handle.run(params, faults=, timeout_s=)
    returns a finished, recorded Run. Every job is killed at teardown."""
    from preflight.workload import Workloads

    config = request.config
    search = [config.rootpath / p for p in config.getini("preflight_workloads")]
    workloads = Workloads(
        search,
        tier=tier.name,
        base_dir=tmp_path / "runs",
        sample_interval_s=_sample_interval_s(config),
        on_run=preflight_record.run,
    )
    try:
        yield workloads
    finally:
        workloads.close()
