"""Resumable work ledger in SQLite (WAL): which items of a run are done, failed or pending.

Items are recorded idempotently and committed per item or per batch, never only at the end,
so a killed run resumes with exactly the missing items. Re-opening a run with a different
configuration is refused as config drift.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from preflight.durable import faults
from preflight.durable.errors import BadInputError, ConfigDriftError, DurableError
from preflight.durable.manifest import config_hash
from preflight.durable.paths import refuse_symlink

BUSY_TIMEOUT_S = 30.0
ERROR_TEXT_CHARS_MAX = 2000
ITEM_STATUSES = ("ok", "error")
RUN_STATUSES = ("running", "done", "failed", "stopped")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    input_checksums TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL,
    started_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    eta_s REAL
);
CREATE TABLE IF NOT EXISTS items (
    run_id TEXT NOT NULL REFERENCES runs(id),
    item_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'error')),
    checksum TEXT,
    attempts INTEGER NOT NULL DEFAULT 1,
    error TEXT,
    updated_at REAL NOT NULL,
    UNIQUE (run_id, item_id)
);
"""


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    config: dict[str, Any]
    config_hash: str
    status: str
    total: int
    resumed: bool


@dataclass(frozen=True)
class ItemRecord:
    item_id: str
    status: str
    checksum: str | None
    attempts: int
    error: str | None


@dataclass(frozen=True)
class Progress:
    done: int
    errors: int
    total: int
    rate_per_s: float
    eta_s: float | None


def read_checksums(path: str | Path, run_id: str) -> dict[str, str | None] | None:
    """``{item_id: checksum}`` of the ok items of ``run_id``, read-only (``verify`` must not
    write); None when the file holds no such run. DurableError naming a damaged file."""
    refuse_symlink(path, "ledger database")
    uri = f"file:{urllib.parse.quote(str(Path(path).absolute()))}?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise DurableError(f"{path}: cannot open the ledger read-only: {exc}") from None
    try:
        if db.execute("SELECT 1 FROM runs WHERE id=?", (run_id,)).fetchone() is None:
            return None
        rows = db.execute(
            "SELECT item_id, checksum FROM items WHERE run_id=? AND status='ok'", (run_id,)
        ).fetchall()
    except (sqlite3.Error, ValueError) as exc:
        raise DurableError(f"{path}: ledger database error: {exc}") from None
    finally:
        db.close()
    return {str(item): (str(sum_) if sum_ is not None else None) for item, sum_ in rows}


