"""Parameter validation names the option; drift names the parameters (pure)."""

from __future__ import annotations

import pytest
from preflight_examples.datagen.config import (
    GenConfig,
    differing_parameters,
    validate,
    validate_workers,
)

from preflight.durable import BadInputError


@pytest.mark.parametrize(
    "changes,option",
    [
        ({"samples": 0}, "--samples"),
        ({"frames": 0}, "--frames"),
        ({"size": -3}, "--size"),
        ({"channels": 2}, "--channels"),
        ({"classes": 0}, "--classes"),
        ({"classes": 5}, "--classes"),
        ({"samples": 3, "classes": 4}, "--classes"),
        ({"shard_size": 0}, "--shard-size"),
        ({"samples": 100_000, "shard_size": 1}, "--shard-size"),
        ({"seed": -1}, "--seed"),
        ({"size": 1024, "frames": 64}, "--frames/--size/--channels"),
    ],
)
def test_bad_parameters_are_refused_naming_the_option(changes: dict, option: str) -> None:
    cfg = GenConfig(**{"samples": 100, **changes})
    with pytest.raises(BadInputError, match=option):
        validate(cfg)


def test_defaults_are_the_production_settings() -> None:
    cfg = validate(GenConfig(samples=30000))
    assert (cfg.frames, cfg.size, cfg.channels, cfg.classes, cfg.shard_size) == (16, 64, 3, 4, 1000)
    assert cfg.sample_bytes == 16 * 3 * 64 * 64 and cfg.shard_count == 30


def test_workers_must_be_positive() -> None:
    with pytest.raises(BadInputError, match="--workers"):
        validate_workers(0)


def test_differing_parameters_are_named_as_options() -> None:
    old = GenConfig(samples=10).to_json()
    new = GenConfig(samples=10, shard_size=5, seed=1).to_json()
    assert differing_parameters(old, new) == ["seed", "shard-size"]
    assert differing_parameters(old, old) == []


def test_config_round_trips_and_rejects_mistyped_fields() -> None:
    cfg = GenConfig(samples=10, augment=False)
    assert GenConfig.from_json(cfg.to_json(), "x") == cfg
    with pytest.raises(BadInputError, match="'augment'"):
        GenConfig.from_json({**cfg.to_json(), "augment": 1}, "x")
    with pytest.raises(BadInputError, match="'frames'"):
        GenConfig.from_json({**cfg.to_json(), "frames": True}, "x")
    assert "shard_size" not in cfg.content_json()
