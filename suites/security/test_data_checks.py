"""The trainer refuses data it must never train on, even when a valid manifest vouches for it:
NaN/Inf values, wrong dtype or shape, labels out of range (VerifyError naming the file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from preflight_examples.trainer.data import open_dataset

from preflight.durable import atomic_write, manifest
from preflight.durable.errors import VerifyError
from suites.examples.trainer.conftest import CHANNELS, FRAMES, SHARD, SIZE, write_tiny_dataset

VIDEOS, LABELS = "shards/00000/videos.npy", "shards/00000/labels.npy"
CASES = {
    "videos_nan_float": (VIDEOS, np.full((SHARD, FRAMES, CHANNELS, SIZE, SIZE), np.nan)),
    "videos_inf_float32": (
        VIDEOS,
        np.full((SHARD, FRAMES, CHANNELS, SIZE, SIZE), np.inf, dtype=np.float32),
    ),
    "videos_wrong_shape": (VIDEOS, np.zeros((SHARD, FRAMES, CHANNELS, SIZE, SIZE + 1), np.uint8)),
    "videos_too_few": (VIDEOS, np.zeros((SHARD - 1, FRAMES, CHANNELS, SIZE, SIZE), np.uint8)),
    "labels_negative": (LABELS, np.full(SHARD, -1, dtype=np.int64)),
    "labels_too_large": (LABELS, np.full(SHARD, 2**40, dtype=np.int64)),
    "labels_float_nan": (LABELS, np.full(SHARD, np.nan)),
    "labels_int32": (LABELS, np.zeros(SHARD, dtype=np.int32)),
    "labels_2d": (LABELS, np.zeros((SHARD, 1), dtype=np.int64)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_values_under_a_valid_manifest_are_refused(tmp_path: Path, case: str) -> None:
    root = write_tiny_dataset(tmp_path / "ds")
    rel, array = CASES[case]
    atomic_write(root / rel, array)
    manifest.commit(root)  # the manifest vouches for the bad file: only the checks remain
    with pytest.raises(VerifyError, match=Path(rel).name):
        open_dataset(root)
