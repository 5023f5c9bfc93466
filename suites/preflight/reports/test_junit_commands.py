"""`preflight check --junit PATH` end to end on the planted-defect fixtures
(fixtures/defects.toml): a clean job's testcase passes; a job that resumes inexactly
(no_rng) fails its testcase with the reason and the replay command, and the exit code is
the check's own. One kill experiment each (--only): seconds, judged by fingerprints, which
no host noise changes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from junitparser import Failure, JUnitXml

from suites.preflight.helpers import FIXTURES

PREFLIGHT = Path(sys.executable).parent / "preflight"
DEFECTS = FIXTURES / "defects.toml"
RUN_TIMEOUT_S = 300.0


def check(tmp_path: Path, workload: str) -> tuple[int, str, JUnitXml]:
    out = tmp_path / "ci" / f"{workload}.xml"
    done = subprocess.run(
        [str(PREFLIGHT), "check", workload, "--spec", str(DEFECTS), "--faults", "kill",
         "--only", "kill-time", "--report", str(tmp_path / "report"), "--junit", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    return done.returncode, done.stdout + done.stderr, JUnitXml.fromfile(str(out))


@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
def test_check_junit_passes_a_clean_job(tmp_path: Path) -> None:
    code, output, xml = check(tmp_path, "clean_ckpt")
    assert code == 0, output
    (case,) = [c for suite in xml for c in suite]
    assert (case.classname, case.name, case.is_passed) == ("clean_ckpt", "kill-time", True)
    assert (xml.tests, xml.failures, xml.errors, xml.skipped) == (1, 0, 0, 0)


@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
def test_check_junit_fails_a_planted_defect_with_its_replay_command(tmp_path: Path) -> None:
    code, output, xml = check(tmp_path, "no_rng")
    assert code == 1, output
    (case,) = [c for suite in xml for c in suite]
    assert (case.classname, case.name) == ("no_rng", "kill-time")
    (failure,) = case.result
    assert isinstance(failure, Failure)
    assert failure.message.startswith("exact: fingerprint "), failure.message
    assert failure.message.endswith(
        f" — replay: preflight check no_rng --spec {DEFECTS} --scale small --faults kill "
        "--seed 0 --only kill-time")
    assert xml.failures == 1


def test_check_junit_refuses_a_directory_before_running(tmp_path: Path) -> None:
    done = subprocess.run([str(PREFLIGHT), "check", "no_rng", "--spec", str(DEFECTS),
                           "--junit", str(tmp_path)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "is a directory" in done.stderr
    assert not (tmp_path / "reports").exists()  # nothing ran


def test_check_junit_without_the_preflight_command_is_refused(tmp_path: Path, capsys) -> None:
    # The writer lives in a room above check's: only the `preflight` command hands it in.
    from preflight.check.command import main

    assert main(["no_rng", "--spec", str(DEFECTS), "--junit", str(tmp_path / "x.xml")]) == 2
    assert "needs the `preflight` command" in capsys.readouterr().err
