"""The dataset directory on disk (docs/dataset-format.md): shards, dataset.json, manifests.

A shard is committed when its own ``manifest.json`` (durable, written last) verifies and its
meta names the shard's index, first sample, count and configuration, so a shard moved or
swapped into the wrong place is refused. The dataset is committed when the top
``manifest.json`` is written by ``finalize``; it is built from the shard manifests, so no
data is read or copied again.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from preflight.durable import (
    VerifyError,
    atomic_write,
    config_hash,
    faults,
    fsync_dir,
    manifest,
    read_json,
    sha256_bytes,
)
from preflight.durable.atomic import encode, named
from preflight.durable.errors import BadInputError
from preflight.durable.manifest import FileEntry, Manifest
from preflight_examples.datagen.config import GenConfig
from preflight_examples.datagen.plan import ShardSpec, labels_for
from preflight_examples.datagen.render import Composer, batch_samples, draw_batch
from preflight_examples.datagen.streamio import ALIGN_BYTES, HashingWriter, hash_file

DATASET_FORMAT = "preflight-dataset/1"
SHARD_FORMAT = "preflight-dataset-shard/1"
DATASET_JSON = "dataset.json"
VIDEOS_NAME = "videos.npy"
LABELS_NAME = "labels.npy"
SHARD_FILES = (LABELS_NAME, VIDEOS_NAME)  # sorted, as manifests list them
# The videos header is padded to one block so the data starts block-aligned (O_DIRECT).
VIDEOS_HEADER_BYTES = ALIGN_BYTES
NPY_MAGIC_V1 = b"\x93NUMPY\x01\x00"
DATASET_JSON_BYTES_MAX = 16 << 20


@dataclass(frozen=True)
class ShardWritten:
    index: int
    videos_sha256: str
    direct_io: bool


@dataclass(frozen=True)
class ShardChecked:
    entries: tuple[FileEntry, ...]  # paths relative to the dataset directory
    class_counts: tuple[int, ...]


def videos_header(cfg: GenConfig, count: int) -> bytes:
    """A version 1.0 .npy header for uint8 [count, T, C, S, S], padded to one block."""
    shape = (count, cfg.frames, cfg.channels, cfg.size, cfg.size)
    text = f"{{'descr': '|u1', 'fortran_order': False, 'shape': {shape}, }}"
    pad = VIDEOS_HEADER_BYTES - len(NPY_MAGIC_V1) - 2 - len(text) - 1
    if pad < 0:
        raise ValueError(f"npy header for shape {shape} does not fit {VIDEOS_HEADER_BYTES} bytes")
    body = (text + " " * pad + "\n").encode("latin1")
    return NPY_MAGIC_V1 + len(body).to_bytes(2, "little") + body


def shard_meta(cfg: GenConfig, spec: ShardSpec) -> dict[str, Any]:
    return {
        "kind": SHARD_FORMAT,
        "index": spec.index,
        "start": spec.start,
        "count": spec.count,
        "config_hash": config_hash(cfg.to_json()),
    }


# ---------------------------------------------------------------------------- writing


def _remove_path(path: Path) -> None:
    """Remove a file, symlink or (tampered) directory without following symlinks."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def reset_shard_dir(out: Path, spec: ShardSpec) -> tuple[Path, bool]:
    """An empty shard directory (and whether it was created). An old manifest goes first,
    so a crash never leaves a committed-looking shard with half-written data."""
    shards = out / spec.dirname.rsplit("/", 1)[0]
    shards.mkdir(exist_ok=True)
    shard_dir = out / spec.dirname
    if shard_dir.is_symlink() or (shard_dir.exists() and not shard_dir.is_dir()):
        shard_dir.unlink()
    if not shard_dir.is_dir():
        shard_dir.mkdir()
        return shard_dir, True
    old_manifest = shard_dir / manifest.MANIFEST_NAME
    if old_manifest.exists() or old_manifest.is_symlink():
        _remove_path(old_manifest)
        fsync_dir(shard_dir)
    for entry in sorted(shard_dir.iterdir()):
        _remove_path(entry)
    return shard_dir, False


def _open_new(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)