def differing_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Names of the top-level parameters whose values differ (pure)."""
    keys = sorted(set(old) | set(new))
    return [k for k in keys if old.get(k, "<absent>") != new.get(k, "<absent>")]


class Ledger:
    """One SQLite file; safe for concurrent writers from several processes."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise BadInputError(f"Ledger: directory {self.path.parent} does not exist")
        # SQLite follows symlinks: a planted link would have it write into another database.
        for suffix in ("", "-wal", "-shm", "-journal"):
            refuse_symlink(f"{self.path}{suffix}", "ledger database")
        try:
            self._db = sqlite3.connect(
                self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed item survives power loss, not only a process kill.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, ValueError) as exc:  # ValueError: undecodable schema text
            with contextlib.suppress(AttributeError, sqlite3.Error):
                self._db.close()
            raise DurableError(f"{self.path}: not a usable ledger database: {exc}") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _sqlite_errors(self) -> Iterator[None]:
        """A damaged database file (malformed pages, mangled rows) is a DurableError naming
        the file, never a bare sqlite3 or JSON exception."""
        try:
            yield
        except sqlite3.Error as exc:
            raise DurableError(f"{self.path}: ledger database error: {exc}") from None
        except (ValueError, TypeError) as exc:
            if isinstance(exc, DurableError):
                raise
            raise DurableError(f"{self.path}: ledger holds an unreadable row: {exc}") from None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._sqlite_errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                faults.point("ledger.before_commit")
                self._db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # keep the original error
                    self._db.execute("ROLLBACK")
                raise
        faults.point("ledger.after_commit")

    def open_run(
        self,
        run_id: str,
        config: dict[str, Any],
        total: int,
        *,
        input_checksums: dict[str, str] | None = None,
        new: bool = False,
    ) -> RunRecord:
        """Create the run, or resume it when its configuration is unchanged."""
        if not run_id or not isinstance(run_id, str):
            raise BadInputError(f"{self.path}: run id must be a non-empty string")
        if not isinstance(total, int) or total < 0:
            raise BadInputError(f"{self.path}: total must be a non-negative int, got {total!r}")
        digest = config_hash(config)
        now = time.time()
        with self._transaction() as db:
            row = db.execute(
                "SELECT config, config_hash FROM runs WHERE id=?", (run_id,)
            ).fetchone()
            if row is not None and new:
                db.execute("DELETE FROM items WHERE run_id=?", (run_id,))
                db.execute("DELETE FROM runs WHERE id=?", (run_id,))
                row = None
            if row is not None:
                if row[1] != digest:
                    old = json.loads(row[0])
                    raise ConfigDriftError(str(self.path), differing_keys(old, config))
                db.execute(
                    "UPDATE runs SET status='running', updated_at=? WHERE id=?", (now, run_id)
                )
                return RunRecord(run_id, config, digest, "running", total, resumed=True)
            db.execute(
                "INSERT INTO runs (id, config, config_hash, input_checksums, status, total,"
                " started_at, updated_at) VALUES (?,?,?,?,'running',?,?,?)",
                (
                    run_id,
                    json.dumps(config, sort_keys=True, allow_nan=False),
                    digest,
                    json.dumps(input_checksums or {}, sort_keys=True),
                    total,
                    now,
                    now,
                ),
            )
        return RunRecord(run_id, config, digest, "running", total, resumed=False)

    def items(self, run_id: str) -> dict[str, ItemRecord]:
        with self._sqlite_errors():
            rows = self._db.execute(
                "SELECT item_id, status, checksum, attempts, error FROM items WHERE run_id=?",
                (run_id,),
            ).fetchall()
        return {r[0]: ItemRecord(*r) for r in rows}

    def pending(
        self, run_id: str, item_ids: Iterable[str], *, retry_errors: bool = False
    ) -> list[str]:
        """Items still to do, in the given order.

        Default: items never recorded. ``retry_errors``: only the items recorded as errors.
        """
        known = self.items(run_id)
        if retry_errors:
            return [i for i in item_ids if i in known and known[i].status == "error"]
        return [i for i in item_ids if i not in known]

    def record(
        self,
        run_id: str,
        item_id: str,
        *,
        status: str = "ok",
        checksum: str | None = None,
        error: str | None = None,
    ) -> bool:
        """Record one item; returns False when it was already recorded ok (skipped)."""
        return self.record_many(run_id, [(item_id, status, checksum, error)]) == 1

    def record_many(
        self, run_id: str, records: Iterable[tuple[str, str, str | None, str | None]]
    ) -> int:
        """Record (item_id, status, checksum, error) tuples in one transaction.

        Returns how many changed state; an ok item recorded again is skipped, not an error.
        """
        changed = 0
        now = time.time()
        with self._transaction() as db:
            for item_id, status, checksum, error in records:
                if status not in ITEM_STATUSES:
                    raise BadInputError(f"{self.path}: item status must be ok|error: {status!r}")
                row = db.execute(
                    "SELECT status FROM items WHERE run_id=? AND item_id=?", (run_id, item_id)
                ).fetchone()
                if row is not None and row[0] == "ok":
                    continue
                text = error[:ERROR_TEXT_CHARS_MAX] if error else None
                db.execute(
                    "INSERT INTO items (run_id, item_id, status, checksum, error, updated_at)"
                    " VALUES (?,?,?,?,?,?) ON CONFLICT(run_id, item_id) DO UPDATE SET"
                    " status=excluded.status, checksum=excluded.checksum,"
                    " error=excluded.error, attempts=attempts+1, updated_at=excluded.updated_at",
                    (run_id, item_id, status, checksum, text, now),
                )
                changed += 1
            self._refresh_run(db, run_id, now)
        return changed

    def invalidate(self, run_id: str, item_id: str, reason: str) -> None:
        """Mark an ok item as failed (e.g. its committed file no longer verifies)."""
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "UPDATE items SET status='error', error=?, updated_at=?"
                " WHERE run_id=? AND item_id=?",
                (reason[:ERROR_TEXT_CHARS_MAX], now, run_id, item_id),
            )
            self._refresh_run(db, run_id, now)

    def forget(self, run_id: str, item_id: str) -> None:
        """Remove an item so it counts as never done."""
        with self._transaction() as db:
            db.execute("DELETE FROM items WHERE run_id=? AND item_id=?", (run_id, item_id))
            self._refresh_run(db, run_id, time.time())

    def _refresh_run(self, db: sqlite3.Connection, run_id: str, now: float) -> None:
        done = db.execute(
            "SELECT COUNT(*) FROM items WHERE run_id=? AND status='ok'", (run_id,)
        ).fetchone()[0]
        db.execute("UPDATE runs SET done=?, updated_at=? WHERE id=?", (done, now, run_id))

    def set_status(self, run_id: str, status: str) -> None:
        if status not in RUN_STATUSES:
            raise BadInputError(f"{self.path}: run status must be one of {RUN_STATUSES}")
        with self._transaction() as db:
            db.execute(
                "UPDATE runs SET status=?, updated_at=? WHERE id=?", (status, time.time(), run_id)
            )

    def progress(self, run_id: str) -> Progress:
        with self._sqlite_errors():
            row = self._db.execute(
                "SELECT total, started_at FROM runs WHERE id=?", (run_id,)
            ).fetchone()
            if row is None:
                raise BadInputError(f"{self.path}: no run {run_id!r}")
            total, started_at = row
            counts = dict(
                self._db.execute(
                    "SELECT status, COUNT(*) FROM items WHERE run_id=? GROUP BY status", (run_id,)
                ).fetchall()
            )
        done, errors = counts.get("ok", 0), counts.get("error", 0)
        if not all(isinstance(v, int | float) for v in (total, started_at, done, errors)):
            raise DurableError(f"{self.path}: run {run_id!r} holds non-numeric counts")
        elapsed_s = max(time.time() - started_at, 1e-9)
        rate = done / elapsed_s
        eta = (total - done) / rate if rate > 0 else None
        return Progress(done, errors, total, rate, eta)
