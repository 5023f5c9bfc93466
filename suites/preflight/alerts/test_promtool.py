"""The shipped alert rules and every job's exposition, judged by Prometheus's own promtool:
`promtool check rules` on alerts/preflight.rules.yml, `promtool test rules` on the unit tests
in alerts/tests (the PromQL itself fires on each condition, with its `for:`, labels and
annotations), and `promtool check metrics` on what datagen, trainer and serve export."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from suites.preflight.helpers import REPO
from suites.promtool import check_metrics, run_promtool

RULES_FILE = REPO / "alerts" / "preflight.rules.yml"
RULE_TESTS = sorted((REPO / "alerts" / "tests").glob("*.yml"))
RUNBOOKS = REPO / "docs" / "runbooks.md"
JOB_TIMEOUT_S = 120.0


def test_shipped_rules_pass_promtool_check_rules() -> None:
    done = run_promtool(["check", "rules", str(RULES_FILE)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 5 rules found" in done.stdout


def test_promtool_rule_unit_tests_pass() -> None:
    assert RULE_TESTS, "alerts/tests/*.yml: no promtool rule tests shipped"
    done = run_promtool(["test", "rules", *map(str, RULE_TESTS)], cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_rule_has_for_and_a_runbook_section() -> None:
    yaml = pytest.importorskip("yaml")
    (group,) = yaml.safe_load(RULES_FILE.read_text())["groups"]
    headings = {
        line.removeprefix("## ").strip().lower()
        for line in RUNBOOKS.read_text().splitlines()
        if line.startswith("## ")
    }
    for rule in group["rules"]:
        assert rule.get("for"), rule["alert"]
        url = rule["annotations"]["runbook_url"]
        assert url.startswith("docs/runbooks.md#"), url
        assert url.partition("#")[2] in headings, f"{url}: no such heading in {RUNBOOKS.name}"


def test_telemetry_exposition_is_promtool_clean() -> None:
    from preflight_examples.telemetry import Telemetry, names
    from prometheus_client import generate_latest

    # Every series populated, the lazily created ones included.
    with Telemetry("trainer", "r1", memory_budget_bytes=10**9) as tel:
        tel.progress(0, 10)
        tel.progress(4, 10, 2.0, 3.0)
        for value in range(names.LOSS_MEDIAN_MIN_COUNT):
            tel.loss(float(value))
        tel.loss(math.nan)
        tel.grad_norm(1.0)
        tel.checkpoint(0.5)
        tel.error("disk full")
        text = generate_latest(tel.registry)
    assert check_metrics(text) == ""


@pytest.mark.parametrize("use_prometheus_client", [True, False])
def test_serve_exposition_is_promtool_clean(use_prometheus_client: bool) -> None:
    from preflight_examples.serving.serve_metrics import ServeMetrics

    metrics = ServeMetrics(use_prometheus_client)
    metrics.request("predict", 200, 0.004)
    metrics.request("predict", 413, 0.001)
    metrics.reload("ok")
    text = metrics.render()[0]
    assert check_metrics(text) == ""
    if use_prometheus_client:
        assert b"process_resident_memory_bytes" in text and b"process_start_time_seconds" in text


def _run(argv: list[str], cwd: Path) -> None:
    done = subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, timeout=JOB_TIMEOUT_S,
        cwd=cwd, check=False,
    )
    assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stderr[-2000:]}"


@pytest.mark.long  # drives real jobs for seconds: make test-long (CI runs it)
def test_datagen_and_trainer_textfiles_are_promtool_clean(tmp_path: Path) -> None:
    """Real runs, their --metrics-file as the textfile collector would read it."""
    data, datagen_prom, trainer_prom = tmp_path / "data", tmp_path / "d.prom", tmp_path / "t.prom"
    _run(["-m", "preflight_examples.datagen.cli", "generate", "--out", str(data), "--samples", "8",
          "--frames", "4", "--size", "8", "--shard-size", "4", "--workers", "1",
          "--metrics-file", str(datagen_prom)], tmp_path)
    _run(["-m", "preflight_examples.trainer.cli", "fit", "--data", str(data),
          "--out", str(tmp_path / "run"),
          "--steps", "3", "--batch-size", "2", "--channels", "4", "--depth", "1",
          "--ckpt-every", "2", "--metrics-file", str(trainer_prom)], tmp_path)
    for path in (datagen_prom, trainer_prom):
        text = path.read_bytes()
        assert b"preflight_units_done_total{" in text, path.name
        assert check_metrics(text) == "", path.name
