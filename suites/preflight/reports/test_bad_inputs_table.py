"""The readiness report's "Bad inputs tried" table and the max_parser_crashes requirement."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from preflight.gate.verdict import validate_ready_for_production
from preflight.reports.readiness import (
    BadInputRow,
    bad_inputs_rows,
    to_html,
    to_markdown,
    write_readiness,
)
from suites.preflight.gate.test_gate_logic import GOOD_VALUES, _report


def _security_report(crashes: int) -> dict[str, Any]:
    report = _report(GOOD_VALUES)
    measurements = [
        {"name": "security.json.inputs", "value": 60},
        {"name": "security.json.refused", "value": 41},
        {"name": "security.json.parser_crashes", "value": 0},
        {"name": "security.ledger.inputs", "value": 30},
        {"name": "security.ledger.refused", "value": 12},
        {"name": "security.ledger.parser_crashes", "value": crashes},
        {"name": "security.json.inputs", "value": 5},  # a second test on the same parser
        {"name": "datagen.inputs", "value": 99},  # not a security measurement
    ]
    report["tests"].append(
        {"nodeid": "suites/security/t.py::t", "outcome": "passed", "measurements": measurements}
    )
    return report


def test_rows_sum_per_parser_and_ignore_other_measurements() -> None:
    rows = bad_inputs_rows(_security_report(crashes=0))
    assert rows == [BadInputRow("json", 65, 41, 0), BadInputRow("ledger", 30, 12, 0)]


def test_table_is_rendered_in_markdown_html_and_json(tmp_path: Path) -> None:
    report = _security_report(crashes=2)
    verdict = validate_ready_for_production(report)
    rows = bad_inputs_rows(report)
    markdown = to_markdown(verdict, {"scale": "small"}, rows)
    assert "## Bad inputs tried" in markdown and "| ledger | 30 | 12 | 2 |" in markdown
    page = to_html(verdict, {}, [], rows)
    assert "<h2>Bad inputs tried</h2>" in page and "<td>ledger</td>" in page
    paths = write_readiness(tmp_path, verdict, {}, [], rows)
    assert json.loads(paths[0].read_text())["bad_inputs"][1]["crashes"] == 2
    assert "Bad inputs tried" not in to_markdown(verdict, {})


def test_a_parser_crash_blocks_launch_and_is_named() -> None:
    assert validate_ready_for_production(_security_report(crashes=0)).ready
    verdict = validate_ready_for_production(_security_report(crashes=1))
    assert not verdict.ready
    failing = [r for r in verdict.results if not r.ok]
    assert [r.id for r in failing] == ["max_parser_crashes"]
    assert "security.ledger.parser_crashes" in [e.name for e in failing[0].evidence]
