"""preflight.reports.junit on recorded and synthetic rows (no job runs): the XML parses back
with junitparser, one testcase per experiment, failures carry the reason and the whole replay
command, skips say whether the experiment was not applicable, its fault not injected, or the
result inconclusive. Also `preflight check`'s rows (preflight.check.command.junit_rows)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from junitparser import Error, Failure, JUnitXml, Skipped, TestCase

from preflight.check.command import junit_rows
from preflight.check.drive.schedule import FaultExperiment
from preflight.check.history import FAULT_SIGKILL, Attempt, FaultHistory, Reference
from preflight.check.report import CheckReport, CheckRow
from preflight.check.verdicts import FAIL, PASS, SKIP, CheckVerdict
from preflight.durable.errors import BadInputError
from preflight.evidence import Row, Status
from preflight.reports import junit
from suites.preflight.reports.readiness_synthetic import (
    KILL_REASON,
    LEAK_REASON,
    WORKLOAD,
    entry,
    failing_gate,
    replay,
)

NOT_INJECTED_REASON = "no corrupt fault was injected (3 experiment(s) skipped)"
STEAL_REASON = "checkpoint overhead 0.09 > 0.035 while the host took the machine"


def parse(xml: JUnitXml) -> JUnitXml:
    """What an independent reader sees: the bytes written, parsed again."""
    return JUnitXml.fromstring(junit.to_bytes(xml))


def cases(xml: JUnitXml) -> dict[tuple[str, str], TestCase]:
    return {(c.classname, c.name): c for suite in xml for c in suite}


def only_result(case: TestCase) -> Failure | Error | Skipped:
    (result,) = case.result
    return result


def gate_rows(tmp_path: Path) -> list[Row]:
    _verdict, tests, _meta = failing_gate(tmp_path)
    tests = [*tests,
             {**entry("faults.corrupt", "inconclusive", {"corrupt.not_injected": 3},
                      NOT_INJECTED_REASON), "injected": False},
             {**entry("overhead", "inconclusive", {"checkpoint_overhead": 0.09}, STEAL_REASON,
                      host="steal 61%, harness frozen 2%"), "workload": "other",
              "nodeid": "other::overhead"}]
    return [Row.from_json(t) for t in tests]


def test_gate_rows_one_testcase_per_workload_and_experiment(tmp_path: Path) -> None:
    xml = parse(junit.to_junit("preflight-gate", gate_rows(tmp_path), {"verdict": "NOT READY"}))
    (suite,) = list(xml)
    assert suite.name == "preflight-gate"
    assert (xml.tests, xml.failures, xml.errors, xml.skipped) == (8, 3, 0, 3)
    assert {p.name: p.value for p in suite.properties()} == {"verdict": "NOT READY"}
    found = cases(xml)
    assert set(found) == {
        (WORKLOAD, "completion"), (WORKLOAD, "faults.kill"), (WORKLOAD, "stability"),
        (WORKLOAD, "overhead"), (WORKLOAD, "accounting"), (WORKLOAD, "faults.corrupt"),
        ("other", "overhead"), ("suites.alerts.test_latency", "test_alert")}
    assert found[(WORKLOAD, "completion")].is_passed
    assert found[(WORKLOAD, "completion")].time == 1.5


def test_failure_message_is_the_reason_then_the_whole_replay_command(tmp_path: Path) -> None:
    found = cases(parse(junit.to_junit("preflight-gate", gate_rows(tmp_path))))
    kill = only_result(found[(WORKLOAD, "faults.kill")])
    assert isinstance(kill, Failure)
    assert kill.message == f"{KILL_REASON} — replay: {replay('faults.kill')}"
    assert kill.message.endswith("--workload myjob --scale small --only faults.kill")
    stability = only_result(found[(WORKLOAD, "stability")])
    assert stability.message == f"{LEAK_REASON} — replay: {replay('stability')}"
    assert "host: steal 2%, harness frozen 0%" in stability.text
    # A project suite's test: its traceback's last line, and pytest on its id to replay it.
    suite_test = only_result(found[("suites.alerts.test_latency", "test_alert")])
    assert suite_test.message == ("E assert 7.5 < 5 — replay: python -m pytest "
                                  "suites/alerts/test_latency.py::test_alert --scale small")
    assert "assert latency < 5" in suite_test.text


def test_skips_say_not_applicable_not_injected_or_inconclusive(tmp_path: Path) -> None:
    found = cases(parse(junit.to_junit("preflight-gate", gate_rows(tmp_path))))
    messages = {key: only_result(c).message for key, c in found.items() if c.is_skipped}
    assert messages == {
        (WORKLOAD, "accounting"): "not applicable: readiness.items not given",
        (WORKLOAD, "faults.corrupt"): f"fault not injected: {NOT_INJECTED_REASON}",
        ("other", "overhead"): f"inconclusive: {STEAL_REASON} "
                               "(host: steal 61%, harness frozen 2%)",
    }


def test_a_long_reason_is_cut_but_never_the_replay_command() -> None:
    command = "preflight check w --spec s.toml --scale small --faults kill --seed 3 --only x"
    row = Row("w::x", "failed", Status.FAILED, experiment="x", workload="w",
              reason="why " * 5000, replay=command)
    message = junit.message(row)
    assert len(message) < junit.REASON_CHARS_MAX + len(command) + 20
    assert message.endswith(f"[...] — replay: {command}")


def test_pytest_error_and_skip_keep_their_words() -> None:
    rows = [Row("suites/t.py::test_e", "error", Status.FAILED, longrepr="E   OSError: gone"),
            Row("suites/t.py::test_s", "skipped", Status.NOT_APPLICABLE, reason="no promtool")]
    found = cases(parse(junit.to_junit("s", rows)))
    error = only_result(found[("suites.t", "test_e")])
    assert isinstance(error, Error)
    assert error.message == "E OSError: gone — replay: python -m pytest suites/t.py::test_e"
    assert only_result(found[("suites.t", "test_s")]).message == "skipped: no promtool"


def test_control_characters_from_a_job_still_parse() -> None:
    row = Row("w::x", "failed", Status.FAILED, experiment="x\x01", workload="w",
              reason="stderr: \x00\x1b[31mboom\x07", replay="preflight gate --only x")
    (case,) = list(next(iter(parse(junit.to_junit("s", [row])))))
    assert case.name == "x\ufffd"
    assert only_result(case).message == ("stderr: \ufffd\ufffd[31mboom\ufffd — replay: "
                                         "preflight gate --only x")


def test_write_makes_the_folder_and_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "ci" / "out" / "junit.xml"
    rows = [Row("w::a", "passed", Status.PASSED, experiment="a", workload="w")]
    junit.write_rows(path, "preflight-check", rows, time_s=12.25)
    junit.write_rows(path, "preflight-check", rows * 2)  # replaced, not appended
    xml = JUnitXml.fromfile(str(path))
    assert xml.tests == 2
    assert path.read_bytes().startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    assert os.listdir(path.parent) == ["junit.xml"]  # no temp file left beside it
    timed = parse(junit.to_junit("s", rows, time_s=12.25))
    assert timed.time == 12.25 and next(iter(timed)).time == 12.25


def test_a_directory_is_refused_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="is a directory"):
        junit.check_path(tmp_path)
    assert junit.check_path(tmp_path / "new.xml") == tmp_path / "new.xml"


# ------------------------------------------------------------------- preflight check's rows

REPLAY = "preflight check myjob --spec w.toml --scale small --faults kill --seed 0 --only {}"
META = {"workload": "myjob", "spec": "w.toml", "scale": "small", "faults": "kill,corrupt",
        "seed": 0, "ckpt_interval": None}


def check_row(name: str, verdicts: list[CheckVerdict], **history: object) -> CheckRow:
    kind = "corrupt" if name.startswith("corrupt") else "kill"
    attempts = (Attempt(0, False, FAULT_SIGKILL, start_done=0, last_done=5, duration_s=0.5),
                Attempt(1, True, start_done=4, last_done=20, rc=0, duration_s=0.5))
    recorded = FaultHistory(name, kind, 0, {}, attempts=attempts, duration_s=1.25,
                            **history)  # type: ignore[arg-type]
    return CheckRow(FaultExperiment(name, kind, {}), recorded, tuple(verdicts),
                    REPLAY.format(name))


def check_report(errors: tuple[str, ...] = ()) -> CheckReport:
    reference = Reference(rc=0, fingerprint="f00d", verify_rc=0, duration_s=1.0, total=20)
    rows = (
        check_row("kill-time", [CheckVerdict("exact", PASS, "same fingerprint")], injected=True),
        check_row("kill-storm", [CheckVerdict("exact", FAIL, "fingerprint 1 != reference 2"),
                                 CheckVerdict("valid", PASS, "verify 0")], injected=True),
        check_row("corrupt-flip", [CheckVerdict("corruption", FAIL, "accepted damage",
                                                critical=True)], injected=True),
        check_row("kill-write-0", [CheckVerdict("experiment", SKIP, "no write window")],
                  skipped="no write window"),
        check_row("kill-sigterm", [CheckVerdict("injected", SKIP, "inconclusive: the job "
                                                "finished before the signal")], injected=False),
    )
    return CheckReport("myjob", META, reference, rows, 6.5, errors)


def test_check_rows_one_testcase_per_battery_row() -> None:
    report = check_report()
    xml = parse(junit.to_junit("preflight-check", junit_rows(report)))
    assert (xml.tests, xml.failures, xml.skipped) == (5, 2, 2)
    found = cases(xml)
    assert [name for _classname, name in found] == [
        "kill-time", "kill-storm", "corrupt-flip", "kill-write-0", "kill-sigterm"]
    assert {classname for classname, _name in found} == {"myjob"}
    assert found[("myjob", "kill-time")].is_passed
    assert found[("myjob", "kill-time")].time == 1.25
    storm = only_result(found[("myjob", "kill-storm")])
    assert storm.message == ("exact: fingerprint 1 != reference 2 — replay: "
                             + REPLAY.format("kill-storm"))
    flip = only_result(found[("myjob", "corrupt-flip")])
    assert flip.message.startswith("SILENT-CORRUPTION: corruption: accepted damage — replay: ")
    assert only_result(found[("myjob", "kill-write-0")]).message == (
        "not applicable: no write window")
    assert only_result(found[("myjob", "kill-sigterm")]).message == (
        "fault not injected: the job finished before the signal")


def test_a_check_stopped_by_an_error_fails_a_battery_testcase() -> None:
    report = check_report(("the uninterrupted reference run failed (exit 3): boom",))
    found = cases(parse(junit.to_junit("preflight-check", junit_rows(report))))
    battery = only_result(found[("myjob", "battery")])
    assert battery.message == (
        "the uninterrupted reference run failed (exit 3): boom — replay: preflight check "
        "myjob --spec w.toml --scale small --faults kill,corrupt --seed 0")
    assert not report.passed
