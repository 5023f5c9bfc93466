"""A shard round-trips through write and check; any tampering is named by file."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from preflight_examples.datagen.config import GenConfig
from preflight_examples.datagen.plan import labels_for, plan_shards
from preflight_examples.datagen.render import render
from preflight_examples.datagen.store import check_shard, write_shard

from preflight.durable import VerifyError

CFG = GenConfig(samples=30, frames=4, size=12, channels=3, shard_size=10)


@pytest.fixture
def two_shards(tmp_path: Path) -> Path:
    for spec in plan_shards(CFG.samples, CFG.shard_size)[:2]:
        write_shard(tmp_path, CFG, spec)
    return tmp_path


def test_written_shard_is_memory_mappable_and_checks(two_shards: Path) -> None:
    spec = plan_shards(CFG.samples, CFG.shard_size)[1]
    videos = np.load(two_shards / spec.videos, mmap_mode="r")
    labels = np.load(two_shards / spec.labels)
    assert isinstance(videos, np.memmap) and videos.shape == (10, 4, 3, 12, 12)
    assert np.array_equal(labels, labels_for(CFG.seed, 4, 10, 10))
    assert np.array_equal(videos, render(CFG, range(10, 20), labels))
    checked = check_shard(two_shards, CFG, spec)
    assert sum(checked.class_counts) == 10


def test_flipped_byte_is_named(two_shards: Path) -> None:
    spec = plan_shards(CFG.samples, CFG.shard_size)[0]
    path = two_shards / spec.videos
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(VerifyError, match="videos.npy"):
        check_shard(two_shards, CFG, spec)


def test_swapped_shards_are_refused(two_shards: Path) -> None:
    first, second = plan_shards(CFG.samples, CFG.shard_size)[:2]
    tmp = two_shards / "swap"
    shutil.move(two_shards / first.dirname, tmp)
    shutil.move(two_shards / second.dirname, two_shards / first.dirname)
    shutil.move(tmp, two_shards / second.dirname)
    with pytest.raises(VerifyError, match="swapped"):
        check_shard(two_shards, CFG, first)


def test_shard_of_another_configuration_is_refused(two_shards: Path) -> None:
    spec = plan_shards(CFG.samples, CFG.shard_size)[0]
    other = GenConfig(**{**CFG.to_json(), "seed": 7})
    with pytest.raises(VerifyError, match="config_hash"):
        check_shard(two_shards, other, spec)


def test_truncated_labels_and_missing_videos_are_named(two_shards: Path) -> None:
    first, second = plan_shards(CFG.samples, CFG.shard_size)[:2]
    labels = two_shards / first.labels
    labels.write_bytes(labels.read_bytes()[:-8])
    with pytest.raises(VerifyError, match="labels.npy"):
        check_shard(two_shards, CFG, first)
    (two_shards / second.videos).unlink()
    with pytest.raises(VerifyError, match="videos.npy"):
        check_shard(two_shards, CFG, second)


def test_rewriting_a_shard_replaces_it_cleanly(two_shards: Path) -> None:
    spec = plan_shards(CFG.samples, CFG.shard_size)[0]
    (two_shards / spec.dirname / "stray.tmp").write_bytes(b"junk")
    (two_shards / spec.videos).write_bytes(b"garbage")
    write_shard(two_shards, CFG, spec)
    assert sorted(p.name for p in (two_shards / spec.dirname).iterdir()) == [
        "labels.npy",
        "manifest.json",
        "videos.npy",
    ]
    check_shard(two_shards, CFG, spec)
