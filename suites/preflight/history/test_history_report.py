"""`preflight report` over history.sqlite: schema migration of an existing database, stored
baselines, --compare/--fail-on exit codes, and trend plots (one per measurement, none empty)."""

from __future__ import annotations

import sqlite3

import pytest

from preflight.cli import main as cli_main
from preflight.durable import DurableError
from preflight.history.store import SCHEMA_VERSION, History, ResultRow
from preflight.history.trend import build_series, write_trend

# The schema every database had before baselines existed (user_version 0).
_SCHEMA_V0 = """
CREATE TABLE results (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, kind TEXT NOT NULL,
    workload TEXT NOT NULL, scale TEXT NOT NULL, code_hash TEXT NOT NULL,
    config_hash TEXT NOT NULL, ready INTEGER NOT NULL, created_at REAL NOT NULL,
    report_path TEXT);
CREATE TABLE metrics (result_id INTEGER NOT NULL REFERENCES results(id), name TEXT NOT NULL,
    value REAL NOT NULL);
INSERT INTO results VALUES (1, 'old1', 'gate', 'all', 'small', 'c', 'k', 1, 1.0, NULL);
INSERT INTO metrics VALUES (1, 'datagen.leak_bytes_per_unit', 100.0);
"""


def _add(history: History, run_id: str, metrics: dict[str, float], kind: str = "gate") -> int:
    return history.add(run_id=run_id, kind=kind, workload="all", scale="small", code_hash="c",
                       config_hash="k", ready=True, metrics=list(metrics.items()))


@pytest.fixture
def reports(tmp_path):
    """Three gates: leak 100 -> 105 -> 130 B/unit, ratio 1.0 -> 0.98 -> 0.97, and a
    measurement recorded once (which must not get a plot)."""
    with History(tmp_path / "history.sqlite") as history:
        _add(history, "g1", {"d.leak_bytes_per_unit": 100.0, "d.throughput_ratio": 1.0})
        _add(history, "g2", {"d.leak_bytes_per_unit": 105.0, "d.throughput_ratio": 0.98})
        _add(history, "g3", {"d.leak_bytes_per_unit": 130.0, "d.throughput_ratio": 0.97,
                             "d.once": 1.0})
    return tmp_path


def test_old_database_migrates_and_keeps_its_results(tmp_path):
    path = tmp_path / "history.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(_SCHEMA_V0)
    with History(path) as history:
        assert [r.run_id for r in history.results()] == ["old1"]
        assert history.baselines() == {}
        new_id = _add(history, "new1", {"datagen.leak_bytes_per_unit": 90.0})
        assert history.set_baseline(1).run_id == "old1"
        assert history.baselines() == {"gate": 1}
        assert history.metric_values(new_id) == {"datagen.leak_bytes_per_unit": [90.0]}
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        # An older preflight reads `SELECT *` by position: the results table is unchanged.
        assert [len(r) for r in db.execute("SELECT * FROM results")] == [10, 10]
    with History(path) as history:  # a second open finds it migrated and keeps the baseline
        assert history.baselines() == {"gate": 1}


def test_database_from_a_newer_preflight_is_refused(tmp_path):
    path = tmp_path / "history.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(DurableError, match="newer than this preflight's"):
        History(path)


def test_compare_prints_change_and_fail_on_sets_the_exit_code(reports, capsys):
    base = ["report", "--dir", str(reports)]
    assert cli_main([*base, "--compare", "g1", "latest"]) == 0  # marks, never fails alone
    out = capsys.readouterr().out
    assert "A: gate g1" in out and "B: gate g3" in out
    assert "REGRESSION d.leak_bytes_per_unit: 100 -> 130  (+30, +30.0%)" in out
    assert "same       d.throughput_ratio: 1 -> 0.97  (-0.03, -3.0%)" in out
    assert "new        d.once" in out
    assert cli_main([*base, "--compare", "g1", "g3", "--fail-on", "leak_bytes_per_unit:+25%"]) == 1
    assert "FAIL --fail-on 'leak_bytes_per_unit:+25%'" in capsys.readouterr().out
    assert cli_main([*base, "--compare", "g1", "g3", "--fail-on", "leak_bytes_per_unit:+35%",
                     "--fail-on", "throughput_ratio:-5%"]) == 0
    assert "all 2 threshold(s) hold" in capsys.readouterr().out


