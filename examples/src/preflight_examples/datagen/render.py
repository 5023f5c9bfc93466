"""Rendering of trajectory videos (pure numpy; no I/O, no per-sample or per-pixel loops).

Each sample depends only on (seed, index) and its label: its random numbers come from a
counter-based hash of (seed, index, k), so a whole batch draws them in one vectorised step
and no per-sample generator object is needed (creating one cost more than rendering the
sample). The same sample rendered in any batch, shard or worker has the same bytes:
- every operation is elementwise (no reductions across samples);
- transcendental functions run on arrays padded to whole SIMD blocks (see _elementwise);
- the pixels are integer arithmetic only.

Cost shapes the pixel pipeline (the 16x3x64x64 production case writes 5.9 GB):
- the blob is the outer product of a 4-bit row profile (times the channel's colour) and a
  4-bit column profile, computed straight into uint8: no float image, no cast pass;
- noise is a window of a seeded table of 4-bit values at a per-sample random offset, so
  no random numbers are drawn per pixel.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from preflight_examples.datagen.config import GenConfig
from preflight_examples.datagen.hashrng import hash_uniform

PARAMS_PER_SAMPLE = 16  # uniform parameters per sample; jitter values follow them
NOISE_MAX = 15
NOISE_TABLE_BYTES_MIN = 4 << 20
# Domain words that keep the hash streams apart (sample parameters, noise table, labels).
SAMPLE_STREAM = 0x53414D504C45
NOISE_STREAM = 0x4E4F495345
# Background + blob stay at or below LEVEL_MAX so that adding noise never wraps a uint8.
LEVEL_MAX_AUGMENT = 255 - NOISE_MAX - 1
LEVEL_MAX_PLAIN = 254
BACKGROUND_PLAIN = 8
BACKGROUND_AUGMENT_MAX = 30
PROFILE_STEPS = 15  # the column profile takes values 0..15
# About 1 Mi pixels (per channel) per batch: enough samples to amortise numpy's per-call
# overhead in the per-sample parameter math, few enough to keep the arrays in cache.
BATCH_ELEMENTS_TARGET = 1 << 20
BATCH_SAMPLES_MAX = 64
SIMD_BLOCK = 64  # elements; a multiple of every vector width numpy dispatches to


def _elementwise(func: Callable[[np.ndarray], np.ndarray], values: np.ndarray) -> np.ndarray:
    """``func`` on ``values`` padded to whole SIMD blocks.

    Vectorised libm kernels may treat a ragged tail differently from full vectors; with no
    tail, every element goes through the same code whatever batch it sits in.
    """
    flat = values.ravel()
    padded = np.zeros(-(-max(flat.size, 1) // SIMD_BLOCK) * SIMD_BLOCK, dtype=np.float64)
    padded[: flat.size] = flat
    return func(padded)[: flat.size].reshape(values.shape)


def batch_samples(cfg: GenConfig) -> int:
    per_sample = cfg.frames * cfg.size * cfg.size
    return max(1, min(BATCH_SAMPLES_MAX, BATCH_ELEMENTS_TARGET // per_sample))


def noise_table_bytes(cfg: GenConfig) -> int:
    return max(NOISE_TABLE_BYTES_MIN, 2 * cfg.sample_bytes)


@functools.lru_cache(maxsize=2)
def noise_table(seed: int, table_bytes: int) -> np.ndarray:
    """Seeded uint8 values 0..NOISE_MAX; samples add windows of it (read-only)."""
    rng = np.random.Generator(np.random.SFC64(np.random.SeedSequence([seed, NOISE_STREAM])))
    table = rng.integers(0, NOISE_MAX + 1, size=table_bytes, dtype=np.uint8)
    table.flags.writeable = False
    return table


def trajectories(labels: np.ndarray, u: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Positions [B, T, 2] (x, y) in frame units (0..1) for each sample's class.

    ``u`` [B, >=8] holds uniform [0, 1) parameters. Classes: 0 linear, 1 circular,
    2 parabolic, 3 sinusoidal; all are centred on the frame so the blob stays in view.
    """
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() > 3):
        raise ValueError(f"unknown class label in {sorted(set(labels.tolist()))}")
    theta = 2 * math.pi * u[:, 0]
    cos_theta = _elementwise(np.cos, theta)
    sin_theta = _elementwise(np.sin, theta)
    direction = np.stack([cos_theta, sin_theta], axis=1)[:, None, :]  # [B, 1, 2]
    normal = np.stack([-sin_theta, cos_theta], axis=1)[:, None, :]
    centre = (0.5 + (u[:, 1:3] - 0.5) * 0.2)[:, None, :]
    travel = (0.35 + 0.3 * u[:, 3:4]) * (t - 0.5)[None, :]  # [B, T] along the direction
    sign = np.where(u[:, 7:8] < 0.5, 1.0, -1.0)
    along = centre + travel[:, :, None] * direction
    angle = 2 * math.pi * u[:, 5:6] + sign * math.pi * (1.0 + u[:, 6:7]) * t[None, :]
    radius = (0.15 + 0.15 * u[:, 4:5])[:, :, None]
    circle = np.stack([_elementwise(np.cos, angle), _elementwise(np.sin, angle)], axis=2)
    circular = centre + radius * circle
    height = sign * (0.15 + 0.15 * u[:, 4:5])  # parabola: mean lateral offset zero
    parabolic = along + (height * (4.0 * t * (1.0 - t) - 2.0 / 3.0))[:, :, None] * normal
    phase = 2 * math.pi * ((1.0 + u[:, 5:6]) * t[None, :] + u[:, 6:7])
    wave = (0.08 + 0.07 * u[:, 4:5]) * _elementwise(np.sin, phase)
    sinusoidal = along + wave[:, :, None] * normal
    return np.stack([along, circular, parabolic, sinusoidal])[labels, np.arange(len(labels))]


