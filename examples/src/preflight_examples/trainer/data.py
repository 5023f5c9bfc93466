"""Read a datagen dataset (docs/dataset-format.md) memory-mapped, after verifying it.

The manifest is verified first (every listed file's size and sha256), then dataset.json is
checked against it and every shard is opened with ``mmap_mode='r'`` and checked for dtype,
shape and label range. Anything wrong is a ``VerifyError`` naming the file (exit 4).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from preflight.durable import BadInputError, VerifyError, atomic_write, manifest, read_json
from preflight.durable.jsonio import require_fields
from preflight.durable.paths import resolve_inside

FORMAT = "preflight-dataset/1"
VERIFIED_FORMAT = "preflight-trainer-data-verified/1"
DATASET_JSON = "dataset.json"
DATASET_JSON_BYTES_MAX = 16 << 20
SHARDS_MAX = 100_000
DIM_MAX = 4_096
PIXEL_SCALE = 127.5  # uint8 [0, 255] -> float [-1, 1]


@dataclass(frozen=True)
class ShardInfo:
    index: int
    start: int
    count: int
    videos: str
    labels: str


@dataclass(frozen=True)
class DatasetInfo:
    samples: int
    frames: int
    channels: int
    size: int
    classes: int
    shard_size: int
    shards: tuple[ShardInfo, ...]


def _positive(raw: dict[str, Any], name: str, where: str, limit: int) -> int:
    value = raw[name]
    if not 1 <= value <= limit:
        raise BadInputError(f"{where}: field {name!r} = {value} must be in [1, {limit}]")
    return value


def parse_info(raw: Any, where: str) -> DatasetInfo:
    """Validate dataset.json's content and its shard layout (pure)."""
    fields = {k: int for k in ("samples", "frames", "channels", "size", "classes", "shard_size")}
    require_fields(raw, where, {"format": str, "shards": list, **fields})
    if raw["format"] != FORMAT:
        raise BadInputError(f"{where}: format {raw['format']!r} is not {FORMAT!r}")
    samples = _positive(raw, "samples", where, 1 << 40)
    shard_size = _positive(raw, "shard_size", where, 1 << 40)
    dims = {k: _positive(raw, k, where, DIM_MAX) for k in ("frames", "channels", "size")}
    classes = _positive(raw, "classes", where, DIM_MAX)
    expected_shards = -(-samples // shard_size)
    if len(raw["shards"]) != expected_shards or expected_shards > SHARDS_MAX:
        raise BadInputError(
            f"{where}: {len(raw['shards'])} shards listed, {samples} samples in shards of "
            f"{shard_size} need {expected_shards}"
        )
    shards = []
    for i, entry in enumerate(raw["shards"]):
        at = f"{where}: shards[{i}]"
        require_fields(
            entry, at, {"index": int, "start": int, "count": int, "videos": str, "labels": str}
        )
        count = min(shard_size, samples - i * shard_size)
        if (entry["index"], entry["start"], entry["count"]) != (i, i * shard_size, count):
            raise BadInputError(f"{at}: expected index {i}, start {i * shard_size}, count {count}")
        shards.append(ShardInfo(i, entry["start"], count, entry["videos"], entry["labels"]))
    return DatasetInfo(
        samples, dims["frames"], dims["channels"], dims["size"], classes, shard_size, tuple(shards)
    )


def content_identity(committed: manifest.Manifest) -> str:
    """sha256 over the manifest's (path, sha256) pairs: the dataset's content, not its path
    or creation time, so a regenerated identical dataset keeps the same identity."""
    digest = hashlib.sha256(b"preflight-dataset-identity/1\n")
    for entry in sorted(committed.files, key=lambda e: e.path):
        digest.update(f"{entry.path}\0{entry.sha256}\n".encode())
    return digest.hexdigest()


class Dataset:
    """Memory-mapped shards; ``batch`` gathers samples into one contiguous array."""

    def __init__(
        self,
        root: Path,
        info: DatasetInfo,
        identity: str,
        videos: list[np.ndarray],
        labels: np.ndarray,
        committed: manifest.Manifest | None = None,
    ) -> None:
        self.root = root
        self.info = info
        self.identity = identity
        self._videos = videos
        self._labels = labels
        self._committed = committed
        self._stamps = _stamps(root, committed) if committed is not None else None

    def check_unchanged(self) -> None:
        """VerifyError (exit 4) naming the first dataset file rewritten, replaced or removed
        since the run opened it: the shards are memory-mapped, so a change shows up in the
        batches at once and the run's result would silently match no reference."""
        if self._committed is None or self._stamps is None:
            return
        try:
            now = _stamps(self.root, self._committed)
        except (OSError, BadInputError) as exc:
            raise VerifyError(str(self.root), f"dataset changed under the run: {exc}") from None
        for rel, stamp in self._stamps.items():
            if now.get(rel) != stamp:
                raise VerifyError(
                    str(self.root / rel),
                    "changed while this run was training on it (the dataset is memory-mapped);"
                    " the steps since are invalid: restore the dataset and rerun to resume "
                    "from the last checkpoint",
                )

    def batch(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 videos [B, C, T, S, S] (the layout Conv3d wants) and int64 labels [B]."""
        size = self.info.shard_size
        clips = np.stack([self._videos[i // size][i % size] for i in indices.tolist()])
        return np.ascontiguousarray(clips.transpose(0, 2, 1, 3, 4)), self._labels[indices]


def check_data_dir(directory: Path) -> None:
    """Cheap checks of --data before anything is written (exit 2 when wrong)."""
    if not directory.is_dir():
        raise BadInputError(f"--data: {directory} is not a directory")
    if not (directory / DATASET_JSON).is_file() and not (directory / "manifest.json").is_file():
        raise BadInputError(f"--data: {directory} is not a dataset (no {DATASET_JSON})")


def _open_npy(root: Path, rel: str, committed: manifest.Manifest, where: str) -> np.ndarray:
    if committed.entry(rel) is None:
        raise VerifyError(str(root / rel), f"referenced by {where} but not in the manifest")
    path = resolve_inside(root, rel, where)
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise VerifyError(str(path), f"not a readable .npy file: {exc}") from None


def _check_shard(
    root: Path, info: DatasetInfo, shard: ShardInfo, videos: np.ndarray, labels: np.ndarray
) -> None:
    want = (shard.count, info.frames, info.channels, info.size, info.size)
    if videos.dtype != np.uint8 or videos.shape != want:
        raise VerifyError(
            str(root / shard.videos), f"uint8 {want} expected, found {videos.dtype} {videos.shape}"
        )
    if labels.dtype != np.int64 or labels.shape != (shard.count,):
        raise VerifyError(
            str(root / shard.labels),
            f"int64 ({shard.count},) expected, found {labels.dtype} {labels.shape}",
        )
    if shard.count and (labels.min() < 0 or labels.max() >= info.classes):
        raise VerifyError(str(root / shard.labels), f"labels outside [0, {info.classes})")


def _stamp(path: Path) -> list[int]:
    """What changes whenever a file's content is rewritten: ctime cannot be set back."""
    info = os.stat(path)
    return [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev]


def _stamps(root: Path, committed: manifest.Manifest) -> dict[str, list[int]]:
    paths = [manifest.MANIFEST_NAME] + [entry.path for entry in committed.files]
    return {rel: _stamp(resolve_inside(root, rel, str(root))) for rel in paths}


def _verified_before(record: Path | None, root: Path, committed: manifest.Manifest) -> bool:
    """True when ``record`` says these very files (same inode, size, mtime, ctime) were
    fully hashed before; any doubt (no record, unreadable, a file touched) means no."""
    if record is None or not record.exists():
        return False
    try:
        stored = read_json(record)
        return (
            stored.get("format") == VERIFIED_FORMAT
            and stored.get("root") == str(root.resolve())
            and stored.get("stamps") == _stamps(root, committed)
        )
    except (BadInputError, OSError, AttributeError):
        return False


def verify_data(root: Path, record: Path | None, mode: str) -> manifest.Manifest:
    """Verify the dataset's manifest. Mode "always" hashes every file; "changed" hashes only
    when a file was touched since this run last hashed it all (a 6 GB dataset takes tens of
    seconds to hash, which every resume would pay); sizes and the manifest are always read."""
    committed = manifest.read(root)
    if mode == "changed" and _verified_before(record, root, committed):
        return manifest.verify(root, check_hashes=False)
    committed = manifest.verify(root)
    if record is not None:
        atomic_write(
            record,
            {
                "format": VERIFIED_FORMAT,
                "root": str(root.resolve()),
                "stamps": _stamps(root, committed),
            },
        )
    return committed


def open_dataset(
    directory: str | Path, record: Path | None = None, mode: str = "always"
) -> Dataset:
    """Verify and open a dataset; BadInputError for a wrong --data, VerifyError for bad data.

    ``record``: where to remember a full verification (see ``verify_data``)."""
    root = Path(directory)
    check_data_dir(root)
    committed = verify_data(root, record, mode)
    info_path = root / DATASET_JSON
    if committed.entry(DATASET_JSON) is None:
        raise VerifyError(str(info_path), "not listed in the dataset's manifest")
    try:
        info = parse_info(read_json(info_path, bytes_max=DATASET_JSON_BYTES_MAX), str(info_path))
    except BadInputError as exc:
        raise VerifyError(str(info_path), str(exc)) from None
    videos, labels = [], []
    for shard in info.shards:
        shard_videos = _open_npy(root, shard.videos, committed, str(info_path))
        shard_labels = np.array(_open_npy(root, shard.labels, committed, str(info_path)))
        _check_shard(root, info, shard, shard_videos, shard_labels)
        videos.append(shard_videos)
        labels.append(shard_labels)
    return Dataset(
        root, info, content_identity(committed), videos, np.concatenate(labels), committed
    )
