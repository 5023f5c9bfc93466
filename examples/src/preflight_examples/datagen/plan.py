"""Shard planning and class assignment (pure; no I/O).

Labels are balanced exactly and depend only on (seed, sample index): samples are grouped in
blocks of ``classes`` consecutive indices and each block holds a seeded permutation of all
classes. Any shard layout therefore sees the same label for the same index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from preflight_examples.datagen.config import GenConfig
from preflight_examples.datagen.hashrng import hash_uniform

# Distinguishes the label stream's seed words from a sample's SeedSequence([seed, index]).
LABEL_STREAM = 0x4C4142454C
SHARDS_DIR = "shards"
# videos.npy's header is padded to one 4 KiB block; labels.npy's is numpy's (128 bytes).
NPY_HEADERS_BYTES_PER_SHARD = 4096 + 256
SHARD_MANIFEST_BYTES_MAX = 4096
DATASET_JSON_BYTES_PER_SHARD = 160


@dataclass(frozen=True)
class ShardSpec:
    index: int
    start: int
    count: int

    @property
    def item_id(self) -> str:
        """The shard's name in the ledger."""
        return f"shard-{self.index:05d}"

    @property
    def dirname(self) -> str:
        return f"{SHARDS_DIR}/{self.index:05d}"

    @property
    def videos(self) -> str:
        return f"{self.dirname}/videos.npy"

    @property
    def labels(self) -> str:
        return f"{self.dirname}/labels.npy"

    @property
    def manifest(self) -> str:
        return f"{self.dirname}/manifest.json"


def plan_shards(samples: int, shard_size: int) -> list[ShardSpec]:
    """Sample ``i`` lives in shard ``i // shard_size`` at row ``i % shard_size``."""
    if samples <= 0 or shard_size <= 0:
        raise ValueError(f"need samples > 0 and shard_size > 0, got {samples}, {shard_size}")
    return [
        ShardSpec(index, start, min(shard_size, samples - start))
        for index, start in enumerate(range(0, samples, shard_size))
    ]


def labels_for(seed: int, classes: int, start: int, count: int) -> np.ndarray:
    """int64 labels of samples ``start .. start+count-1``."""
    if count <= 0 or start < 0 or classes <= 0:
        raise ValueError(f"bad label range start={start} count={count} classes={classes}")
    if classes == 1:
        return np.zeros(count, dtype=np.int64)
    first_block = start // classes
    last_block = (start + count - 1) // classes
    blocks = np.arange(first_block, last_block + 1, dtype=np.uint64)
    # Each block's permutation: the order of its classes' hashed keys.
    keys = hash_uniform(seed, LABEL_STREAM, blocks, classes)
    perms = np.argsort(keys, axis=1, kind="stable")
    offset = start - first_block * classes
    return perms.ravel()[offset : offset + count].astype(np.int64)


def expected_class_counts(samples: int, classes: int, seed: int) -> np.ndarray:
    """Per-class sample counts of the whole dataset; they differ by at most one."""
    full_blocks, remainder = divmod(samples, classes)
    counts = np.full(classes, full_blocks, dtype=np.int64)
    if remainder:
        counts += np.bincount(
            labels_for(seed, classes, full_blocks * classes, remainder), minlength=classes
        )
    return counts


def videos_bytes(cfg: GenConfig, count: int) -> int:
    return count * cfg.sample_bytes


def expected_dataset_bytes(cfg: GenConfig) -> int:
    """Disk space the finished dataset needs (data, headers, manifests, dataset.json)."""
    shards = cfg.shard_count
    per_shard_overhead = NPY_HEADERS_BYTES_PER_SHARD + SHARD_MANIFEST_BYTES_MAX
    return (
        videos_bytes(cfg, cfg.samples)
        + 8 * cfg.samples
        + shards * (per_shard_overhead + DATASET_JSON_BYTES_PER_SHARD)
    )


@dataclass(frozen=True)
class ShardPlan:
    """What a run does with each shard (the outcome of classify_shards)."""

    generate: tuple[ShardSpec, ...]  # never committed (or their manifest is gone)
    check: tuple[ShardSpec, ...]  # committed earlier: re-verified, regenerated if bad
    lost: tuple[ShardSpec, ...]  # recorded done in the ledger, but no manifest on disk
    skipped: tuple[ShardSpec, ...]  # left alone (--retry-errors touches only failed shards)


def classify_shards(
    specs: list[ShardSpec],
    ledger_status: dict[str, str],
    committed: set[int],
    *,
    retry_errors: bool,
) -> ShardPlan:
    """Decide per shard from the ledger's status and whether a shard manifest exists.

    The shard manifest, not the ledger, says whether data exists: a run killed between a
    shard's commit and its ledger record must not redo the shard, and a ledger record
    whose files vanished must not be trusted.
    """
    generate, check, lost, skipped = [], [], [], []
    for spec in specs:
        status = ledger_status.get(spec.item_id)
        if retry_errors and status != "error":
            skipped.append(spec)
        elif spec.index in committed:
            check.append(spec)
        else:
            generate.append(spec)
            if status == "ok":
                lost.append(spec)
    return ShardPlan(tuple(generate), tuple(check), tuple(lost), tuple(skipped))
