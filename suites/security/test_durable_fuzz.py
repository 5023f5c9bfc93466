"""Fuzz durable's parsers: strict JSON, manifests, PROGRESS.json and the SQLite ledger."""

from __future__ import annotations

import json
import os
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st

from preflight.durable import manifest
from preflight.durable.errors import BadInputError, DurableError, VerifyError
from preflight.durable.jsonio import loads_strict, read_json
from preflight.durable.ledger import Ledger
from preflight.durable.progress import make_progress, read_progress, write_progress
from suites.security.strategies import document_bytes, json_values, mutated_document

Fuzz = Callable[..., Any]


def _rewrite(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_strict_json_refuses_hostile_text_with_bad_input_error(fuzz: Fuzz) -> None:
    valid = {"done": 1, "total": 2, "nested": [{"a": 1.5, "b": "x"}]}

    def check(data: bytes) -> None:
        value = loads_strict(data, "fuzz.json")
        # Accepted values are plain JSON: they survive a strict round trip.
        assert json.loads(json.dumps(value, allow_nan=False)) == value

    tally = fuzz(
        "json",
        document_bytes(valid) | json_values().map(lambda v: json.dumps(v).encode()),
        check,
        (BadInputError,),
    )
    assert tally.refused > 0 and not tally.crashes


def test_read_json_bounds_size_before_reading(tmp_path: Path, fuzz: Fuzz) -> None:
    path = tmp_path / "doc.json"

    def check(case: tuple[bytes, int]) -> None:
        data, bytes_max = case
        read_json(_rewrite(path, data), bytes_max=bytes_max)

    strategy = st.tuples(document_bytes({"a": [1, 2, 3], "b": "text"}), st.integers(0, 64))
    tally = fuzz("json_file", strategy, check, (BadInputError,))
    assert not tally.crashes


def _committed_dir(root: Path) -> Path:
    directory = root / "committed"
    (directory / "sub").mkdir(parents=True)
    (directory / "a.bin").write_bytes(b"alpha")
    (directory / "sub" / "b.bin").write_bytes(b"beta" * 10)
    manifest.commit(directory, config={"k": 1}, meta={"kind": "fuzz"})
    return directory


def test_manifest_parse_and_verify_refuse_with_verify_error(tmp_path: Path, fuzz: Fuzz) -> None:
    directory = _committed_dir(tmp_path)
    manifest_path = directory / manifest.MANIFEST_NAME
    valid = json.loads(manifest_path.read_text())
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"secret")
    (directory / "link.bin").symlink_to(outside)
    hostile_paths = st.sampled_from(
        [
            "../outside.bin",
            "/etc/passwd",
            str(outside),
            "link.bin",
            "sub/../a.bin",
            "./a.bin",
            "sub//b.bin",
            "a.bin\x00",
            "sub\\b.bin",
            "",
            "sub",
            "x" * 2000,
        ]
    )
    entry_attack = hostile_paths.map(
        lambda p: {**valid, "files": [*valid["files"], {"path": p, "size": 6, "sha256": "0" * 64}]}
    )
    docs = st.one_of(mutated_document(valid), entry_attack)

    def check(case: tuple[str, Any]) -> None:
        kind, payload = case
        if kind == "parse":
            manifest.parse(payload, "fuzz/manifest.json")
            return
        manifest_path.write_bytes(payload)
        try:
            manifest.verify(directory)
        finally:
            manifest_path.write_text(json.dumps(valid))

    strategy = st.one_of(
        st.tuples(st.just("parse"), docs),
        st.tuples(st.just("verify"), docs.map(lambda d: json.dumps(d).encode())),
        st.tuples(st.just("verify"), document_bytes(valid)),
    )
    tally = fuzz("manifest", strategy, check, (BadInputError, VerifyError))
    assert tally.refused > 0 and not tally.crashes
    assert outside.read_bytes() == b"secret"


def test_read_progress_refuses_with_bad_input_error(tmp_path: Path, fuzz: Fuzz) -> None:
    path = tmp_path / "PROGRESS.json"
    write_progress(path, make_progress(3, 10, "items", 1.5))
    valid = json.loads(path.read_text())

    def check(data: bytes) -> None:
        info = read_progress(_rewrite(path, data))
        assert 0 <= info.done <= info.total

    tally = fuzz("progress", document_bytes(valid), check, (BadInputError,))
    assert tally.refused > 0 and not tally.crashes


