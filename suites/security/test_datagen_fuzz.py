"""Fuzz `datagen verify` over a damaged dataset: dataset.json, shard and top manifests, .npy."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st
from preflight_examples.datagen import store
from preflight_examples.datagen.verify import scan

from preflight.durable.errors import BadInputError, VerifyError
from suites.security.conftest import TINY_DATAGEN
from suites.security.strategies import document_bytes, mutated_document

Fuzz = Callable[..., Any]
GENERATE_TIMEOUT_S = 120.0
TINY = (*TINY_DATAGEN, "--seed", "3")
TARGETS = ("dataset.json", "manifest.json", "shards/00000/manifest.json")
ALLOC_BYTES_MAX = 32 << 20  # refusing an absurd claim must not allocate for it


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dataset") / "ds"
    done = subprocess.run(
        [sys.executable, "-m", "preflight_examples.datagen.cli", "generate",
         "--out", str(out), *TINY],
        capture_output=True,
        text=True,
        timeout=GENERATE_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    scan(out)
    return out


@pytest.fixture
def dataset(pristine: Path, tmp_path: Path) -> Iterator[Path]:
    out = tmp_path / "ds"
    shutil.copytree(pristine, out, symlinks=True)
    yield out


def test_verify_refuses_damaged_metadata_with_verify_error(dataset: Path, fuzz: Fuzz) -> None:
    originals = {rel: (dataset / rel).read_bytes() for rel in TARGETS}
    strategy = st.sampled_from(TARGETS).flatmap(
        lambda rel: st.tuples(st.just(rel), document_bytes(json.loads(originals[rel])))
    )

    def check(case: tuple[str, bytes]) -> None:
        rel, data = case
        (dataset / rel).write_bytes(data)
        try:
            scan(dataset)
        finally:
            (dataset / rel).write_bytes(originals[rel])

    tally = fuzz("datagen_verify", strategy, check, (BadInputError, VerifyError))
    assert tally.refused > 0 and not tally.crashes


def test_verify_refuses_damaged_npy_headers(dataset: Path, fuzz: Fuzz) -> None:
    videos = dataset / "shards/00000/videos.npy"
    original = videos.read_bytes()
    header = st.sampled_from(
        [
            "{'descr': '|u1', 'fortran_order': False, 'shape': (10000000000000, 2, 1, 4, 4), }",
            "{'descr': '<f8', 'fortran_order': False, 'shape': (4, 2, 1, 4, 4), }",
            "{'descr': '|O', 'fortran_order': False, 'shape': (4, 2, 1, 4, 4), }",
            "{'descr': '|u1', 'fortran_order': True, 'shape': (4, 2, 1, 4, 4), }",
            "{'descr': '|u1', 'fortran_order': False, 'shape': (-1,), }",
            "__import__('os').system('touch pwned')",
        ]
    )

    def npy(text: str) -> bytes:
        body = text.encode()
        pad = 4096 - 10 - len(body) - 1
        return (
            b"\x93NUMPY\x01\x00"
            + (len(body) + pad + 1).to_bytes(2, "little")
            + body
            + (b" " * pad + b"\n")
            + original[4096:]
        )

    data = st.one_of(header.map(npy), st.binary(max_size=64).map(lambda b: b + original[len(b) :]))

    def check(raw: bytes) -> None:
        videos.write_bytes(raw)
        try:
            scan(dataset)
        finally:
            videos.write_bytes(original)

    tally = fuzz("datagen_npy", data, check, (BadInputError, VerifyError))
    assert tally.refused > 0 and not tally.crashes
    assert not (Path.cwd() / "pwned").exists()


@pytest.mark.parametrize(
    "claim",
    [
        {"samples": 10**12},
        {"samples": 10**8, "shard_size": 1},
        {"frames": 10**6, "size": 10**6},
        {"shard_size": 10**12},
    ],
)
def test_absurd_dataset_claims_are_refused_before_allocation(
    dataset: Path, claim: dict[str, int]
) -> None:
    path = dataset / store.DATASET_JSON
    path.write_text(json.dumps({**json.loads(path.read_text()), **claim}))
    tracemalloc.start()
    try:
        with pytest.raises(VerifyError, match="dataset.json"):
            scan(dataset)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < ALLOC_BYTES_MAX


def test_dataset_json_mutations_parse_or_refuse(dataset: Path, fuzz: Fuzz) -> None:
    valid = json.loads((dataset / store.DATASET_JSON).read_text())

    def check(doc: dict[str, Any]) -> None:
        (dataset / store.DATASET_JSON).write_text(json.dumps(doc))
        store.read_dataset_json(dataset)

    tally = fuzz("datagen_dataset_json", mutated_document(valid), check, (VerifyError,))
    assert not tally.crashes
