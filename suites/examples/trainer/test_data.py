"""The dataset contract: a verified dataset opens; anything corrupt is refused, named."""

from __future__ import annotations

import json

import numpy as np
import pytest
from preflight_examples.trainer import data as data_module
from preflight_examples.trainer.data import open_dataset

from preflight.durable import BadInputError, VerifyError, atomic_write, manifest

from .conftest import CLASSES, SAMPLES, fit_args


def test_opens_memory_mapped_and_batches_in_conv3d_layout(dataset):
    opened = open_dataset(dataset)
    assert opened.info.samples == SAMPLES and opened.info.classes == CLASSES
    videos, labels = opened.batch(np.array([0, 33, 5]))
    assert videos.shape == (3, 1, 4, 16, 16) and videos.dtype == np.uint8
    raw = np.load(dataset / "shards/00001/videos.npy")
    assert np.array_equal(videos[1], raw[1].transpose(1, 0, 2, 3))
    assert labels.tolist() == [
        int(np.load(dataset / f"shards/0000{i // 32}/labels.npy")[i % 32]) for i in (0, 33, 5)
    ]


def test_flipped_shard_byte_is_refused_with_exit_4_naming_the_file(
    fresh_dataset, tmp_path, trainer_main
):
    shard = fresh_dataset / "shards/00001/videos.npy"
    data = bytearray(shard.read_bytes())
    data[-7] ^= 0x10
    shard.write_bytes(bytes(data))
    result = trainer_main(fit_args(fresh_dataset, tmp_path / "run"))
    assert result.code == 4
    assert "shards/00001/videos.npy" in result.err


def test_uncommitted_dataset_is_refused(fresh_dataset):
    (fresh_dataset / "manifest.json").unlink()
    with pytest.raises(VerifyError, match="manifest.json"):
        open_dataset(fresh_dataset)


def test_file_outside_the_manifest_is_refused(fresh_dataset):
    info = json.loads((fresh_dataset / "dataset.json").read_text())
    atomic_write(fresh_dataset / "extra.npy", np.zeros((32,), dtype=np.int64))
    info["shards"][0]["labels"] = "extra.npy"
    atomic_write(fresh_dataset / "dataset.json", info)
    manifest.commit(fresh_dataset, files=["dataset.json", "shards/00000/videos.npy"])
    with pytest.raises(VerifyError, match="not in the manifest"):
        open_dataset(fresh_dataset)


def test_labels_out_of_range_are_refused(fresh_dataset):
    labels = np.full(32, CLASSES, dtype=np.int64)
    atomic_write(fresh_dataset / "shards/00000/labels.npy", labels)
    manifest.commit(fresh_dataset)
    with pytest.raises(VerifyError, match="labels.npy"):
        open_dataset(fresh_dataset)


def test_missing_data_dir_is_bad_input_and_writes_nothing(tmp_path, trainer_main):
    with pytest.raises(BadInputError, match="--data"):
        open_dataset(tmp_path / "nope")
    result = trainer_main(fit_args(tmp_path / "nope", tmp_path / "run"))
    assert result.code == 2 and "--data" in result.err
    assert not (tmp_path / "run").exists()


def test_a_resume_rehashes_only_files_touched_since_the_last_full_check(
    fresh_dataset, tmp_path, monkeypatch
):
    record = tmp_path / "data-verified.json"
    hashed = []
    real_verify = manifest.verify

    def spy(root, *, check_hashes=True):
        hashed.append(check_hashes)
        return real_verify(root, check_hashes=check_hashes)

    monkeypatch.setattr(data_module.manifest, "verify", spy)
    first = open_dataset(fresh_dataset, record, "changed")
    again = open_dataset(fresh_dataset, record, "changed")
    assert hashed == [True, False] and again.identity == first.identity
    assert open_dataset(fresh_dataset, record, "always") and hashed[-1] is True
    shard = fresh_dataset / "shards/00000/videos.npy"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0x01
    shard.write_bytes(bytes(data))  # same size; the ctime moves
    with pytest.raises(VerifyError, match="shards/00000/videos.npy"):
        open_dataset(fresh_dataset, record, "changed")
