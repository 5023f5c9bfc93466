"""Corruption transforms: properties over hypothesis-drawn data and corruption specs."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from preflight.check.kinds.corrupt import (
    JSON_KINDS,
    KINDS,
    PAGE_BYTES,
    CorruptionSpec,
    apply,
    corrupt_bytes,
    corruptions,
    draw,
    flip_bits,
    json_deep,
    json_huge_number,
    json_malformed,
    swap_pair,
    zero_page,
)

blobs = st.binary(min_size=0, max_size=3 * PAGE_BYTES)
SINGLE_FILE_KINDS = tuple(k for k in KINDS if k != "swap")


def _bit_distance(a: bytes, b: bytes) -> int:
    return sum(bin(x ^ y).count("1") for x, y in zip(a, b, strict=True))


@given(data=blobs.filter(bool), count=st.integers(1, 64), salt=st.integers(0, 2**32))
def test_flip_bits_flips_exactly_that_many_bits(data: bytes, count: int, salt: int) -> None:
    out = flip_bits(data, count, salt)
    assert len(out) == len(data)
    assert _bit_distance(data, out) == min(count, len(data) * 8)


@given(data=blobs.filter(bool), salt=st.integers(0, 2**32))
def test_zero_page_zeroes_one_aligned_page_and_nothing_else(data: bytes, salt: int) -> None:
    out = zero_page(data, salt)
    assert len(out) == len(data)
    changed = [i for i, (a, b) in enumerate(zip(data, out, strict=True)) if a != b]
    assert all(out[i] == 0 for i in changed)
    if changed:
        assert changed[0] // PAGE_BYTES == changed[-1] // PAGE_BYTES


@given(data=blobs, salt=st.integers(0, 2**32))
def test_json_corruptions_never_parse_as_the_original(data: bytes, salt: int) -> None:
    with pytest.raises(ValueError):
        json.loads(json_malformed(data, salt))
    with pytest.raises((RecursionError, ValueError)):
        json.loads(json_deep(data, salt))


@given(value=st.integers(0, 10**6), salt=st.integers(0, 2**32))
def test_json_huge_number_keeps_the_document_but_breaks_its_number(value: int, salt: int) -> None:
    original = json.dumps({"step": value, "name": "x"}).encode()
    out = json_huge_number(original, salt)
    assert b'"name": "x"' in out
    try:
        parsed = json.loads(out)
    except ValueError:
        return  # CPython refuses integers with more than 4300 digits
    assert parsed["step"] == float("inf")


@given(spec=corruptions(SINGLE_FILE_KINDS), data=blobs)
def test_every_single_file_corruption_changes_or_removes_nonempty_content(
    spec: CorruptionSpec, data: bytes
) -> None:
    out = corrupt_bytes(spec, data)
    if spec.kind == "delete":
        assert out is None
    elif spec.kind in ("truncate_zero", "truncate_half"):
        assert out is not None and len(out) == (
            0 if spec.kind == "truncate_zero" else len(data) // 2
        )
    elif data and spec.kind in ("flip_bits", *JSON_KINDS):
        assert out != data


@given(seed=st.integers(0, 2**32), kind=st.sampled_from(KINDS))
def test_seeded_draws_replay(seed: int, kind: str) -> None:
    assert draw(random.Random(seed), kind) == draw(random.Random(seed), kind)


def test_the_strategy_shrinks_toward_the_simplest_case() -> None:
    # Hypothesis shrinks sampled_from to its first element and integers to their minimum.
    assert KINDS[0] == "delete"
    assert CorruptionSpec("delete") == CorruptionSpec("delete", target=0, salt=0, bits=1)


def _shards(tmp_path: Path, count: int) -> list[Path]:
    paths = []
    for i in range(count):
        path = tmp_path / f"shard-{i:05d}.json"
        path.write_text(json.dumps({"index": i, "values": [i] * 8}))
        paths.append(path)
    return paths


@settings(max_examples=30, deadline=None)
@given(spec=corruptions())
def test_apply_damages_a_matched_file_and_names_it(
    tmp_path_factory: pytest.TempPathFactory, spec: CorruptionSpec
) -> None:
    workdir = tmp_path_factory.mktemp("w")
    ckpt = workdir / "ckpt.json"
    ckpt.write_text(json.dumps({"step": 10, "acc": 3}))
    shards = _shards(workdir, 3)
    before = {p: p.read_bytes() for p in [ckpt, *shards]}
    damage = apply(spec, [[ckpt], shards], workdir)
    assert damage is not None
    assert damage.kind == spec.kind
    touched = [workdir / rel for rel in damage.paths]
    assert all(p in before for p in touched)
    if spec.kind == "swap":
        first, second = touched
        assert first.read_bytes() == before[second] and second.read_bytes() == before[first]
        assert {first, second} <= set(shards)  # two shards, never a shard and the state
    elif spec.kind == "delete":
        assert not touched[0].exists()
    untouched = [p for p in before if p not in touched]
    assert all(p.read_bytes() == before[p] for p in untouched)


def test_swap_needs_two_files_from_one_glob(tmp_path: Path) -> None:
    lone = _shards(tmp_path, 1)
    assert swap_pair([lone, [tmp_path / "ckpt.json"]], 0, 0) is None
    assert apply(CorruptionSpec("swap"), [lone], tmp_path) is None


def test_json_kinds_skip_files_that_are_not_json(tmp_path: Path) -> None:
    blob = tmp_path / "weights.bin"
    blob.write_bytes(b"\x00\x01binary")
    assert apply(CorruptionSpec("json_deep"), [[blob]], tmp_path) is None
    damage = apply(CorruptionSpec("zero_page"), [[blob]], tmp_path)
    assert damage is not None and damage.paths == ("weights.bin",)