def test_baseline_stored_then_overridden_per_call(reports, capsys):
    base = ["report", "--dir", str(reports)]
    # Without a baseline the previous result is the baseline: 105 -> 130 is +23.8%.
    assert cli_main([*base, "--fail-on", "leak_bytes_per_unit:+25%"]) == 0
    assert "previous result (no baseline set)" in capsys.readouterr().out
    assert cli_main([*base, "--set-baseline", "g1"]) == 0
    assert "baseline for gate results: g1" in capsys.readouterr().out
    assert cli_main([*base, "--fail-on", "leak_bytes_per_unit:+25%"]) == 1  # +30% from g1
    assert "A: gate g1 (stored baseline" in capsys.readouterr().out
    assert cli_main([*base, "--baseline", "g2", "--fail-on", "leak_bytes_per_unit:+25%"]) == 0
    assert cli_main([*base, "--compare", "baseline", "latest"]) == 0
    assert "A: gate g1" in capsys.readouterr().out  # --baseline was for that call only


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--fail-on", "leak_bytes_per_unit:+ten%"], "--fail-on 'leak_bytes_per_unit:+ten%'"),
        (["--fail-on", "throughput_ratio:+5%"], "so a regression is a drop"),
        (["--fail-on", "leek_bytes:+5%"], "no measurement named leek_bytes"),
        (["--compare", "g1", "nope"], "run 'nope' is not in the history"),
        (["--set-baseline", "nope"], "run 'nope' is not in the history"),
        (["--baseline", "latest"], "--baseline must name a run id"),
    ],
)
def test_bad_history_input_exits_2_naming_it(reports, capsys, argv, message):
    assert cli_main(["report", "--dir", str(reports), *argv]) == 2
    assert message in capsys.readouterr().err


def test_no_or_unusable_history_is_bad_input(tmp_path, capsys):
    argv = ["report", "--dir", str(tmp_path), "--compare", "latest", "baseline"]
    assert cli_main(argv) == 2
    assert "history.sqlite does not exist" in capsys.readouterr().err
    (tmp_path / "history.sqlite").write_bytes(b"not sqlite " * 200)
    assert cli_main(argv) == 2
    assert "not a usable history database" in capsys.readouterr().err


def test_series_skip_lone_points_and_locate_the_baseline():
    rows = [ResultRow(i, f"g{i}", "gate", "all", "small", "c", "k", True, float(i), None)
            for i in (3, 2, 1)]
    values = {1: {"a": [1.0, 3.0]}, 2: {"a": [4.0]}, 3: {"a": [5.0], "b": [1.0]}}
    series, skipped = build_series("gate", rows, values, rows[1], values[2])
    assert skipped == ["b"]
    (only,) = series
    assert [p.value for p in only.points] == [2.0, 4.0, 5.0]  # oldest first, medians
    assert (only.baseline_run, only.baseline_value, only.baseline_index) == ("g2", 4.0, 1)


def test_trend_writes_one_png_per_measurement_with_an_index(reports, capsys):
    stale = reports / "trend" / "gate-gone-00000000.png"
    stale.parent.mkdir()
    stale.write_bytes(b"old")
    # 100 -> 130 B/unit against the pooled earlier results: --trend flags it (exit 1).
    assert cli_main(["report", "--dir", str(reports), "--trend", "--set-baseline", "g1"]) == 1
    assert "trend plots:" in capsys.readouterr().out
    pngs = sorted(p.name for p in (reports / "trend").glob("*.png"))
    assert len(pngs) == 2 and not stale.exists()
    assert all((reports / "trend" / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)
    index_md = (reports / "trend" / "index.md").read_text()
    assert "| d.leak_bytes_per_unit | 3 | 100 | 130 | +30.0% | lower |" in index_md
    assert "Not plotted (fewer than 2 points" in index_md and "d.once" in index_md
    index_html = (reports / "trend" / "index.html").read_text()
    assert all(f"<img src='{p}'" in index_html for p in pngs)


def test_write_trend_with_nothing_to_plot_writes_no_png(tmp_path):
    write_trend(tmp_path, [], {"gate": ["lonely"]})
    assert not list((tmp_path / "trend").glob("*.png"))
    assert "lonely" in (tmp_path / "trend" / "index.md").read_text()
