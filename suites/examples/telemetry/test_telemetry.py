"""Telemetry: the metrics a job exports, the textfile, the endpoint, and the CLI options.

Waits are bounded polls for an outcome (never a sleep-and-hope), so the tests hold on a
loaded machine; a fake clock drives every timestamp the assertions look at.
"""

from __future__ import annotations

import argparse
import math
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from preflight_examples.telemetry import Telemetry, add_cli_options, names
from prometheus_client.parser import text_string_to_metric_families

from preflight.durable.errors import BadInputError

WAIT_S_MAX = 10.0


def samples(text: str) -> dict[str, tuple[dict[str, str], float]]:
    return {
        s.name: (dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S_MAX
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {WAIT_S_MAX} s: {what}")
        time.sleep(0.01)


class FakeClock:
    def __init__(self, now_s: float = 1_000.0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def prom(tmp_path: Path) -> Path:
    return tmp_path / "job.prom"


@pytest.fixture
def tel(prom: Path, clock: FakeClock) -> Iterator[Telemetry]:
    # A long interval: the test decides when the file is written (flush), not the ticker.
    telemetry = Telemetry(
        "trainer",
        "run-1",
        metrics_file=prom,
        interval_s=300,
        memory_budget_bytes=10**9,
        clock=clock,
    )
    yield telemetry
    telemetry.close()


def test_textfile_carries_every_metric_with_workload_and_run_id_labels(
    tel: Telemetry, prom: Path, clock: FakeClock
) -> None:
    tel.progress(2, 10)
    tel.progress(5, 10, 2.5, 2.0)
    for _ in range(names.LOSS_MEDIAN_MIN_COUNT):
        tel.loss(0.5)
    tel.grad_norm(1.5)
    tel.checkpoint(0.25)
    tel.error("disk full")
    tel.flush()
    got = samples(prom.read_text())
    expected = {
        names.UP: 1,
        names.PROGRESS_DONE: 5,
        names.PROGRESS_PLANNED: 10,
        names.UNITS_DONE_TOTAL: 3,
        names.ETA: 2.0,
        names.LOSS: 0.5,
        names.LOSS_MEDIAN: 0.5,
        names.GRAD_NORM: 1.5,
        names.NONFINITE_TOTAL: 0,
        names.MEMORY_BUDGET: 10**9,
        names.CHECKPOINT_DURATION: 0.25,
        names.CHECKPOINT_LAST_SUCCESS: clock.now_s,
        names.PROGRESS_LAST_ADVANCE: clock.now_s,
        names.LAST_ERROR: clock.now_s,
    }
    for name, value in expected.items():
        labels, actual = got[name]
        assert actual == value, name
        assert labels == {"workload": "trainer", "run_id": "run-1"}, name
    assert got[names.RSS][1] > 0
    labels, _ = got[names.LAST_ERROR_INFO + "_info"]
    assert labels["message"] == "disk full"


def test_loss_median_appears_only_after_enough_losses_and_ignores_non_finite(
    tel: Telemetry, prom: Path
) -> None:
    for value in range(1, names.LOSS_MEDIAN_MIN_COUNT):
        tel.loss(float(value))
    tel.loss(math.nan)
    tel.flush()
    got = samples(prom.read_text())
    assert names.LOSS_MEDIAN not in got  # no baseline yet: the explosion rule cannot fire
    assert math.isnan(got[names.LOSS][1]) and got[names.NONFINITE_TOTAL][1] == 1
    tel.loss(float(names.LOSS_MEDIAN_MIN_COUNT))
    tel.grad_norm(math.inf)
    tel.flush()
    got = samples(prom.read_text())
    assert got[names.LOSS_MEDIAN][1] == 5.5  # median of 1..10, the NaN left out
    assert got[names.NONFINITE_TOTAL][1] == 2


def test_progress_timestamp_moves_only_when_done_changes(
    tel: Telemetry, prom: Path, clock: FakeClock
) -> None:
    tel.progress(3, 10)
    clock.now_s += 50
    tel.progress(3, 10)  # a heartbeat without progress is not progress
    tel.flush()
    assert samples(prom.read_text())[names.PROGRESS_LAST_ADVANCE][1] == clock.now_s - 50
    tel.progress(4, 10)
    tel.flush()
    got = samples(prom.read_text())
    assert got[names.PROGRESS_LAST_ADVANCE][1] == clock.now_s
    assert math.isnan(got[names.ETA][1])  # unknown, not zero


def test_units_done_counts_only_advances_past_the_first_report(
    tel: Telemetry, prom: Path
) -> None:
    tel.progress(500, 1000)  # a resumed job: its first report is where it stands, not work
    tel.progress(510, 1000)
    tel.progress(505, 1000)  # rolled back to a checkpoint: a counter never goes down
    tel.progress(520, 1000)
    tel.flush()
    got = samples(prom.read_text())
    assert got[names.UNITS_DONE_TOTAL][1] == 25  # 10 + 15: rate() of it is the throughput
    assert got[names.PROGRESS_DONE][1] == 520


def test_checkpoint_age_starts_at_start_only_for_jobs_that_checkpoint(
    tmp_path: Path, clock: FakeClock
) -> None:
    for checkpoints in (True, False):
        path = tmp_path / f"c{checkpoints}.prom"
        with Telemetry(
            "j", "r", metrics_file=path, interval_s=300, checkpoints=checkpoints, clock=clock
        ):
            got = samples(path.read_text())
        assert (names.CHECKPOINT_LAST_SUCCESS in got) is checkpoints
        assert names.LAST_ERROR not in got  # "never" is no series, not the epoch


def test_error_text_is_one_bounded_line(tel: Telemetry, prom: Path) -> None:
    tel.error("line one\nline two " + "x" * 1000)
    tel.flush()
    labels, _ = samples(prom.read_text())[names.LAST_ERROR_INFO + "_info"]
    assert labels["message"].startswith("line one line two")
    assert len(labels["message"]) == names.ERROR_TEXT_CHARS_MAX


def test_nonfinite_wakes_the_writer_before_the_interval(tel: Telemetry, prom: Path) -> None:
    assert samples(prom.read_text())[names.NONFINITE_TOTAL][1] == 0
    tel.loss(math.nan)  # the interval is 300 s: only the early write can show this
    wait_until(
        lambda: samples(prom.read_text())[names.NONFINITE_TOTAL][1] == 1,
        "the textfile shows the non-finite value",
    )


def test_ticker_rewrites_the_textfile_and_close_marks_down(tmp_path: Path) -> None:
    path = tmp_path / "t.prom"
    tel = Telemetry("datagen", "r", metrics_file=path, interval_s=0.05)
    tel.progress(7, 9)
    wait_until(lambda: samples(path.read_text())[names.PROGRESS_DONE][1] == 7, "rewrite")
    tel.close()
    tel.close()  # idempotent
    assert samples(path.read_text())[names.UP][1] == 0
    assert tel._ticker is not None and not tel._ticker.is_alive()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.prom"]  # no temp left behind


def test_http_endpoint_serves_metrics_on_loopback_and_stops_on_close() -> None:
    tel = Telemetry("trainer", "r", metrics_port=0)
    url = f"http://127.0.0.1:{tel.port}/metrics"
    try:
        tel.progress(2, 4)
        with urllib.request.urlopen(url, timeout=5) as response:
            got = samples(response.read().decode())
        assert got[names.PROGRESS_DONE] == ({"workload": "trainer", "run_id": "r"}, 2)
        assert tel._server.server_address[0] == "127.0.0.1"
    finally:
        tel.close()
    with pytest.raises((urllib.error.URLError, OSError)):
        urllib.request.urlopen(url, timeout=2)


def test_no_outputs_means_no_thread_no_socket_no_file(tmp_path: Path) -> None:
    before = {t.ident for t in threading.enumerate()}
    with Telemetry("j", "r") as tel:
        tel.progress(1, 2)
        tel.loss(math.nan)
        assert not {t.ident for t in threading.enumerate()} - before
        assert tel.port is None


def test_cli_options_round_trip_and_validate(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_cli_options(parser)
    log = tmp_path / "log.jsonl"
    args = parser.parse_args(
        [
            "--metrics-file",
            str(tmp_path / "m.prom"),
            "--metrics-interval",
            "0.5",
            "--log-json",
            str(log),
            "--memory-budget-bytes",
            "1000",
            "--run-id",
            "abc",
        ]
    )
    with Telemetry.from_args(args, job="datagen") as tel:
        assert (tel.run_id, tel.interval_s) == ("abc", 0.5)
    assert '"msg":"telemetry started"' in log.read_text()
    assert parser.parse_args(["--log-json"]).log_json == "-"  # bare flag: stderr
    assert parser.parse_args([]).metrics_addr == "127.0.0.1"
    bad = [
        ["--metrics-file", str(tmp_path / "m.txt")],
        ["--metrics-file", str(tmp_path / "missing" / "m.prom")],
        ["--metrics-interval", "0"],
        ["--metrics-port", "70000"],
        ["--memory-budget-bytes", "0"],
        ["--run-id", "x" * 100],
    ]
    for argv in bad:
        with pytest.raises(BadInputError):
            Telemetry.from_args(parser.parse_args(argv), job="datagen")


def test_context_manager_reports_the_exception_as_last_error(tmp_path: Path) -> None:
    path = tmp_path / "e.prom"
    with pytest.raises(RuntimeError), Telemetry("j", "r", metrics_file=path, interval_s=300):
        raise RuntimeError("boom")
    got = samples(path.read_text())
    assert got[names.LAST_ERROR_INFO + "_info"][0]["message"] == "RuntimeError: boom"
    assert got[names.UP][1] == 0
