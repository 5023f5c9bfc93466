"""Generation split across ranks (torchrun, or ``--rank``/``--world-size`` by hand).

Rank r of W generates the shards whose index i has ``i % W == r``, into the same directory.
The ranks share the SQLite ledger (WAL: safe for concurrent writers) and coordinate through
it and the shard manifests only, so datagen never needs a process group. Rank 0 holds the
directory's run lock, owns the top-level files (PROGRESS.json with the global count,
dataset.json, the top manifest) and finalizes once every shard is committed; the other
ranks lock and report in ``ranks/rank-N/``. The shards are the same bytes whichever rank
wrote them, so the fingerprint equals the single-process one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from preflight.durable import BadInputError
from preflight_examples.datagen.plan import ShardSpec

WORLD_SIZE_MAX = 4096
RANKS_DIR = "ranks"
# torchrun sets these for every worker it starts (torch.distributed.run).
ENV_RANK = "RANK"
ENV_WORLD_SIZE = "WORLD_SIZE"


@dataclass(frozen=True)
class RankInfo:
    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.world_size <= WORLD_SIZE_MAX:
            raise BadInputError(f"--world-size: must be in [1, {WORLD_SIZE_MAX}]")
        if not 0 <= self.rank < self.world_size:
            raise BadInputError(
                f"--rank: must be in [0, world size {self.world_size}), got {self.rank}"
            )

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def leader(self) -> bool:
        """Rank 0: holds the directory lock, writes the top-level files, finalizes."""
        return self.rank == 0

    def mine(self, specs: list[ShardSpec]) -> list[ShardSpec]:
        """This rank's shards: index i with i % world_size == rank (pure)."""
        return [s for s in specs if s.index % self.world_size == self.rank]

    def rank_dir(self, out: Path) -> Path:
        return out / RANKS_DIR / f"rank-{self.rank}"


def _env_int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise BadInputError(f"environment {name}={raw!r}: not an integer") from None


def resolve(rank: int | None, world_size: int | None, env: Mapping[str, str]) -> RankInfo:
    """Options win over torchrun's environment; neither given means one process (pure)."""
    rank = rank if rank is not None else _env_int(env, ENV_RANK)
    world_size = world_size if world_size is not None else _env_int(env, ENV_WORLD_SIZE)
    if world_size is None and rank is None:
        return RankInfo()
    if world_size is None or rank is None:
        raise BadInputError("--rank and --world-size go together (or RANK and WORLD_SIZE)")
    return RankInfo(rank, world_size)


def from_environment(rank: int | None, world_size: int | None) -> RankInfo:
    return resolve(rank, world_size, os.environ)
