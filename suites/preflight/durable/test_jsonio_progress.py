"""Bounded strict JSON reading and the PROGRESS.json contract."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from preflight.durable import (
    BadInputError,
    loads_strict,
    make_progress,
    read_progress,
    write_progress,
)
from preflight.durable.jsonio import read_json


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("[" * 100 + "]" * 100, "deeper"),
        ('{"a": NaN}', "non-finite"),
        ('{"a": Infinity}', "non-finite"),
        ('{"a": 1e999}', "overflows"),
        ('{"a": ' + "9" * 5000 + "}", "too large"),
        ("{", "invalid JSON"),
        (b"\xff\xfe", "UTF-8"),
    ],
)
def test_strict_refusals_name_the_source(text, fragment):
    with pytest.raises(BadInputError, match=fragment) as info:
        loads_strict(text, "some/file.json")
    assert "some/file.json" in str(info.value)


def test_brackets_inside_strings_do_not_count():
    assert loads_strict('{"a": "' + "[" * 200 + '"}', "x") == {"a": "[" * 200}


def test_size_limit_checked_before_reading(tmp_path):
    path = tmp_path / "big.json"
    path.write_text("[" + "1," * 1000 + "1]")
    with pytest.raises(BadInputError, match="exceeds the limit"):
        read_json(path, bytes_max=100)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_a_value_or_bad_input(data):
    try:
        loads_strict(data, "fuzz")
    except BadInputError:
        pass


def test_progress_round_trip_and_eta(tmp_path):
    info = make_progress(25, 100, "samples", 5.0)
    assert info.eta_s == 15.0
    write_progress(tmp_path / "P.json", info)
    assert read_progress(tmp_path / "P.json") == info
    assert make_progress(100, 100, "samples", 0.0, "done").eta_s == 0.0


@pytest.mark.parametrize(
    "content, fragment",
    [
        ('{"done": 5, "total": 3, "updated_at": "t"}', "done <= total"),
        ('{"done": true, "total": 3, "updated_at": "t"}', "'done' must be int"),
        ('{"total": 3, "updated_at": "t"}', "missing field 'done'"),
        ('{"done": 1, "total": 3, "updated_at": "t", "state": "weird"}', "'state'"),
        ("[]", "expected a JSON object"),
    ],
)
def test_bad_progress_files(tmp_path, content, fragment):
    (tmp_path / "P.json").write_text(content)
    with pytest.raises(BadInputError, match=fragment):
        read_progress(tmp_path / "P.json")


def test_make_progress_validates():
    with pytest.raises(BadInputError):
        make_progress(5, 3, "x", 1.0)
    with pytest.raises(BadInputError):
        make_progress(1, 3, "x", 1.0, state="bogus")


def _naive_depth_exceeds(text: str, depth_max: int) -> bool:
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > depth_max:
                return True
        elif ch in "]}":
            depth -= 1
    return False


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='[]{}"\\a,', max_size=60), st.integers(0, 6))
def test_fast_depth_scan_matches_the_character_scan(text, depth_max):
    from preflight.durable.jsonio import _depth_exceeds

    assert _depth_exceeds(text, depth_max) == _naive_depth_exceeds(text, depth_max)