def _ledger_bytes(root: Path) -> bytes:
    path = root / "seed.sqlite"
    with Ledger(path) as ledger:
        ledger.open_run("run", {"a": 1}, 4)
        ledger.record_many("run", [(f"item-{i}", "ok", "c" * 64, None) for i in range(3)])
        ledger._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path.read_bytes()


def test_ledger_on_corrupt_sqlite_bytes_raises_durable_error(tmp_path: Path, fuzz: Fuzz) -> None:
    valid = _ledger_bytes(tmp_path)
    counter = iter(range(1 << 30))

    @st.composite
    def damaged(draw: st.DrawFn) -> bytes:
        data = bytearray(valid)
        kind = draw(st.sampled_from(["flip", "truncate", "zero", "garbage"]))
        if kind == "garbage":
            return draw(st.binary(max_size=8192))
        if kind == "truncate":
            return bytes(data[: draw(st.integers(0, len(data)))])
        for _ in range(draw(st.integers(1, 16))):
            at = draw(st.integers(0, len(data) - 1))
            data[at] = 0 if kind == "zero" else data[at] ^ (1 << draw(st.integers(0, 7)))
        return bytes(data)

    def check(data: bytes) -> None:
        # A fresh file per example: SQLite keeps WAL and shm files beside the database.
        path = tmp_path / f"l{next(counter)}" / "ledger.sqlite"
        path.parent.mkdir()
        path.write_bytes(data)
        with Ledger(path) as ledger:
            ledger.open_run("run", {"a": 1}, 4)
            ledger.items("run")
            ledger.pending("run", [f"item-{i}" for i in range(5)])
            ledger.record("run", "item-4")
            ledger.progress("run")
        for leftover in path.parent.iterdir():
            os.unlink(leftover)
        path.parent.rmdir()

    tally = fuzz("ledger", damaged(), check, (DurableError,))
    assert not tally.crashes


@pytest.mark.parametrize(("claim", "match"), [(10 * 10**9, "size"), (10**13, "out of range")])
def test_absurd_size_claims_in_a_manifest_are_refused_before_reading(
    tmp_path: Path, claim: int, match: str
) -> None:
    """A manifest claiming a 10 GB checkpoint (or more than 1 TiB) for a small file is refused
    on the size alone: the file is never read or hashed."""
    directory = _committed_dir(tmp_path)
    path = directory / manifest.MANIFEST_NAME
    doc = json.loads(path.read_text())
    doc["files"][0]["size"] = claim
    path.write_text(json.dumps(doc))
    tracemalloc.start()
    try:
        with pytest.raises(VerifyError, match=match):
            manifest.verify(directory)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_regressions_found_by_this_suite(tmp_path: Path) -> None:
    """Each was a crash (or a 16 MiB allocation) before the fix named beside it."""
    # progress.read_progress: rate_per_s of the wrong type was a bare TypeError/ValueError.
    path = tmp_path / "PROGRESS.json"
    for rate in ('":"', "[null]", "-1"):
        path.write_text(f'{{"done": 1, "total": 2, "updated_at": "t", "rate_per_s": {rate}}}')
        with pytest.raises(BadInputError, match="rate_per_s"):
            read_progress(path)
    # jsonio.read_json: read(bytes_max) allocated the whole limit for every small file.
    tracemalloc.start()
    try:
        read_json(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    # ledger: a malformed page surfaced as sqlite3.DatabaseError from items()/progress().
    data = bytearray(_ledger_bytes(tmp_path))
    data[4096:] = b"\xff" * (len(data) - 4096)  # every page but the schema
    bad = tmp_path / "bad" / "ledger.sqlite"
    bad.parent.mkdir()
    bad.write_bytes(bytes(data))
    with pytest.raises(DurableError, match="ledger.sqlite"), Ledger(bad) as ledger:
        ledger.items("run")
        ledger.progress("run")


def test_an_entry_path_the_os_cannot_look_up_is_a_verify_error(tmp_path: Path) -> None:
    """Found at 10pct: a manifest entry whose name is longer than the OS allows made verify
    raise OSError (ENAMETOOLONG) instead of VerifyError."""
    directory = tmp_path / "committed"
    directory.mkdir()
    (directory / "a.bin").write_bytes(b"x")
    manifest.commit(directory, config={"k": 1}, meta={"kind": "fuzz"})
    path = directory / manifest.MANIFEST_NAME
    document = json.loads(path.read_text())
    for entry in document["files"]:
        entry["path"] = "1" * 300
    path.write_text(json.dumps(document))
    for check_hashes in (True, False):
        with pytest.raises(VerifyError):
            manifest.verify(directory, check_hashes=check_hashes)
