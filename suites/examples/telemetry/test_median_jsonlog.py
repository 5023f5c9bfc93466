"""RunningMedian and the JSON-lines log: pure pieces, tested on made-up inputs."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from preflight_examples.telemetry.jsonlog import JsonLog, clean, make_record, parse_ts, read_records
from preflight_examples.telemetry.median import RunningMedian

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=1, max_size=60), st.integers(1, 12))
def test_running_median_is_the_median_of_the_last_window_values(
    values: list[float], window: int
) -> None:
    median = RunningMedian(window)
    for count, value in enumerate(values, start=1):
        median.add(value)
        expected = statistics.median(values[max(0, count - window) : count])
        assert median.median() == pytest.approx(expected)
        assert len(median) == min(count, window)


def test_running_median_refuses_non_finite_values_and_starts_empty() -> None:
    median = RunningMedian(5)
    assert median.median() is None
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="finite"):
            median.add(bad)
    with pytest.raises(ValueError, match="window"):
        RunningMedian(0)


def test_record_envelope_wins_over_caller_fields_and_non_finite_values_are_named() -> None:
    record = make_record(
        1_700_000_000.25,
        "warning",
        "trainer",
        "r1",
        7,
        "non-finite loss",
        {"msg": "spoof", "run_id": "spoof", "value": math.nan, "big": -math.inf, "n": 3},
    )
    assert record["msg"] == "non-finite loss" and record["run_id"] == "r1"
    assert record["step"] == 7 and record["job"] == "trainer" and record["level"] == "warning"
    assert record["value"] == "nan" and record["big"] == "-inf" and record["n"] == 3
    assert parse_ts(record["ts"]) == pytest.approx(1_700_000_000.25, abs=1e-3)
    json.dumps(record, allow_nan=False)  # strict JSON, as a log shipper wants it
    with pytest.raises(ValueError, match="level"):
        make_record(0.0, "loud", "j", "r", None, "m", {})


def test_clean_bounds_strings_depth_and_unwraps_scalars() -> None:
    class Scalar:
        def item(self) -> float:
            return 2.5

    assert clean("x" * 10_000).__len__() == 4096
    assert clean(Scalar()) == 2.5
    assert clean({"a": [1, math.inf, {"b": (2, 3)}]}) == {"a": [1, "inf", {"b": [2, 3]}]}
    assert isinstance(clean(object()), str)


def test_json_log_writes_one_parseable_object_per_line(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    times = iter([100.0, 101.0, 102.0])
    log = JsonLog(str(path), job="datagen", run_id="abc", clock=lambda: next(times))
    log.log("info", "started")
    log.step = 12
    log.log("error", "shard 3 failed\nTraceback ...", shard=3)
    log.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    records = [json.loads(line) for line in lines]
    assert [r["msg"].split("\n")[0] for r in records] == ["started", "shard 3 failed"]
    assert "step" not in records[0] and records[1]["step"] == 12 and records[1]["shard"] == 3
    assert all(r["run_id"] == "abc" and r["job"] == "datagen" for r in records)


def test_json_log_refuses_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        JsonLog(str(tmp_path / "nope" / "log.jsonl"), job="j", run_id="r")


def test_read_records_skips_lines_that_are_not_json_objects() -> None:
    text = '{"a": 1}\nTraceback (most recent call last):\n[1, 2]\n{"b": 2}\n{"torn": '
    assert read_records(text) == [{"a": 1}, {"b": 2}]
