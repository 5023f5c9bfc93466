"""The generation parameters, their limits and their comparison (pure; no I/O).

A ``GenConfig`` is everything that determines the bytes of a dataset directory. Worker count
is deliberately not part of it: the output is identical for any number of workers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from preflight.durable import BadInputError

SAMPLES_MAX = 100_000_000
FRAMES_MAX = 1024
SIZE_MIN = 4  # below this a blob is a single pixel and the classes are indistinguishable
SIZE_MAX = 1024
CHANNELS_ALLOWED = (1, 3)
CLASS_NAMES = ("linear", "circular", "parabolic", "sinusoidal")
SHARD_SIZE_MAX = 10_000_000
# The top manifest lists three files per shard plus dataset.json; durable caps it at 100,000.
SHARDS_MAX = 30_000
# One rendered sample must fit comfortably in a worker's memory budget.
SAMPLE_BYTES_MAX = 64 << 20
SEED_MAX = 2**63 - 1
WORKERS_MAX = 256


@dataclass(frozen=True)
class GenConfig:
    samples: int
    frames: int = 16
    size: int = 64
    channels: int = 3
    classes: int = 4
    shard_size: int = 1000
    seed: int = 42
    augment: bool = True

    @property
    def sample_bytes(self) -> int:
        """Bytes of one uint8 video [T, C, H, W]."""
        return self.frames * self.channels * self.size * self.size

    @property
    def shard_count(self) -> int:
        return math.ceil(self.samples / self.shard_size)

    @property
    def class_names(self) -> list[str]:
        return list(CLASS_NAMES[: self.classes])

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def content_json(self) -> dict[str, Any]:
        """The parameters that determine sample content; layout (shard_size) excluded."""
        raw = self.to_json()
        del raw["shard_size"]
        return raw

    @classmethod
    def from_json(cls, raw: dict[str, Any], where: str) -> GenConfig:
        """Rebuild a config read from a file; missing or mistyped fields name ``where``."""
        values = {}
        for f in fields(cls):
            if f.name not in raw:
                raise BadInputError(f"{where}: missing field {f.name!r}")
            value = raw[f.name]
            want_bool = f.name == "augment"
            if want_bool != isinstance(value, bool) or not isinstance(value, int):
                kind = "a boolean" if want_bool else "an integer"
                raise BadInputError(f"{where}: field {f.name!r} must be {kind}, got {value!r}")
            values[f.name] = value
        return cls(**values)


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInputError(f"--{name}: must be an integer, got {value!r}")
    if not low <= value <= high:
        raise BadInputError(f"--{name}: must be between {low} and {high}, got {value}")


def validate(cfg: GenConfig) -> GenConfig:
    """Refuse parameters that cannot produce a valid dataset; messages name the option."""
    _check_range("samples", cfg.samples, 1, SAMPLES_MAX)
    _check_range("frames", cfg.frames, 1, FRAMES_MAX)
    _check_range("size", cfg.size, SIZE_MIN, SIZE_MAX)
    if cfg.channels not in CHANNELS_ALLOWED:
        raise BadInputError(f"--channels: must be 1 (grayscale) or 3 (RGB), got {cfg.channels}")
    _check_range("classes", cfg.classes, 1, len(CLASS_NAMES))
    if cfg.classes > cfg.samples:
        raise BadInputError(
            f"--classes: {cfg.classes} classes cannot be balanced over {cfg.samples} samples"
        )
    _check_range("shard-size", cfg.shard_size, 1, SHARD_SIZE_MAX)
    if cfg.shard_count > SHARDS_MAX:
        raise BadInputError(
            f"--shard-size: {cfg.shard_size} makes {cfg.shard_count} shards, "
            f"more than the limit of {SHARDS_MAX}; use a larger shard size"
        )
    _check_range("seed", cfg.seed, 0, SEED_MAX)
    if cfg.sample_bytes > SAMPLE_BYTES_MAX:
        raise BadInputError(
            f"--frames/--size/--channels: one sample would be {cfg.sample_bytes} bytes, "
            f"more than the limit of {SAMPLE_BYTES_MAX}"
        )
    return cfg


def validate_workers(workers: int) -> int:
    _check_range("workers", workers, 1, WORKERS_MAX)
    return workers


def differing_parameters(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Option names (as typed on the command line) whose values differ."""
    keys = sorted(set(old) | set(new))
    return [k.replace("_", "-") for k in keys if old.get(k, "<absent>") != new.get(k, "<absent>")]