def _render_into(
    writer: HashingWriter, cfg: GenConfig, spec: ShardSpec, labels: np.ndarray
) -> None:
    """Render the shard's samples batch by batch into ``writer`` (header first)."""
    batch = batch_samples(cfg)
    composer = Composer(cfg)
    buffer = np.empty((batch, cfg.frames, cfg.channels, cfg.size, cfg.size), dtype=np.uint8)
    writer.write(videos_header(cfg, spec.count))
    for offset in range(0, spec.count, batch):
        count = min(batch, spec.count - offset)
        first = spec.start + offset
        draw = draw_batch(cfg, range(first, first + count), labels[offset : offset + count])
        writer.write(composer.compose(draw, buffer[:count]))


@dataclass
class PendingShard:
    """A shard whose samples are rendered and queued for writing, not yet committed.

    ``commit`` may run on another thread while the next shard renders: that hides the
    disk-sync latency, which on a busy disk is milliseconds per sync, behind CPU work.
    """

    out: Path
    cfg: GenConfig
    spec: ShardSpec
    created: bool
    videos_fd: int
    labels_fd: int
    writer: HashingWriter
    labels_entry: FileEntry

    def commit(self) -> ShardWritten:
        """Wait for the data, make both files durable, then write the manifest last."""
        shard_dir = self.out / self.spec.dirname
        try:
            size, digest = self.writer.close()
            expected = VIDEOS_HEADER_BYTES + self.spec.count * self.cfg.sample_bytes
            if size != expected:  # pair assertion: exactly the planned bytes went out
                raise OSError(f"{self.spec.videos}: wrote {size} bytes, expected {expected}")
            faults.point("datagen.after_videos_write")
            # Syncing both files back to back coalesces their journal commits.
            _fsync(self.videos_fd, shard_dir / VIDEOS_NAME)
            _fsync(self.labels_fd, shard_dir / LABELS_NAME)
        finally:
            self.abandon()
        if self.created:
            fsync_dir(shard_dir.parent)  # the new shard directory's own entry
        faults.point("datagen.before_shard_commit")
        videos_entry = FileEntry(VIDEOS_NAME, size, digest)
        manifest.commit(
            shard_dir,
            files=list(SHARD_FILES),
            config=self.cfg.to_json(),
            meta=shard_meta(self.cfg, self.spec),
            known={LABELS_NAME: self.labels_entry, VIDEOS_NAME: videos_entry},
        )
        faults.point("datagen.after_shard_commit")
        return ShardWritten(self.spec.index, digest, self.writer.direct)

    def abandon(self) -> None:
        """Stop the writer and close the files (idempotent); the directory stays
        uncommitted and is emptied by the next attempt."""
        self.writer.abort()
        for fd in (self.videos_fd, self.labels_fd):
            if fd >= 0:
                os.close(fd)
        self.videos_fd = self.labels_fd = -1


def start_shard(out: Path, cfg: GenConfig, spec: ShardSpec) -> PendingShard:
    """Render one shard into its (uncommitted) directory; ``commit`` finishes it.

    The data files are written in place, not through temp files: until the manifest exists
    the directory is not a committed shard, and a retry empties it first.
    """
    shard_dir, created = reset_shard_dir(out, spec)
    faults.point("datagen.before_shard_write")
    labels = labels_for(cfg.seed, cfg.classes, spec.start, spec.count)
    labels_bytes = encode(labels)
    videos_fd = _open_new(shard_dir / VIDEOS_NAME)
    try:
        writer = HashingWriter(videos_fd, path=shard_dir / VIDEOS_NAME)
    except BaseException:
        os.close(videos_fd)
        raise
    entry = FileEntry(LABELS_NAME, len(labels_bytes), sha256_bytes(labels_bytes))
    pending = PendingShard(out, cfg, spec, created, videos_fd, -1, writer, entry)
    try:
        _render_into(writer, cfg, spec, labels)
        _write_labels(pending, shard_dir / LABELS_NAME, labels_bytes)
    except BaseException:
        pending.abandon()
        raise
    return pending


def _write_labels(pending: PendingShard, path: Path, data: bytes) -> None:
    try:
        pending.labels_fd = _open_new(path)
        if os.write(pending.labels_fd, data) != len(data):
            raise OSError(errno.EIO, "short write", str(path))
    except OSError as exc:
        raise named(exc, path) from None  # a write's ENOSPC names no file


def _fsync(fd: int, path: Path) -> None:
    """fsync naming the file: delayed allocation reports a full disk here, not at write."""
    try:
        os.fsync(fd)
    except OSError as exc:
        raise named(exc, path) from None


def write_shard(out: Path, cfg: GenConfig, spec: ShardSpec) -> ShardWritten:
    """Render, write and commit one shard; the manifest is written last."""
    return start_shard(out, cfg, spec).commit()