@dataclass(frozen=True)
class BatchDraw:
    """A batch's quantised profiles and noise offsets, ready to be composed."""

    rows: np.ndarray  # uint8 [B, T, C, S]: blob height per row and channel
    cols: np.ndarray  # uint8 [B, T, S]: blob profile per column, 0..PROFILE_STEPS
    background: np.ndarray  # uint8 [B]
    noise_offset: np.ndarray  # int64 [B]


def draw_batch(cfg: GenConfig, indices: range, labels: np.ndarray) -> BatchDraw:
    """Everything random about samples ``indices``; sample i uses only (seed, i)."""
    count = len(indices)
    if count == 0 or count != len(labels):
        raise ValueError(f"draw_batch: {count} indices, {len(labels)} labels")
    frames, size = cfg.frames, cfg.size
    keys = np.arange(indices.start, indices.stop, dtype=np.uint64)
    u = hash_uniform(cfg.seed, SAMPLE_STREAM, keys, PARAMS_PER_SAMPLE + 2 * frames)
    t = np.arange(frames, dtype=np.float64) / max(frames - 1, 1)
    pixels = trajectories(labels, u, t) * (size - 1)  # [B, T, 2]
    if cfg.augment:
        jitter_px = max(size / 32.0, 0.5)
        jitter = u[:, PARAMS_PER_SAMPLE:].reshape(count, frames, 2)
        pixels = pixels + (2.0 * jitter - 1.0) * jitter_px
        span = noise_table_bytes(cfg) - cfg.sample_bytes + 1
        noise_offset = np.floor(u[:, 15] * span).astype(np.int64)
        brightness = 0.75 + 0.25 * u[:, 9]
        background = np.floor(BACKGROUND_AUGMENT_MAX * u[:, 10]).astype(np.int64)
        level_max = LEVEL_MAX_AUGMENT
    else:
        noise_offset = np.zeros(count, dtype=np.int64)
        brightness = np.ones(count)
        background = np.full(count, BACKGROUND_PLAIN, dtype=np.int64)
        level_max = LEVEL_MAX_PLAIN
    if cfg.channels == 3:
        colour = 0.35 + 0.65 * u[:, 11:14]
        colour = colour / colour.max(axis=1, keepdims=True)
    else:
        colour = np.ones((count, 1))
    # rows * cols <= row_max * PROFILE_STEPS <= level_max - background: never wraps.
    row_max = (level_max - background) // PROFILE_STEPS
    height = brightness[:, None] * colour * row_max[:, None]  # [B, C]
    inv_two_var = 1.0 / (2 * ((0.04 + 0.04 * u[:, 8]) * size) ** 2)
    grid = np.arange(size, dtype=np.float64)
    scale = -inv_two_var[:, None, None]
    profile_x = _elementwise(np.exp, (grid - pixels[:, :, 0:1]) ** 2 * scale)  # [B, T, S]
    profile_y = _elementwise(np.exp, (grid - pixels[:, :, 1:2]) ** 2 * scale)
    rows = np.rint(profile_y[:, :, None, :] * height[:, None, :, None]).astype(np.uint8)
    cols = np.rint(profile_x * PROFILE_STEPS).astype(np.uint8)
    return BatchDraw(rows, cols, background.astype(np.uint8), noise_offset)


class Composer:
    """Composes batches into uint8 videos; one per worker and configuration."""

    def __init__(self, cfg: GenConfig) -> None:
        self.cfg = cfg
        self._noise = noise_table(cfg.seed, noise_table_bytes(cfg)) if cfg.augment else None

    def compose(self, draw: BatchDraw, out: np.ndarray) -> np.ndarray:
        """uint8 videos [B, T, C, S, S] into ``out`` (batch-vectorised, integer only)."""
        cfg = self.cfg
        count = len(draw.background)
        shape = (count, cfg.frames, cfg.channels, cfg.size, cfg.size)
        if out.shape != shape or out.dtype != np.uint8:
            raise ValueError(f"compose: out must be uint8 {shape}, got {out.dtype} {out.shape}")
        np.einsum("btcy,btx->btcyx", draw.rows, draw.cols, out=out)
        flat = out.reshape(count, -1)
        pixels = flat.shape[1]
        if self._noise is not None:
            for row, start in zip(flat, draw.noise_offset.tolist(), strict=True):
                np.add(row, self._noise[start : start + pixels], out=row)
        flat += draw.background[:, None]
        return out


def render(cfg: GenConfig, indices: range, labels: np.ndarray) -> np.ndarray:
    """uint8 videos for consecutive sample ``indices`` with the given labels (convenience)."""
    out = np.empty((len(indices), cfg.frames, cfg.channels, cfg.size, cfg.size), dtype=np.uint8)
    return Composer(cfg).compose(draw_batch(cfg, indices, labels), out)
