"""`preflight report` and the dispatch of the other subcommands."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from preflight import cli
from preflight.reports.session import SessionCollector, write_report


@pytest.fixture
def reports(tmp_path: Path) -> Path:
    collector = SessionCollector("small", datetime(2025, 1, 2, tzinfo=UTC))
    collector.add("t.py::test_a", "call", "passed", 0.5, [("preflight.tier", "small")])
    collector.add("t.py::test_b", "call", "failed", 0.5, [])
    write_report(collector.build(exitstatus=1, git_commit="abc"), tmp_path)
    return tmp_path


def test_report_prints_the_latest_markdown(reports: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["report", "--dir", str(reports)]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("# preflight report 20250102T000000.000Z")
    assert "| `t.py::test_b` |  | failed |" in out


def test_report_formats_list_and_rebuild(reports: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["report", "20250102T000000.000Z", "--dir", str(reports),
                     "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["failed"] == 1
    assert cli.main(["report", "--dir", str(reports), "--format", "path"]) == 0
    assert capsys.readouterr().out.strip().endswith("20250102T000000.000Z/report.html")
    assert cli.main(["report", "--dir", str(reports), "--list"]) == 0
    assert capsys.readouterr().out == "20250102T000000.000Z  1 passed, 1 failed\n"
    (reports / "latest" / "report.html").unlink()
    assert cli.main(["report", "--dir", str(reports), "--rebuild", "--format", "path"]) == 0
    assert (reports / "latest" / "report.html").is_file()


def test_report_errors_are_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["report", "--dir", str(tmp_path / "none")]) == cli.EXIT_BAD_INPUT
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["report", "nope", "--dir", str(tmp_path)]) == cli.EXIT_BAD_INPUT
    assert "no report.json" in capsys.readouterr().err


def test_delegated_commands_get_their_own_argv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "fake_check.py").write_text(
        "def main(argv):\n    print('args', argv)\n    return 7\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.DELEGATED, "check", ("fake_check", "fake"))
    assert cli.main(["check", "datagen", "--help", "--seed", "3"]) == 7
    assert capsys.readouterr().out == "args ['datagen', '--help', '--seed', '3']\n"
    monkeypatch.setitem(cli.DELEGATED, "soak", ("preflight_absent_module", "absent"))
    assert cli.main(["soak", "x"]) == cli.EXIT_BAD_INPUT
    assert "not available" in capsys.readouterr().err
    sys.modules.pop("fake_check", None)


def test_no_command_prints_help(capsys: pytest.CaptureFixture) -> None:
    assert cli.main([]) == cli.EXIT_BAD_INPUT
    assert "check" in capsys.readouterr().out