# ---------------------------------------------------------------------------- checking


def _check_meta(found: Manifest, cfg: GenConfig, spec: ShardSpec, where: str) -> None:
    expected = shard_meta(cfg, spec)
    differing = [k for k in expected if found.meta.get(k) != expected[k]]
    if differing:
        got = {k: found.meta.get(k) for k in differing}
        raise VerifyError(
            where,
            f"records {got} but {spec.dirname} must hold "
            f"{ {k: expected[k] for k in differing} } (moved, swapped or foreign shard)",
        )
    names = tuple(sorted(e.path for e in found.files))
    if names != SHARD_FILES:
        raise VerifyError(where, f"lists files {list(names)}, expected {list(SHARD_FILES)}")


def _parse_videos_header(path: Path, cfg: GenConfig, spec: ShardSpec) -> None:
    """Pair assertion on read: the header names exactly the planned dtype and shape."""
    with open(path, "rb") as handle:
        try:
            version = np.lib.format.read_magic(handle)
            if version != (1, 0):
                raise ValueError(f"npy version {version}, expected (1, 0)")
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        except ValueError as exc:
            raise VerifyError(str(path), f"not a valid .npy file: {exc}") from None
        offset = handle.tell()
    want = (spec.count, cfg.frames, cfg.channels, cfg.size, cfg.size)
    if dtype != np.uint8 or fortran or tuple(shape) != want or offset != VIDEOS_HEADER_BYTES:
        raise VerifyError(
            str(path), f"holds {dtype} {shape} (fortran={fortran}), expected uint8 {want}"
        )


def _check_size(path: Path, entry: FileEntry, expected_size: int) -> None:
    if path.is_symlink() or not path.is_file():
        raise VerifyError(str(path), "listed in the shard manifest but missing")
    size = path.stat().st_size
    if size != entry.size or size != expected_size:
        raise VerifyError(
            str(path), f"size {size}, manifest says {entry.size}, expected {expected_size}"
        )


def check_shard(
    out: Path, cfg: GenConfig, spec: ShardSpec, *, content: tuple[Any, Any] | None = None
) -> ShardChecked:
    """Verify one committed shard completely; raise ``VerifyError`` naming the bad file.

    ``content``: (videos hasher, labels hasher) fed the shard's sample bytes and labels,
    in order, for the dataset fingerprint.
    """
    shard_dir = out / spec.dirname
    if shard_dir.is_symlink() or not shard_dir.is_dir():
        raise VerifyError(str(shard_dir), "shard directory is missing")
    where = str(shard_dir / manifest.MANIFEST_NAME)
    found = manifest.read(shard_dir)
    _check_meta(found, cfg, spec, where)
    entries = {e.path: e for e in found.files}

    labels = labels_for(cfg.seed, cfg.classes, spec.start, spec.count)
    labels_bytes = encode(labels)
    labels_path = shard_dir / LABELS_NAME
    _check_size(labels_path, entries[LABELS_NAME], len(labels_bytes))
    if labels_path.read_bytes() != labels_bytes or entries[LABELS_NAME].sha256 != sha256_bytes(
        labels_bytes
    ):
        raise VerifyError(str(labels_path), "labels differ from the planned labels")

    videos_path = shard_dir / VIDEOS_NAME
    _check_size(
        videos_path, entries[VIDEOS_NAME], VIDEOS_HEADER_BYTES + spec.count * cfg.sample_bytes
    )
    _parse_videos_header(videos_path, cfg, spec)
    videos_hasher = content[0] if content is not None else None
    digest = hash_file(videos_path, skip_bytes=VIDEOS_HEADER_BYTES, content=videos_hasher)
    if digest != entries[VIDEOS_NAME].sha256:
        raise VerifyError(str(videos_path), "sha256 differs from the shard manifest (corrupt)")
    if content is not None:
        content[1].update(labels.astype("<i8").tobytes())
    rel = [
        FileEntry(f"{spec.dirname}/{name}", entries[name].size, entries[name].sha256)
        for name in SHARD_FILES
    ]
    counts = np.bincount(labels, minlength=cfg.classes)
    return ShardChecked(tuple(rel), tuple(int(c) for c in counts))


# ---------------------------------------------------------------------------- dataset


