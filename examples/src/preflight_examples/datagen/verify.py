"""`datagen verify` and `datagen fingerprint`: read a finished dataset back and check it all.

One pass over every byte: each file's sha256 is checked against its shard manifest and the
top manifest, while the same bytes feed the layout-independent content fingerprint.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from preflight.durable import BadInputError, DurableError, VerifyError, manifest
from preflight.durable.ledger import read_checksums
from preflight_examples.datagen import store
from preflight_examples.datagen.config import GenConfig, validate
from preflight_examples.datagen.plan import ShardSpec, expected_class_counts, plan_shards

LEDGER_NAME = "ledger.sqlite"  # datagen.generate's; imported from there it would cycle
LEDGER_RUN_ID = "datagen"


@dataclass(frozen=True)
class DatasetReport:
    directory: str
    samples: int
    shards: int
    class_counts: tuple[int, ...]
    fingerprint: str

    def summary(self) -> str:
        return (
            f"ok: {self.directory}: {self.samples} samples in {self.shards} shards, "
            f"class counts {list(self.class_counts)}, every checksum verified"
        )


def _check_shard_list(cfg: GenConfig, listed: list[Any], where: str) -> list[ShardSpec]:
    """dataset.json's shard list must be exactly the plan: no index missing or repeated."""
    specs = plan_shards(cfg.samples, cfg.shard_size)
    expected = store.dataset_json(cfg, specs)["shards"]
    if listed != expected:
        if len(listed) != len(expected):
            detail = f"{len(listed)} shards listed, {len(expected)} expected"
        else:
            first = next(i for i, (a, b) in enumerate(zip(listed, expected, strict=True)) if a != b)
            detail = f"shards[{first}] is {listed[first]!r}, expected {expected[first]!r}"
        raise VerifyError(where, f"shard list differs from the plan: {detail}")
    return specs


def _load_config(out: Path) -> tuple[GenConfig, list[ShardSpec]]:
    cfg, listed = store.read_dataset_json(out)
    where = str(out / store.DATASET_JSON)
    try:
        validate(cfg)
    except BadInputError as exc:
        raise VerifyError(where, f"invalid parameters: {exc}") from None
    return cfg, _check_shard_list(cfg, listed, where)


def _check_top_listing(out: Path, top: manifest.Manifest, specs: list[ShardSpec]) -> None:
    listed = {e.path for e in top.files}
    expected = {store.DATASET_JSON}
    for spec in specs:
        expected.update((spec.videos, spec.labels, spec.manifest))
    missing = sorted(expected - listed)
    extra = sorted(listed - expected)
    if missing or extra:
        first = (missing or extra)[0]
        kind = "is not listed in" if missing else "is unexpectedly listed in"
        raise VerifyError(str(out / first), f"{kind} {out / manifest.MANIFEST_NAME}")


def _cross_check_ledger(out: Path, cfg: GenConfig, specs: list[ShardSpec]) -> None:
    """When the generating ledger is still beside the dataset, every shard must hold what it
    recorded (a dataset copied without its ledger is checked against its manifests only)."""
    ledger = out / LEDGER_NAME
    if not (ledger.exists() or ledger.is_symlink()):
        return
    try:
        checksums = read_checksums(ledger, LEDGER_RUN_ID)
    except DurableError as exc:
        raise VerifyError(str(ledger), str(exc)) from None
    if checksums is not None:
        store.cross_check(out, cfg, specs, checksums)


def scan(directory: str | Path) -> DatasetReport:
    """Verify the whole dataset; raise ``VerifyError`` naming the first bad file."""
    out = Path(directory)
    if not out.is_dir():
        raise BadInputError(f"{out}: no such directory")
    top = manifest.read(out)
    cfg, specs = _load_config(out)
    _check_top_listing(out, top, specs)
    top_entries = {e.path: e for e in top.files}
    manifest.verify_entry(out, top_entries[store.DATASET_JSON])
    videos_hasher, labels_hasher = hashlib.sha256(), hashlib.sha256()
    counts = np.zeros(cfg.classes, dtype=np.int64)
    for spec in specs:
        manifest.verify_entry(out, top_entries[spec.manifest])
        checked = store.check_shard(out, cfg, spec, content=(videos_hasher, labels_hasher))
        for entry in checked.entries:
            if top_entries[entry.path] != entry:
                raise VerifyError(str(out / entry.path), "differs from the top manifest")
        counts += np.asarray(checked.class_counts)
    expected = expected_class_counts(cfg.samples, cfg.classes, cfg.seed)
    if not np.array_equal(counts, expected) or counts.max() - counts.min() > 1:
        raise VerifyError(
            str(out / store.DATASET_JSON),
            f"class counts {counts.tolist()} are not balanced as planned {expected.tolist()}",
        )
    _cross_check_ledger(out, cfg, specs)
    fingerprint = store.fingerprint_digest(cfg, videos_hasher.digest(), labels_hasher.digest())
    return DatasetReport(
        str(out), cfg.samples, len(specs), tuple(int(c) for c in counts), fingerprint
    )
