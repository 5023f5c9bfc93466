"""Rendering: deterministic per (seed, index), independent of batching, in range."""

from __future__ import annotations

import numpy as np
import pytest
from preflight_examples.datagen.config import GenConfig
from preflight_examples.datagen.hashrng import hash_uniform
from preflight_examples.datagen.plan import labels_for
from preflight_examples.datagen.render import LEVEL_MAX_PLAIN, render, trajectories


@pytest.mark.parametrize(
    "cfg",
    [
        GenConfig(samples=40, frames=5, size=13, channels=3),  # odd pixel count: nibble split
        GenConfig(samples=40, frames=8, size=16, channels=1, augment=False),
    ],
)
def test_a_sample_does_not_depend_on_its_batch(cfg: GenConfig) -> None:
    labels = labels_for(cfg.seed, cfg.classes, 0, 9)
    whole = render(cfg, range(9), labels)
    single = np.concatenate([render(cfg, range(i, i + 1), labels[i : i + 1]) for i in range(9)])
    offset = render(cfg, range(4, 9), labels[4:])
    assert np.array_equal(whole, single)
    assert np.array_equal(whole[4:], offset)


def test_shape_dtype_and_range() -> None:
    cfg = GenConfig(samples=10, frames=4, size=16, channels=3, augment=False)
    videos = render(cfg, range(4), labels_for(cfg.seed, 4, 0, 4))
    assert videos.shape == (4, 4, 3, 16, 16) and videos.dtype == np.uint8
    assert videos.max() <= LEVEL_MAX_PLAIN and videos.max() > 100  # the blob is visible


def test_seed_and_augmentation_change_the_samples() -> None:
    base = GenConfig(samples=10, frames=4, size=16, channels=1)
    labels = labels_for(base.seed, 4, 0, 4)
    other_seed = GenConfig(**{**base.to_json(), "seed": 7})
    plain = GenConfig(**{**base.to_json(), "augment": False})
    a, b, c = (render(cfg, range(4), labels) for cfg in (base, other_seed, plain))
    assert not np.array_equal(a, b) and not np.array_equal(a, c)
    assert not np.array_equal(a[0], a[1])


def test_trajectory_classes_have_their_shapes() -> None:
    t = np.linspace(0, 1, 32)
    u = np.full((4, 16), 0.3)
    linear, circular, parabolic, sinusoidal = trajectories(np.arange(4), u, t)
    assert np.abs(np.diff(linear, 2, axis=0)).max() < 1e-12  # constant velocity
    centre = 0.5 + (0.3 - 0.5) * 0.2  # from u[1:3]
    assert np.allclose(np.linalg.norm(circular - centre, axis=1), 0.15 + 0.15 * 0.3)
    assert np.abs(np.diff(parabolic, 2, axis=0)).max() > 1e-5  # curved
    lateral = (sinusoidal - linear) @ np.array([-np.sin(0.6 * np.pi), np.cos(0.6 * np.pi)])
    assert np.sign(lateral).min() < 0 < np.sign(lateral).max()  # waves across the line
    with pytest.raises(ValueError):
        trajectories(np.array([4]), u[:1], t)


def test_hashed_numbers_depend_only_on_the_key() -> None:
    whole = hash_uniform(42, 7, np.arange(100, 200), 20)
    part = hash_uniform(42, 7, np.arange(150, 160), 20)
    assert np.array_equal(whole[50:60], part)
    assert not np.array_equal(whole, hash_uniform(43, 7, np.arange(100, 200), 20))
    assert not np.array_equal(whole, hash_uniform(42, 8, np.arange(100, 200), 20))
    assert 0.0 <= whole.min() and whole.max() < 1.0 and abs(whole.mean() - 0.5) < 0.02