def dataset_json(cfg: GenConfig, specs: list[ShardSpec]) -> dict[str, Any]:
    raw: dict[str, Any] = {"format": DATASET_FORMAT, **cfg.to_json()}
    raw["class_names"] = cfg.class_names
    raw["shards"] = [
        {
            "index": s.index,
            "start": s.start,
            "count": s.count,
            "videos": s.videos,
            "labels": s.labels,
        }
        for s in specs
    ]
    return raw


def read_dataset_json(out: Path) -> tuple[GenConfig, list[dict[str, Any]]]:
    """The configuration and shard list recorded in dataset.json; errors name the file."""
    path = out / DATASET_JSON
    where = str(path)
    try:
        raw = read_json(path, bytes_max=DATASET_JSON_BYTES_MAX)
        if not isinstance(raw, dict) or raw.get("format") != DATASET_FORMAT:
            raise BadInputError(f"{where}: not a {DATASET_FORMAT} file")
        cfg = GenConfig.from_json(raw, where)
        shards = raw.get("shards")
        if not isinstance(shards, list):
            raise BadInputError(f"{where}: field 'shards' must be a list")
    except BadInputError as exc:
        raise VerifyError(where, str(exc)) from None
    return cfg, shards


def finalize(out: Path, cfg: GenConfig, specs: list[ShardSpec]) -> Manifest:
    """Write dataset.json, then the top manifest (last) from the shard manifests' hashes."""
    faults.point("datagen.before_finalize")
    atomic_write(out / DATASET_JSON, dataset_json(cfg, specs))
    faults.point("datagen.after_dataset_json")
    files = [DATASET_JSON]
    known: dict[str, FileEntry] = {}
    for spec in specs:
        for entry in manifest.read(out / spec.dirname).files:
            rel = f"{spec.dirname}/{entry.path}"
            known[rel] = FileEntry(rel, entry.size, entry.sha256)
        files += [spec.labels, spec.manifest, spec.videos]
    meta = {"kind": DATASET_FORMAT, "samples": cfg.samples, "shards": len(specs)}
    return manifest.commit(out, files=files, config=cfg.to_json(), meta=meta, known=known)


def uncommit_dataset(out: Path) -> bool:
    """Remove the top manifest: the directory stops being a dataset until finalize."""
    path = out / manifest.MANIFEST_NAME
    if not (path.exists() or path.is_symlink()):
        return False
    path.unlink()
    fsync_dir(out)
    return True


def cross_check(
    out: Path, cfg: GenConfig, specs: list[ShardSpec], checksums: dict[str, str | None]
) -> None:
    """Every committed shard's videos sha256 must be the one the ledger recorded when the
    shard was generated. A shard whose data *and* shard manifest were changed consistently
    still verifies on its own; only this comparison finds it (VerifyError, exit 4)."""
    for spec in specs:
        recorded = checksums.get(spec.item_id)
        shard_dir = out / spec.dirname
        if recorded is None or not (shard_dir / manifest.MANIFEST_NAME).exists():
            continue
        try:
            found = manifest.read(shard_dir)
            _check_meta(found, cfg, spec, str(shard_dir / manifest.MANIFEST_NAME))
        except VerifyError:
            continue  # unreadable, swapped or moved: damage that check_shard repairs
        entry = found.entry(VIDEOS_NAME)
        if entry is None or entry.sha256 != recorded:
            found = entry.sha256[:16] if entry is not None else "nothing"
            raise VerifyError(
                str(shard_dir / manifest.MANIFEST_NAME),
                f"records videos sha256 {found}... but the ledger recorded {recorded[:16]}... "
                "when the shard was generated: the shard was changed afterwards (tampered); "
                "refusing to use it (restore it, or start over with --new)",
            )


def fingerprint_digest(cfg: GenConfig, videos_digest: bytes, labels_digest: bytes) -> str:
    """sha256 over the content configuration and the ordered sample and label bytes.

    Layout (shard size) is excluded: the same samples in other shards give the same value.
    """
    digest = hashlib.sha256(b"preflight-dataset-fingerprint/1\n")
    digest.update(repr(sorted(cfg.content_json().items())).encode())
    digest.update(videos_digest)
    digest.update(labels_digest)
    return digest.hexdigest()


def existing_bytes(out: Path, specs: list[ShardSpec]) -> int:
    """Bytes already on disk in planned shard files (space a resumed run need not find)."""
    total = 0
    for spec in specs:
        for rel in (spec.videos, spec.labels):
            try:
                total += os.stat(out / rel).st_size
            except OSError:
                continue
    return total
