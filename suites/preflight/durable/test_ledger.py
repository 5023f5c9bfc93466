"""Ledger: idempotent records, pending items after a kill, retry-errors, drift, concurrency."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from preflight.durable import BadInputError, ConfigDriftError, DurableError, Ledger

from .conftest import CHILD_TIMEOUT_S, run_child

CONFIG = {"samples": 10, "seed": 42}
ITEMS = [f"item-{i}" for i in range(10)]


@pytest.fixture
def ledger(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite") as db:
        db.open_run("run", CONFIG, total=len(ITEMS))
        yield db


def test_record_is_idempotent(ledger):
    assert ledger.record("run", "item-1", checksum="c1") is True
    assert ledger.record("run", "item-1", checksum="c1") is False
    assert ledger.items("run")["item-1"].attempts == 1
    assert ledger.progress("run").done == 1


def test_pending_and_retry_errors(ledger):
    ledger.record_many(
        "run",
        [
            ("item-0", "ok", "c", None),
            ("item-1", "error", None, "boom"),
            ("item-2", "ok", "c", None),
        ],
    )
    assert ledger.pending("run", ITEMS) == [
        i for i in ITEMS if i not in ("item-0", "item-1", "item-2")
    ]
    assert ledger.pending("run", ITEMS, retry_errors=True) == ["item-1"]
    assert ledger.record("run", "item-1", checksum="c") is True
    assert ledger.items("run")["item-1"].attempts == 2
    assert ledger.pending("run", ITEMS, retry_errors=True) == []
    progress = ledger.progress("run")
    assert (progress.done, progress.errors, progress.total) == (3, 0, 10)


def test_invalidate_and_forget(ledger):
    ledger.record("run", "item-3")
    ledger.invalidate("run", "item-3", "checksum failed")
    assert ledger.pending("run", ITEMS, retry_errors=True) == ["item-3"]
    ledger.forget("run", "item-3")
    assert "item-3" in ledger.pending("run", ITEMS)


def test_config_drift_names_parameters(tmp_path, ledger):
    with Ledger(tmp_path / "ledger.sqlite") as again:
        with pytest.raises(ConfigDriftError, match="samples"):
            again.open_run("run", {"samples": 11, "seed": 42}, total=11)
        assert again.open_run("run", CONFIG, total=10).resumed is True
        fresh = again.open_run("run", {"samples": 11, "seed": 42}, total=11, new=True)
        assert fresh.resumed is False
        assert again.items("run") == {}


def test_bad_arguments(ledger):
    with pytest.raises(BadInputError, match="ok|error"):
        ledger.record("run", "x", status="maybe")
    with pytest.raises(BadInputError, match="total"):
        ledger.open_run("other", {}, total=-1)


def test_not_a_database(tmp_path):
    (tmp_path / "junk.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DurableError, match="junk.sqlite"):
        Ledger(tmp_path / "junk.sqlite")


RECORD_CODE = """
import sys
from preflight.durable import Ledger
db = Ledger(sys.argv[1])
db.open_run("run", {"samples": 10, "seed": 42}, total=10)
for i in range(int(sys.argv[2]), int(sys.argv[3])):
    db.record("run", f"item-{i}", checksum="c")
"""


def test_kill_before_commit_loses_only_the_uncommitted_item(tmp_path):
    path = tmp_path / "ledger.sqlite"
    # The 4th commit is killed: items 0..2 are committed, item 3 must be pending.
    code = RECORD_CODE.replace("sys.argv[1]", repr(str(path))).replace(
        "int(sys.argv[2]), int(sys.argv[3])", "0, 10"
    )
    # open_run is the first transaction, so the 5th commit is the 4th item.
    result = run_child(code, faults="ledger.before_commit:kill@5")
    assert result.returncode == -signal.SIGKILL
    with Ledger(path) as db:
        db.open_run("run", CONFIG, total=10)
        assert db.pending("run", ITEMS) == ITEMS[3:]


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "ledger.sqlite"
    with Ledger(path) as db:
        db.open_run("run", CONFIG, total=10)
    spans = [(0, 5), (5, 10), (0, 10)]  # overlapping third writer: duplicates are skipped
    procs = [
        subprocess.Popen([sys.executable, "-c", RECORD_CODE, str(path), str(a), str(b)])
        for a, b in spans
    ]
    for proc in procs:
        assert proc.wait(timeout=CHILD_TIMEOUT_S) == 0
    with Ledger(path) as db:
        items = db.items("run")
        assert sorted(items) == sorted(ITEMS)
        assert all(rec.attempts == 1 and rec.status == "ok" for rec in items.values())
        assert db.progress("run").done == 10
