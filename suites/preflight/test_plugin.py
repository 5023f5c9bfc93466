"""The pytest plugin in inner sessions (pytester): tiers, markers, fixtures, the report."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from suites.preflight.helpers import FIXTURE_SPECS

TIERED = """
import pytest

def test_small():
    pass

@pytest.mark.tier("10pct")
def test_rehearsal():
    pass

@pytest.mark.tier("production")
def test_production():
    pass
"""


@pytest.fixture(autouse=True)
def _outer_imports() -> None:
    """In-process inner sessions drop the modules they import when they end; numpy refuses
    to be imported twice in a process, so what the plugin imports lazily is imported here,
    in the outer session, first. hypothesis too: its pytest plugin imports it in every
    inner session, and re-importing (and assertion-rewriting) it each time costs seconds."""
    import hypothesis  # noqa: F401

    import preflight.analysis  # noqa: F401 - imports numpy
    import preflight.reports.plots  # noqa: F401
    import preflight.reports.session  # noqa: F401
    import preflight.workload  # noqa: F401


@pytest.fixture
def _matplotlib_imported() -> None:
    """For inner sessions that write plots (see _outer_imports)."""
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401


def _plugin_args() -> list[str]:
    # With autoloading off the entry point does not load the plugin; name it explicitly.
    return ["-p", "preflight.plugin"] if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD") else []


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("--strict-markers", "-p", "no:cacheprovider", *_plugin_args(), *args)


def _latest_report(root: Path) -> dict:
    return json.loads((root / "reports" / "latest" / "report.json").read_text())


@pytest.mark.parametrize(
    ("args", "passed", "deselected"),
    [((), 1, 2), (("--scale", "10pct"), 2, 1), (("--scale", "production"), 3, 0)],
)
def test_tests_above_the_scale_are_deselected_not_skipped(
    pytester: pytest.Pytester, args: tuple[str, ...], passed: int, deselected: int
) -> None:
    pytester.makepyfile(TIERED)
    _run(pytester, *args).assert_outcomes(passed=passed, deselected=deselected)


def test_scale_from_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\npreflight_scale = production\npreflight_report_dir = reports\n")
    pytester.makepyfile(TIERED)
    _run(pytester).assert_outcomes(passed=3)
    assert _latest_report(pytester.path)["scale"] == "production"


def test_tiers_above_small_are_marked_slow(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(TIERED)
    result = _run(pytester, "--scale", "production", "-m", "slow", "-v")
    result.assert_outcomes(passed=2, deselected=1)
    result.stdout.fnmatch_lines(["*test_rehearsal PASSED*", "*test_production PASSED*"])
    _run(pytester, "--scale", "production", "-m", "not slow").assert_outcomes(
        passed=1, deselected=2
    )


def test_dash_m_slow_alone_runs_the_slow_tiers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(TIERED)
    result = _run(pytester, "-m", "slow", "-v")
    result.assert_outcomes(passed=2, deselected=1)
    result.stdout.fnmatch_lines(["*test_rehearsal PASSED*", "*test_production PASSED*"])


def test_an_unknown_tier_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        "import pytest\n@pytest.mark.tier('huge')\ndef test_x():\n    pass\n"
    )
    result = _run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_x: tier marker takes one of small, 10pct, production*"])


@pytest.mark.usefixtures("_matplotlib_imported")
def test_fixtures_record_into_the_session_report(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(f"""
        import pytest

        @pytest.mark.tier("10pct")
        def test_tier_fixture(tier, workload):
            assert (tier.name, tier.scale) == ("10pct", "10pct")
            handle = workload("clean", {str(FIXTURE_SPECS)!r})
            assert handle.params()["units"] == 3000

        def test_job(workload, workdir, preflight_record):
            assert workdir.is_dir() and not any(workdir.iterdir())
            run = workload("clean", {str(FIXTURE_SPECS)!r}).run({{"units": 20}})
            assert run.returncode == 0 and run.progress() == (20, 20)
            preflight_record("answer", 42, unit="units", threshold=40, ok=True)
    """)
    result = _run(pytester, "--scale", "10pct", "--sample-interval", "0.02",
                  "--preflight-report", "reports")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["preflight report: *report.html"])
    report = _latest_report(pytester.path)
    job = next(t for t in report["tests"] if t["nodeid"].endswith("test_job"))
    names = {m["name"]: m for m in job["measurements"]}
    assert names["answer"] == {"name": "answer", "value": 42, "unit": "units",
                               "threshold": 40, "ok": True}
    assert names["clean#1.exit_code"]["ok"] is True
    assert names["clean#1.rss_bytes_max"]["value"] > 0
    assert job["tier"] == "small" and 0 < job["series"][0]["columns"]["progress_done"][-1] <= 20
    assert job["plots"] and (pytester.path / "reports" / "latest" / job["plots"][0]).is_file()


def test_no_report_unless_asked(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(tier, preflight_record):\n    preflight_record('x', 1)\n")
    _run(pytester).assert_outcomes(passed=1)
    assert not (pytester.path / "reports").exists()


def test_report_can_be_turned_off_or_moved(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x():\n    pass\n")
    _run(pytester, "--preflight-report", "none").assert_outcomes(passed=1)
    assert not (pytester.path / "reports").exists()
    _run(pytester, "--preflight-report", str(pytester.path / "elsewhere")).assert_outcomes(passed=1)
    assert (pytester.path / "elsewhere" / "latest" / "report.md").is_file()


def test_measurements_from_xdist_workers_reach_the_report(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import os
        import pytest

        @pytest.mark.parametrize("n", range(4))
        def test_worker(n, preflight_record):
            preflight_record("worker", os.environ["PYTEST_XDIST_WORKER"])
            preflight_record("n", n)
    """)
    result = pytester.runpytest_subprocess(
        "--strict-markers", "-p", "no:cacheprovider", *_plugin_args(), "-n", "2",
        "--preflight-report", "reports", timeout=120,
    )
    result.assert_outcomes(passed=4)
    report = _latest_report(pytester.path)
    assert len(report["tests"]) == 4
    seen = {}
    for test in report["tests"]:
        values = {m["name"]: m["value"] for m in test["measurements"]}
        assert values["worker"].startswith("gw") and test["tier"] == "small"
        seen[values["n"]] = values["worker"]
    assert sorted(seen) == [0, 1, 2, 3]
