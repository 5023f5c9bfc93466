"""Deterministic, resumable sample order: (seed, epoch, position) is the whole state.

Each epoch is a fresh permutation drawn from ``default_rng([seed, epoch])``, so the order
at any position is a pure function of three integers. A checkpoint stores them; a resumed
run rebuilds the same permutation and continues mid-epoch with the same batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from preflight.durable import BadInputError


@dataclass(frozen=True)
class SamplerState:
    seed: int
    epoch: int
    position: int

    def to_json(self) -> dict[str, int]:
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position}


def epoch_order(samples: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation of ``range(samples)`` used in ``epoch`` (pure)."""
    return np.random.default_rng([seed, epoch]).permutation(samples)


class EpochSampler:
    """Hands out sample indices batch by batch, crossing epoch boundaries seamlessly."""

    def __init__(self, samples: int, state: SamplerState) -> None:
        if samples < 1:
            raise BadInputError(f"sampler: dataset has {samples} samples, need at least 1")
        if state.epoch < 0 or not 0 <= state.position < samples:
            raise BadInputError(
                f"sampler: state epoch={state.epoch} position={state.position} is outside "
                f"a dataset of {samples} samples"
            )
        self.samples = samples
        self.seed = state.seed
        self.epoch = state.epoch
        self.position = state.position
        self._order = epoch_order(samples, self.seed, self.epoch)

    @property
    def state(self) -> SamplerState:
        return SamplerState(self.seed, self.epoch, self.position)

    def next_indices(self, count: int) -> np.ndarray:
        """The next ``count`` sample indices; the loop runs at most count/samples + 2 times."""
        parts = []
        needed = count
        while needed > 0:
            take = min(needed, self.samples - self.position)
            parts.append(self._order[self.position : self.position + take])
            self.position += take
            needed -= take
            if self.position == self.samples:
                self.epoch += 1
                self.position = 0
                self._order = epoch_order(self.samples, self.seed, self.epoch)
        return np.concatenate(parts) if len(parts) > 1 else parts[0].copy()
