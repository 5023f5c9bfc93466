"""Scrape parsing, the Watcher, fault-trace bracketing and injection times, driven by hand
(poll_once and a fake clock), so nothing here depends on how fast the machine is."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from preflight.alerts import (
    FileSource,
    HttpSource,
    Injection,
    TraceWatch,
    Watcher,
    detection_latency_s,
    injection_from_log,
    parse_exposition,
)
from preflight.alerts import rules as r
from preflight.alerts.evaluate import Alert
from preflight.alerts.experiment import (
    AlertAttempt,
    Detection,
    Plant,
    attempt_measurements,
    escalation,
    judge,
    record_attempt,
)
from preflight.alerts.latency import read_log_records, summarize
from preflight.alerts.snapshot import ExpositionError

TH = r.PROFILES["small"]
TEXT = """# HELP preflight_up up
# TYPE preflight_up gauge
preflight_up{workload="trainer",run_id="r1"} 1.0
# TYPE preflight_loss gauge
preflight_loss{workload="trainer",run_id="r1"} NaN
# TYPE preflight_nonfinite counter
preflight_nonfinite_total{workload="trainer",run_id="r1"} 3.0
"""


class FakeClock:
    def __init__(self, now_s: float = 5_000.0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def test_parse_exposition_reads_values_and_identity() -> None:
    snap = parse_exposition(TEXT, 12.5)
    assert snap.t_s == 12.5 and snap.get(r.UP) == 1.0 and snap.get(r.NONFINITE_TOTAL) == 3.0
    assert math.isnan(snap.get(r.LOSS) or 0.0)
    assert dict(snap.labels) == {"workload": "trainer", "run_id": "r1"}


@pytest.mark.parametrize(
    "text",
    [
        TEXT + 'preflight_up{workload="datagen",run_id="r2"} 1.0\n',  # two targets in one file
        "preflight_up{job= 1.0\n",
        "this is not an exposition\n",
    ],
)
def test_parse_exposition_refuses_what_is_not_one_target(text: str) -> None:
    with pytest.raises(ExpositionError):
        parse_exposition(text, 0.0)


def write(path: Path, **values: float) -> None:
    path.write_text("".join(f'{k}{{workload="j",run_id="r"}} {v}\n' for k, v in values.items()))


def test_watcher_records_scrapes_and_fires_rules_live(tmp_path: Path) -> None:
    prom = tmp_path / "m.prom"
    clock = FakeClock()
    watcher = Watcher(FileSource(prom), TH, clock=clock)
    assert watcher.poll_once() == []  # no file yet: nothing recorded
    base = {r.UP: 1, r.RSS: 1e8, r.MEMORY_BUDGET: 1e9}
    write(prom, **base)
    assert watcher.poll_once() == []
    clock.now_s += 0.1
    prom.write_text("garbage {\n")
    assert watcher.poll_once() == []
    clock.now_s += 0.1
    write(prom, **{**base, r.RSS: 0.95e9})
    (alert,) = watcher.poll_once()
    assert (alert.rule, alert.t_s, alert.index) == ("memory", clock.now_s, 1)
    assert watcher.wait_for(["memory"], timeout_s=0.0)
    assert not watcher.wait_for(["stall"], timeout_s=0.01)
    result = watcher.result()
    assert len(result.history) == 2 and result.parse_errors == 1
    assert result.watched_s == pytest.approx(0.2)
    assert result.errors and "m.prom" in result.errors[0]


def test_watcher_stops_recording_at_its_bound_and_says_so(tmp_path: Path) -> None:
    prom = tmp_path / "m.prom"
    write(prom, **{r.UP: 1})
    clock = FakeClock()
    watcher = Watcher(FileSource(prom), TH, snapshots_max=3, clock=clock)
    for _ in range(5):
        clock.now_s += 1
        watcher.poll_once()
    result = watcher.result()
    assert len(result.history) == 3
    assert any("snapshots_max=3" in e for e in result.errors)


def test_watcher_thread_scrapes_an_http_endpoint(tmp_path: Path) -> None:
    from preflight_examples.telemetry import Telemetry

    with Telemetry("trainer", "r", metrics_port=0, memory_budget_bytes=1) as tel:
        tel.progress(1, 2)
        watcher = Watcher(HttpSource(f"http://127.0.0.1:{tel.port}/metrics"), TH, poll_s=0.01)
        with watcher:
            # The job's RSS is far above 0.9 x a 1-byte budget: the memory rule must fire.
            assert watcher.wait_for(["memory"], timeout_s=10.0)
    result = watcher.result()
    assert result.history[0].get(r.DONE) == 1.0 and result.errors == ()


def test_http_source_returns_none_when_nothing_listens() -> None:
    assert HttpSource("http://127.0.0.1:9/metrics", timeout_s=0.5).read() is None


def test_trace_watch_brackets_the_nth_hit_between_two_polls(tmp_path: Path) -> None:
    trace = tmp_path / "faults.trace"
    watch = TraceWatch(trace, "job.loss", nth=3)
    watch.arm(10.0)
    watch.poll(10.5)  # no file yet
    trace.write_text("job.loss\natomic.before_write\njob.loss\n")
    watch.poll(11.0)
    assert watch.hits == 2 and watch.injected_at_s is None
    with trace.open("a") as handle:
        handle.write("job.data\njob.lo")  # a torn last line is not counted ...
    watch.poll(11.5)
    assert watch.hits == 2
    with trace.open("a") as handle:
        handle.write("ss\n")  # ... until it is whole
    watch.poll(12.0)
    assert (watch.hits, watch.injected_at_s, watch.uncertainty_s) == (3, 11.5, 0.5)
    with pytest.raises(ValueError):
        TraceWatch(trace, "job.loss", nth=0)


def test_injection_time_from_the_job_log(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text(
        '{"ts":"2024-01-01T00:00:00.000+00:00","msg":"progress"}\n'
        "Traceback (most recent call last):\n"
        '{"ts":"2024-01-01T00:00:01.250+00:00","msg":"fault injected","fault":"memory"}\n'
        '{"ts":"2024-01-01T00:00:02.000+00:00","msg":"fault injected","fault":"memory"}\n'
    )
    records = read_log_records(log)
    injection = injection_from_log(records, "memory")
    assert injection is not None and injection.how == "log:memory"
    assert injection.t_s == pytest.approx(1704067201.25)
    assert injection_from_log(records, "nan") is None
    assert read_log_records(tmp_path / "missing.jsonl") == []


def test_latency_and_judgement_are_pure_over_the_record() -> None:
    injection = Injection(100.0, "log:memory")
    alert = Alert("memory", 100.4, 7)
    assert detection_latency_s(injection, alert) == pytest.approx(0.4)
    assert detection_latency_s(None, alert) is None and detection_latency_s(injection, None) is None
    assert summarize([3.0, 1.0, 2.0]) == {"n": 3, "median_s": 2.0, "max_s": 3.0, "min_s": 1.0}
    assert summarize([])["median_s"] is None

    class Recorded:
        history = ()
        errors = ()
        watched_s = 5.0

        def __init__(self, fired: dict[str, Alert]) -> None:
            self.fired = fired

    class FakeRun:
        returncode = 0

        def describe(self) -> str:
            return "fake"

    plant = Plant("memory", "memory", log_fault="memory")
    good: Detection = judge(plant, Recorded({"memory": alert}), injection, FakeRun())  # type: ignore[arg-type]
    assert good.ok and good.latency_s == pytest.approx(0.4)
    extra = judge(plant, Recorded({"memory": alert, "stall": alert}), injection, FakeRun())  # type: ignore[arg-type]
    assert not extra.ok and extra.unexpected == ["stall"]
    early = judge(plant, Recorded({"memory": Alert("memory", 99.0, 1)}), injection, FakeRun())  # type: ignore[arg-type]
    assert not early.ok  # fired before the injection: a false alarm, not a fast detector
    missed = judge(plant, Recorded({}), injection, FakeRun())  # type: ignore[arg-type]
    assert not missed.ok and missed.latency_s is None
    clean = judge(Plant("clean", None), Recorded({"stall": alert}), None, FakeRun())  # type: ignore[arg-type]
    assert not clean.ok
    with pytest.raises(ValueError, match="exactly one"):
        Plant("bad", "memory")


def _detection(plant: Plant, latency_s: float | None, fired: tuple[str, ...] = ()) -> Detection:
    alerts = {rule: Alert(rule, 100.0, 1) for rule in fired}
    return Detection(plant, alerts, Injection(99.0, "log:x"), latency_s, 9.0, 40, (), 0, "fake")


def test_an_attempt_on_a_starved_machine_reports_latency_at_the_profiles_own_thresholds() -> None:
    stall = Plant("stall", "stall", log_fault="stall")
    attempt = AlertAttempt(
        [_detection(Plant("clean", None), None), _detection(stall, 6.0, ("stall",))],
        r.PROFILES["small"].dilated(3.0),
        3.0,
        0.3,
    )
    assert attempt.ok and attempt.latency_s(attempt.detections[1]) == pytest.approx(2.0)
    rows = {name: (value, threshold, ok) for name, value, _, threshold, ok
            in attempt_measurements(attempt, "datagen.alerts", 5.0)}
    assert rows == {
        "datagen.alerts.stall.detection_latency_s": (2.0, 5.0, True),
        "datagen.alerts.stall.wall_latency_s": (6.0, None, None),
        "datagen.alerts.host_dilation": (3.0, None, None),
        "datagen.alerts.attempt": (1, None, None),
        "datagen.alerts.host_cpu_share": (0.3, None, None),
    }
    slow = AlertAttempt([_detection(stall, 6.0, ("stall",))], r.PROFILES["small"], 1.0, 0.99)
    assert ("datagen.alerts.stall.detection_latency_s", 6.0, "s", 5.0, False) in \
        attempt_measurements(slow, "datagen.alerts", 5.0)

    recorded: list[tuple[str, object]] = []

    class Record:
        def __call__(self, name: str, value: object, **_: object) -> None:
            recorded.append((name, value))

        def verdict(self, name: str, verdict: Detection) -> None:
            recorded.append((name, verdict.ok))

    noisy = AlertAttempt([_detection(Plant("clean", None), None, ("stall",))], r.PROFILES["small"],
                    1.0, None)
    assert record_attempt(Record(), "alerts", noisy, 5.0) == [
        "clean: unexpected alert(s) ['stall'] on plant 'clean'"]
    assert ("alerts.clean", False) in recorded and ("alerts.host_dilation", 1.0) in recorded


def test_each_retry_on_a_starved_machine_stretches_at_least_twice_as_far() -> None:
    assert [escalation(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 4.0]
    with pytest.raises(AssertionError):
        escalation(0)
