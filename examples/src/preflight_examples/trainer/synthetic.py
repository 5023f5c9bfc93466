"""Write a small, learnable dataset in the datagen contract format (for tests and benchmarks).

Not a replacement for datagen: no workers, no ledger, no resume. Each class is a bright
square moving in its own direction over noise, so a model can actually learn something.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from preflight.durable import atomic_write, manifest
from preflight_examples.trainer.data import DATASET_JSON, FORMAT

DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1))
NOISE_MAX = 64
SQUARE_VALUE = 220


def make_clips(
    labels: np.ndarray, frames: int, channels: int, size: int, rng: np.random.Generator
) -> np.ndarray:
    """uint8 [n, frames, channels, size, size] clips for ``labels`` (pure given ``rng``)."""
    count = len(labels)
    clips = rng.integers(0, NOISE_MAX, size=(count, frames, channels, size, size), dtype=np.uint8)
    side = max(1, size // 4)
    starts = rng.integers(0, size - side + 1, size=(count, 2))
    for n, label in enumerate(labels.tolist()):
        dy, dx = DIRECTIONS[label % len(DIRECTIONS)]
        for t in range(frames):
            y = int(np.clip(starts[n, 0] + dy * t, 0, size - side))
            x = int(np.clip(starts[n, 1] + dx * t, 0, size - side))
            clips[n, t, :, y : y + side, x : x + side] = SQUARE_VALUE
    return clips


def write_dataset(
    out: str | Path,
    *,
    samples: int = 64,
    frames: int = 4,
    channels: int = 1,
    size: int = 16,
    classes: int = 4,
    shard_size: int = 32,
    seed: int = 0,
) -> Path:
    """Write a committed dataset directory (manifest last) and return its path."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    # Balanced exactly: sample i has class i % classes before the seeded shuffle.
    labels = rng.permutation(np.arange(samples, dtype=np.int64) % classes)
    shards = []
    for index, start in enumerate(range(0, samples, shard_size)):
        count = min(shard_size, samples - start)
        rel = f"shards/{index:05d}"
        (root / rel).mkdir(parents=True, exist_ok=True)
        shard_labels = labels[start : start + count]
        atomic_write(
            root / rel / "videos.npy", make_clips(shard_labels, frames, channels, size, rng)
        )
        atomic_write(root / rel / "labels.npy", shard_labels)
        manifest.commit(root / rel)
        shards.append(
            {
                "index": index,
                "start": start,
                "count": count,
                "videos": f"{rel}/videos.npy",
                "labels": f"{rel}/labels.npy",
            }
        )
    info = {
        "format": FORMAT,
        "samples": samples,
        "frames": frames,
        "channels": channels,
        "size": size,
        "classes": classes,
        "class_names": [f"class{k}" for k in range(classes)],
        "shard_size": shard_size,
        "seed": seed,
        "augment": False,
        "shards": shards,
    }
    atomic_write(root / DATASET_JSON, info)
    files = [DATASET_JSON] + [s[key] for s in shards for key in ("videos", "labels")]
    manifest.commit(root, files=files, config=info)
    return root
