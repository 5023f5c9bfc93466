"""`preflight report` with no argument shows the latest run's report whatever kind wrote
it: a gate's readiness report (readiness.md beside its report.json; a gate writes no
report.md), or as before a pytest session's report.md. First on a recorded gate run dir
(the real readiness writer on the synthetic failing gate), then after a real small gate on
a planted-defect fixture, which also writes --junit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from junitparser import Failure, JUnitXml

from preflight.cli import main
from preflight.durable.atomic import atomic_write
from preflight.reports.readiness import write_readiness
from preflight.reports.session import point_latest
from suites.preflight.helpers import FIXTURES
from suites.preflight.reports.readiness_synthetic import failing_gate

PREFLIGHT = Path(sys.executable).parent / "preflight"
DEFECTS = FIXTURES / "defects.toml"
GATE_TIMEOUT_S = 300.0
RUN_ID = "20260101T000000Z-gate-1"  # the run failing_gate's meta names


def recorded_gate(reports: Path) -> Path:
    """A run dir as `preflight gate` leaves it: report.json, readiness.{json,md,html},
    reports/latest pointing at it."""
    run_dir = reports / RUN_ID
    verdict, tests, meta = failing_gate(run_dir)
    assert meta["run_id"] == RUN_ID
    atomic_write(run_dir / "report.json",
                 {"experiments": True, "scale": "small", "tests": tests, "meta": meta})
    write_readiness(run_dir, verdict, meta, [], [], tests)
    point_latest(reports, run_dir)
    return run_dir


def test_report_with_no_argument_shows_the_latest_gate(tmp_path, capsys) -> None:
    run_dir = recorded_gate(tmp_path / "reports")
    assert not (run_dir / "report.md").exists()
    assert main(["report", "--dir", str(tmp_path / "reports")]) == 0
    shown = capsys.readouterr().out
    assert shown == (run_dir / "readiness.md").read_text()
    assert shown.startswith("# Readiness: NOT READY")


def test_report_of_a_gate_names_its_html_and_prints_its_json(tmp_path, capsys) -> None:
    run_dir = recorded_gate(tmp_path / "reports")
    reports = str(tmp_path / "reports")
    assert main(["report", "--dir", reports, "--format", "path"]) == 0
    assert capsys.readouterr().out.strip() == str((run_dir / "readiness.html").resolve())
    assert main(["report", run_dir.name, "--dir", reports, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["meta"]["run_id"] == run_dir.name
    # --rebuild re-renders session reports only: a gate's run is refused, left as it was.
    assert main(["report", "--dir", reports, "--rebuild"]) == 2
    assert "gate's readiness report" in capsys.readouterr().err
    assert not (run_dir / "report.md").exists()


def test_a_session_report_is_shown_as_before(tmp_path, capsys) -> None:
    run_dir = tmp_path / "reports" / "20260101T000000Z"
    run_dir.mkdir(parents=True)
    (run_dir / "report.json").write_text(json.dumps({"summary": {"passed": 1}}))
    (run_dir / "report.md").write_text("# session\n")
    (run_dir / "readiness.md").write_text("# not this one\n")
    point_latest(tmp_path / "reports", run_dir)
    assert main(["report", "--dir", str(tmp_path / "reports")]) == 0
    assert capsys.readouterr().out == "# session\n"


@pytest.mark.timeout(GATE_TIMEOUT_S + 60)
def test_report_after_a_real_gate_and_its_junit(tmp_path: Path) -> None:
    # no_rng resumes with a fresh random state: the kill battery's fingerprints differ.
    junit = tmp_path / "ci" / "gate.xml"
    gate = subprocess.run(
        [str(PREFLIGHT), "gate", "--spec", str(DEFECTS), "--workload", "no_rng",
         "--only", "completion", "--only", "faults.kill", "--junit", str(junit)],
        cwd=tmp_path, capture_output=True, text=True, timeout=GATE_TIMEOUT_S, check=False)
    assert gate.returncode == 1, gate.stdout + gate.stderr
    assert "NOT READY" in gate.stdout
    xml = JUnitXml.fromfile(str(junit))
    found = {(c.classname, c.name): c for suite in xml for c in suite}
    assert set(found) == {("no_rng", "completion"), ("no_rng", "faults.kill")}
    assert found[("no_rng", "completion")].is_passed
    (failure,) = found[("no_rng", "faults.kill")].result
    assert isinstance(failure, Failure)
    assert "exact: fingerprint" in failure.message
    assert failure.message.endswith(
        f" — replay: preflight gate --spec {DEFECTS} --workload no_rng --scale small "
        "--only faults.kill")
    shown = subprocess.run([str(PREFLIGHT), "report"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=60, check=False)
    assert shown.returncode == 0, shown.stderr
    readiness = (tmp_path / "reports" / "latest" / "readiness.md").read_text()
    assert shown.stdout == readiness
    assert shown.stdout.startswith("# Readiness: NOT READY")
