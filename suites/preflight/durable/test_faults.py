"""Fault point parsing and firing."""

from __future__ import annotations

import pytest

from preflight.durable import BadInputError, faults
from preflight.durable.faults import parse_faults


def test_parse_full_syntax():
    rules = parse_faults("a.b:kill@3, c:raise,d:sleep=0.5@2,e:nan")
    assert rules["a.b"].action == "kill" and rules["a.b"].nth_hit == 3
    assert rules["c"].nth_hit == 1
    assert rules["d"].sleep_s == 0.5 and rules["d"].nth_hit == 2
    assert rules["e"].action == "nan"


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("nocolon", "expected name:action"),
        ("a:explode", "unknown action"),
        ("a:kill@0", "bad hit count"),
        ("a:kill@x", "bad hit count"),
        ("a:sleep=abc", "sleep needs seconds"),
        ("a:sleep=9999", "sleep must be"),
        ("a b:kill", "bad entry"),
    ],
)
def test_parse_errors_name_the_entry(spec, fragment):
    with pytest.raises(BadInputError, match=fragment):
        parse_faults(spec)


def test_fires_on_nth_hit_only(monkeypatch):
    monkeypatch.setenv("PREFLIGHT_FAULTS", "p.x:raise@2")
    assert faults.point("p.x") is False
    with pytest.raises(OSError, match="injected fault at p.x"):
        faults.point("p.x")
    assert faults.point("p.x") is False


def test_memoryerror_and_nan(monkeypatch):
    monkeypatch.setenv("PREFLIGHT_FAULTS", "m:memoryerror,n:nan")
    with pytest.raises(MemoryError):
        faults.point("m")
    assert faults.point("n") is True
    assert faults.point("other") is False


def test_unarmed_is_noop(monkeypatch):
    monkeypatch.delenv("PREFLIGHT_FAULTS", raising=False)
    assert faults.point("anything") is False
