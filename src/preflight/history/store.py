"""Gate and soak history in SQLite (WAL) with asv-style trend detection.

A regression is flagged when the median of the latest run's values moved against the
metric's good direction by more than ``factor`` AND, where there are enough values, a
Mann-Whitney U test says the shift is unlikely to be noise.

Schema versions (``PRAGMA user_version``): 0 is the original results/metrics schema; 1 adds
the ``baselines`` table (the result chosen per kind by ``preflight report --set-baseline``).
Migrations only add tables, so an older preflight still reads a migrated database.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from scipy.stats import mannwhitneyu

from preflight.durable.errors import BadInputError, DurableError

BUSY_TIMEOUT_S = 30.0
TREND_RUNS_MAX = 20
P_VALUE_MAX = 0.05
FACTOR_DEFAULT = 0.10
MWU_SAMPLES_MIN = 3
HIGHER_IS_BETTER = ("throughput", "rate", "per_s", "ratio", "exact")
HISTORY_ROWS_MAX = 10_000  # results a comparison can name; far more than years of gates
METRICS_PER_RESULT_MAX = 100_000
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    workload TEXT NOT NULL,
    scale TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    ready INTEGER NOT NULL,
    created_at REAL NOT NULL,
    report_path TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
    result_id INTEGER NOT NULL REFERENCES results(id),
    name TEXT NOT NULL,
    value REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_by_name ON metrics(name, result_id);
"""
# Migration N takes user_version N-1 to N; each step is idempotent (IF NOT EXISTS), so a
# crash between the step and the version bump only repeats the step.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS baselines (
        kind TEXT PRIMARY KEY,
        result_id INTEGER NOT NULL REFERENCES results(id),
        set_at REAL NOT NULL
    )
    """,
)


@dataclass(frozen=True)
class ResultRow:
    id: int
    run_id: str
    kind: str
    workload: str
    scale: str
    code_hash: str
    config_hash: str
    ready: bool
    created_at: float
    report_path: str | None


@dataclass(frozen=True)
class Trend:
    metric: str
    latest_median: float
    baseline_median: float
    ratio: float
    p_value: float | None
    higher_is_better: bool
    regression: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def higher_is_better(metric: str) -> bool:
    return any(word in metric for word in HIGHER_IS_BETTER)


def compare(
    metric: str, latest: list[float], baseline: list[float], factor: float = FACTOR_DEFAULT
) -> Trend | None:
    """Pure trend comparison of one metric; None when either side has no values."""
    if not latest or not baseline:
        return None
    new, old = statistics.median(latest), statistics.median(baseline)
    ratio = new / old if old else (1.0 if new == old else float("inf"))
    better_up = higher_is_better(metric)
    worse = ratio < 1 - factor if better_up else ratio > 1 + factor
    p_value = None
    if len(latest) >= MWU_SAMPLES_MIN and len(baseline) >= MWU_SAMPLES_MIN:
        p_value = float(mannwhitneyu(latest, baseline, alternative="two-sided").pvalue)
        worse = worse and p_value < P_VALUE_MAX
    return Trend(metric, new, old, ratio, p_value, better_up, worse)


class History:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise BadInputError(f"history: directory {self.path.parent} does not exist")
        try:
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.DatabaseError as exc:
            raise DurableError(f"{self.path}: cannot open the history database: {exc}") from None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise DurableError(f"{self.path}: not a usable history database: {exc}") from None
        except DurableError:
            self._db.close()  # e.g. a database from a newer preflight
            raise

    def _migrate(self) -> None:
        """Bring the schema to SCHEMA_VERSION; refuse a database from a newer preflight."""
        if self._version() == SCHEMA_VERSION:
            return
        # IMMEDIATE takes the write lock first, so two processes opening an old database
        # at once migrate it once: the second re-reads the version under the lock.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            version = self._version()
            if version > SCHEMA_VERSION:
                raise DurableError(
                    f"{self.path}: history schema version {version} is newer than this "
                    f"preflight's ({SCHEMA_VERSION}); upgrade preflight to read it"
                )
            for step in _MIGRATIONS[version:]:
                self._db.execute(step)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(
        self,
        *,
        run_id: str,
        kind: str,
        workload: str,
        scale: str,
        code_hash: str,
        config_hash: str,
        ready: bool,
        metrics: Iterable[tuple[str, float]],
        report_path: str | None = None,
    ) -> int:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            cursor = self._db.execute(
                "INSERT INTO results (run_id, kind, workload, scale, code_hash, config_hash,"
                " ready, created_at, report_path) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    run_id,
                    kind,
                    workload,
                    scale,
                    code_hash,
                    config_hash,
                    int(ready),
                    time.time(),
                    report_path,
                ),
            )
            result_id = int(cursor.lastrowid)
            self._db.executemany(
                "INSERT INTO metrics (result_id, name, value) VALUES (?,?,?)",
                [(result_id, n, float(v)) for n, v in metrics if v == v],
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return result_id

    def results(self, kind: str | None = None, limit: int = TREND_RUNS_MAX) -> list[ResultRow]:
        query = "SELECT * FROM results"
        args: tuple[Any, ...] = ()
        if kind:
            query += " WHERE kind=?"
            args = (kind,)
        rows = self._db.execute(query + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [ResultRow(*r[:7], bool(r[7]), *r[8:]) for r in rows]

    def find_ready(self, scale: str, code_hash: str, config_hash: str) -> ResultRow | None:
        row = self._db.execute(
            "SELECT * FROM results WHERE kind='gate' AND scale=? AND code_hash=? AND"
            " config_hash=? AND ready=1 ORDER BY id DESC LIMIT 1",
            (scale, code_hash, config_hash),
        ).fetchone()
        return ResultRow(*row[:7], bool(row[7]), *row[8:]) if row else None

    def set_baseline(self, result_id: int) -> ResultRow:
        """Make result ``result_id`` the baseline of its kind (one baseline per kind: gate and
        soak record different measurements under the same names)."""
        row = self._db.execute("SELECT * FROM results WHERE id=?", (result_id,)).fetchone()
        if row is None:
            raise BadInputError(f"{self.path}: no result with id {result_id}")
        chosen = ResultRow(*row[:7], bool(row[7]), *row[8:])
        self._db.execute(
            "INSERT OR REPLACE INTO baselines (kind, result_id, set_at) VALUES (?,?,?)",
            (chosen.kind, chosen.id, time.time()),
        )
        return chosen

    def baselines(self) -> dict[str, int]:
        """kind -> result id of its stored baseline."""
        rows = self._db.execute("SELECT kind, result_id FROM baselines LIMIT 100").fetchall()
        return {str(kind): int(result_id) for kind, result_id in rows}

    def metric_values(self, result_id: int) -> dict[str, list[float]]:
        values: dict[str, list[float]] = {}
        for name, value in self._db.execute(
            "SELECT name, value FROM metrics WHERE result_id=? LIMIT ?",
            (result_id, METRICS_PER_RESULT_MAX),
        ):
            values.setdefault(name, []).append(value)
        return values

    def trend(self, kind: str | None = None, factor: float = FACTOR_DEFAULT) -> list[Trend]:
        """Latest result of ``kind`` against the pooled values of the ones before it."""
        rows = self.results(kind)
        if len(rows) < 2:
            return []
        latest = self.metric_values(rows[0].id)
        baseline: dict[str, list[float]] = {}
        for row in rows[1:]:
            for name, vals in self.metric_values(row.id).items():
                baseline.setdefault(name, []).extend(vals)
        trends = [compare(n, latest[n], baseline.get(n, []), factor) for n in sorted(latest)]
        return [t for t in trends if t is not None]


def trends_to_json(trends: list[Trend]) -> str:
    return json.dumps([t.to_json() for t in trends], indent=1, allow_nan=False)
