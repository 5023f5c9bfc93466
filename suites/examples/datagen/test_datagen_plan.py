"""Shard planning, exact class balance and the resume classification (pure)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from preflight_examples.datagen.plan import (
    ShardSpec,
    classify_shards,
    expected_class_counts,
    labels_for,
    plan_shards,
)


@given(samples=st.integers(1, 5000), shard_size=st.integers(1, 700))
@settings(max_examples=60, deadline=None)
def test_shards_cover_every_index_once(samples: int, shard_size: int) -> None:
    specs = plan_shards(samples, shard_size)
    covered = np.concatenate([np.arange(s.start, s.start + s.count) for s in specs])
    assert np.array_equal(covered, np.arange(samples))
    assert [s.index for s in specs] == list(range(len(specs)))
    assert all(s.start // shard_size == s.index for s in specs)


@given(
    seed=st.integers(0, 2**63 - 1),
    classes=st.integers(1, 4),
    cuts=st.lists(st.integers(1, 299), max_size=6),
)
@settings(max_examples=40, deadline=None)
def test_labels_do_not_depend_on_the_shard_layout(seed: int, classes: int, cuts: list[int]) -> None:
    whole = labels_for(seed, classes, 0, 300)
    bounds = [0, *sorted(set(cuts)), 300]
    pieces = [labels_for(seed, classes, a, b - a) for a, b in zip(bounds, bounds[1:], strict=False)]
    assert np.array_equal(np.concatenate(pieces), whole)


@pytest.mark.parametrize("samples,classes", [(400, 4), (401, 4), (403, 4), (7, 3), (30000, 4)])
def test_classes_are_balanced_exactly(samples: int, classes: int) -> None:
    labels = labels_for(42, classes, 0, samples)
    counts = np.bincount(labels, minlength=classes)
    assert counts.max() - counts.min() <= (0 if samples % classes == 0 else 1)
    assert np.array_equal(counts, expected_class_counts(samples, classes, 42))
    assert labels.dtype == np.int64 and labels.min() >= 0 and labels.max() < classes


def test_labels_are_shuffled_and_seeded() -> None:
    a, b = labels_for(1, 4, 0, 400), labels_for(2, 4, 0, 400)
    assert not np.array_equal(a, b)
    assert not np.array_equal(a, np.arange(400) % 4)


def _specs() -> list[ShardSpec]:
    return plan_shards(50, 10)


def test_classify_fresh_run_generates_everything() -> None:
    plan = classify_shards(_specs(), {}, set(), retry_errors=False)
    assert [s.index for s in plan.generate] == [0, 1, 2, 3, 4]
    assert not plan.check and not plan.lost and not plan.skipped


def test_classify_resume_trusts_manifests_not_the_ledger() -> None:
    status = {"shard-00000": "ok", "shard-00001": "ok", "shard-00003": "error"}
    # Shard 1 is recorded done but its manifest vanished; shard 2 committed but unrecorded.
    plan = classify_shards(_specs(), status, {0, 2}, retry_errors=False)
    assert [s.index for s in plan.check] == [0, 2]
    assert [s.index for s in plan.generate] == [1, 3, 4]
    assert [s.index for s in plan.lost] == [1]


def test_classify_retry_errors_touches_only_failed_shards() -> None:
    status = {"shard-00000": "ok", "shard-00003": "error", "shard-00004": "error"}
    plan = classify_shards(_specs(), status, {0, 4}, retry_errors=True)
    assert [s.index for s in plan.generate] == [3]
    assert [s.index for s in plan.check] == [4]
    assert [s.index for s in plan.skipped] == [0, 1, 2]
