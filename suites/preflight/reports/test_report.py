"""The session report: recording, collecting, rendering, writing."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from preflight.analysis import leak_verdict
from preflight.reports.session import (
    PROP_MEASUREMENT,
    SCHEMA,
    Recorder,
    SessionCollector,
    render_html,
    render_markdown,
    rewrite_views,
    run_id_for,
    write_report,
)
from preflight.run.sampler import Sample


def _samples(n: int = 60) -> list[Sample]:
    return [
        Sample(t_s=i * 0.1, rss_bytes=(40 << 20) + i * 20480, uss_bytes=(20 << 20) + i * 20480,
               cpu_s=i * 0.01, open_files=5, threads=1, read_bytes=0, write_bytes=i,
               progress_done=i, n_procs=1)
        for i in range(n)
    ]


def _collector_with_tests() -> SessionCollector:
    collector = SessionCollector("small", datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC))
    props: list[tuple[str, object]] = [("preflight.tier", "small"), ("other.plugin", 1)]
    record = Recorder(props)
    record("rss_bytes_max", np.int64(123), unit="bytes", threshold=1000.0, ok=True)
    record("ratio", float("nan"))
    record.verdict("memory", leak_verdict(_samples(150)))
    record.series("job#1", _samples())
    collector.add("t.py::test_a", "setup", "passed", 0.1, props[:1])
    collector.add("t.py::test_a", "call", "passed", 0.5, props)
    collector.add("t.py::test_a", "teardown", "passed", 0.1, props)
    collector.add("t.py::test_<b>", "setup", "passed", 0.0, [])
    collector.add("t.py::test_<b>", "call", "failed", 0.2, [], message="AssertionError: boom")
    collector.add("t.py::test_c", "setup", "failed", 0.0, [], message="fixture broke")
    collector.add("t.py::test_d", "setup", "skipped", 0.0, [])
    collector.add("t.py::test_e", "call", "skipped", 0.0, [], xfail=True)
    return collector


def test_recorder_writes_plain_json_into_user_properties() -> None:
    props: list[tuple[str, object]] = []
    Recorder(props)("x", np.float64(1.5), unit="s", threshold=np.int32(2), ok=np.bool_(True))
    assert props == [(PROP_MEASUREMENT, {"name": "x", "value": 1.5, "unit": "s",
                                         "threshold": 2, "ok": True})]
    Recorder(props)("nan", math.inf)
    assert props[-1][1]["value"] is None  # type: ignore[index]


def test_collector_combines_phases_into_outcomes() -> None:
    report = _collector_with_tests().build(exitstatus=1, git_commit="abc")
    outcomes = {t["nodeid"]: t["outcome"] for t in report["tests"]}
    assert outcomes == {"t.py::test_a": "passed", "t.py::test_<b>": "failed",
                        "t.py::test_c": "error", "t.py::test_d": "skipped",
                        "t.py::test_e": "xfailed"}
    assert report["summary"]["failed"] == 1 and report["summary"]["error"] == 1
    test_a = report["tests"][0]
    assert test_a["tier"] == "small" and test_a["duration_s"] == 0.7
    assert [m["name"] for m in test_a["measurements"]] == ["rss_bytes_max", "ratio"]
    assert test_a["verdicts"][0]["name"] == "memory" and test_a["verdicts"][0]["ok"] is False
    assert len(test_a["series"][0]["columns"]["t_s"]) == 60
    assert report["tests"][1]["message"] == "AssertionError: boom"
    assert report["schema"] == SCHEMA and report["run_id"] == "20250102T030405.678Z"
    assert report["git_commit"] == "abc" and report["exitstatus"] == 1


def test_run_ids_are_iso_8601_basic_utc() -> None:
    assert re.fullmatch(r"\d{8}T\d{6}\.\d{3}Z", run_id_for(datetime.now(UTC)))


def test_renderers_show_measurements_and_escape_html() -> None:
    report = _collector_with_tests().build(exitstatus=1, git_commit=None)
    markdown = render_markdown(report)
    assert "| rss_bytes_max | 123 | bytes | 1000 | ok |" in markdown
    assert "**memory** (leak): FAIL - LEAK" in markdown
    page = render_html(report)
    assert "test_&lt;b&gt;" in page and "test_<b>" not in page


def test_write_report_is_complete_and_points_latest_at_the_newest(tmp_path: Path) -> None:
    report = _collector_with_tests().build(exitstatus=1, git_commit=None)
    first = write_report(report, tmp_path)
    assert sorted(p.name for p in first.iterdir() if not p.name.endswith(".png")) == [
        "report.html", "report.json", "report.md"]
    stored = json.loads((first / "report.json").read_text())
    plots = stored["tests"][0]["plots"]
    assert len(plots) == 1 and (first / plots[0]).read_bytes()[:4] == b"\x89PNG"
    assert f"src='{plots[0]}'" in (first / "report.html").read_text()
    assert (tmp_path / "latest").resolve() == first.resolve()
    # The same run id again (two sessions in one millisecond) gets its own directory.
    report["tests"] = []
    second = write_report(report, tmp_path)
    assert second.name == f"{first.name}-2"
    assert (tmp_path / "latest").resolve() == second.resolve()
    assert json.loads((second / "report.json").read_text())["run_id"] == second.name
    (second / "report.md").unlink()
    rewrite_views(second)
    assert (second / "report.md").read_text().startswith(f"# preflight report {second.name}")


def test_failure_message_keeps_the_explanation_not_just_the_location():
    from preflight.plugin import failure_message

    longrepr = (
        "    def test_x():\n>       assert done.returncode == 0, done.stderr\n"
        "E       AssertionError: rank 1 exited 1: gloo connect refused\n"
        "E       assert 1 == 0\n\nsuites/x.py:85: AssertionError"
    )
    message = failure_message(longrepr)
    assert message.splitlines() == [
        "AssertionError: rank 1 exited 1: gloo connect refused",
        "assert 1 == 0",
        "suites/x.py:85: AssertionError",
    ]
    assert failure_message("x" * 5000, limit=100) == "x" * 100
    assert failure_message("") == ""


def test_a_skip_keeps_its_reason_in_the_report():
    from types import SimpleNamespace

    from preflight.plugin import report_message

    skipped = SimpleNamespace(failed=False, skipped=True,
                              longrepr=("f.py", 3, "Skipped: the host took the CPU"))
    assert report_message(skipped) == "skipped: the host took the CPU"  # type: ignore[arg-type]
    passed = SimpleNamespace(failed=False, skipped=False, longrepr=None)
    assert report_message(passed) == ""  # type: ignore[arg-type]
