"""Counter-based random numbers: a pure function of (seed, stream, key, k), vectorised.

A sample's randomness must depend only on (seed, sample index). Hashing the counter
instead of creating a generator object per sample lets a whole batch draw its numbers in
a few numpy operations (a per-sample generator cost more than rendering the sample).
The mixer is SplitMix64's finaliser (a bijection on 64-bit words); it passes BigCrush.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_UNIT = 2.0**-53
WORD_MASK = (1 << 64) - 1


def mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on a uint64 array (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _MIX1
    x = x ^ (x >> np.uint64(27))
    x = x * _MIX2
    return x ^ (x >> np.uint64(31))


def hash_uniform(seed: int, stream: int, keys: np.ndarray, count: int) -> np.ndarray:
    """Uniform [0, 1) float64 [len(keys), count]; row i depends only on (seed, stream, keys[i])."""
    if count <= 0:
        raise ValueError(f"hash_uniform: count must be > 0, got {count}")
    base = mix(np.asarray([(seed ^ stream) & WORD_MASK], dtype=np.uint64))
    key_hash = mix(base ^ (np.asarray(keys, dtype=np.uint64) * _GOLDEN))
    counters = np.arange(1, count + 1, dtype=np.uint64) * _GOLDEN
    bits = mix(key_hash[:, None] + counters[None, :])
    # The top 53 bits convert to float64 exactly.
    return (bits >> np.uint64(11)).astype(np.float64) * _UNIT
