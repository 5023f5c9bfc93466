"""Export and verified load: layout, parity with eager, refusal of tampered bundles."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from preflight_examples.serving import bundle as bundle_mod
from preflight_examples.serving import export as export_mod
from preflight_examples.serving.infer import preprocess, serving_model

from preflight.durable import VerifyError, faults, manifest, sha256_file
from suites.examples.serving.conftest import Cli, write_data


def copy_bundle(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def test_export_commits_relative_paths_with_sha256(bundle4: Path, run4: Path) -> None:
    committed = manifest.verify(bundle4)
    paths = sorted(e.path for e in committed.files)
    with_onnx = importlib.util.find_spec("onnx") is not None
    assert paths == ["bundle.json", *(["model.onnx"] if with_onnx else []), "model.ts"]
    for entry in committed.files:
        assert not os.path.isabs(entry.path)
        assert entry.sha256 == sha256_file(bundle4 / entry.path)
    info = json.loads((bundle4 / "bundle.json").read_text())
    assert info["input"]["shape"] == [4, 1, 16, 16]
    assert info["class_names"] == ["class0", "class1", "class2", "class3"]
    assert info["source"]["step"] == 100
    assert info["source"]["data"]["is_training_data"] is True
    assert committed.meta == {"kind": "preflight-bundle", "id": info["id"]}
    assert 0.0 <= info["metrics"]["accuracy"] <= 1.0
    # nothing half-written is left beside the bundle
    assert [p.name for p in bundle4.parent.iterdir()] == ["bundle"]


def test_load_returns_the_exported_model(bundle4: Path, run4: Path) -> None:
    loaded = bundle_mod.load_bundle(bundle4)
    assert loaded.id == json.loads((bundle4 / "bundle.json").read_text())["id"]
    from preflight_examples.trainer.final import read_final

    assert loaded.info.raw["source"]["fingerprint"] == read_final(run4).fingerprint


@pytest.mark.parametrize("fast", [False, True])
def test_torchscript_matches_eager_within_tolerance(bundle4: Path, run4: Path, fast: bool) -> None:
    eager = serving_model(export_mod.load_run_model(run4).classifier)
    loaded = bundle_mod.load_bundle(bundle4, fast=fast)
    for batch in bundle_mod.parity_batches(loaded.info.input_shape):
        with torch.inference_mode():
            want = eager(torch.from_numpy(batch)).numpy()
            got = loaded.module(torch.from_numpy(batch)).numpy()
        assert np.max(np.abs(got - want)) <= bundle_mod.PARITY_ATOL


def test_onnx_matches_eager_within_tolerance(bundle4: Path, run4: Path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    loaded = bundle_mod.load_bundle(bundle4)
    session = bundle_mod.onnx_session(bundle_mod.read_verified(loaded.ref, "model.onnx"))
    eager = serving_model(export_mod.load_run_model(run4).classifier)
    for batch in bundle_mod.parity_batches(loaded.info.input_shape):
        with torch.inference_mode():
            want = eager(torch.from_numpy(batch)).numpy()
        got = session.run(None, {"videos": batch})[0]
        assert np.max(np.abs(got - want)) <= bundle_mod.PARITY_ATOL
    assert loaded.info.raw["parity"]["onnx_max_abs"] <= bundle_mod.PARITY_ATOL


def test_preprocessing_is_bit_identical_to_training(data4: Path, tmp_path: Path) -> None:
    from preflight_examples.trainer.config import FitConfig
    from preflight_examples.trainer.data import open_dataset
    from preflight_examples.trainer.fit import Trainer
    from preflight_examples.trainer.sampler import EpochSampler

    dataset = open_dataset(data4)
    cfg = FitConfig(data=str(data4), out=str(tmp_path), steps=1, batch_size=8, channels=4, depth=1)
    trainer = Trainer(cfg, dataset, torch.device("cpu"), "hash")
    indices = EpochSampler(dataset.info.samples, trainer.sampler.state).next_indices(8)
    trained_on, _ = trainer._batch()  # exactly what a training step feeds the model
    videos, _ = dataset.batch(indices)
    served = preprocess(torch.from_numpy(np.ascontiguousarray(videos.transpose(0, 2, 1, 3, 4))))
    assert torch.equal(served, trained_on)
    every_value = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 1, 16, 16)
    assert torch.equal(preprocess(every_value), every_value.float().div_(127.5).sub_(1.0))


def test_tampered_model_is_refused_naming_the_file(bundle4: Path, tmp_path: Path, cli: Cli) -> None:
    bad = copy_bundle(bundle4, tmp_path / "bad")
    data = bytearray((bad / "model.ts").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / "model.ts").write_bytes(bytes(data))
    with pytest.raises(VerifyError) as caught:
        bundle_mod.load_bundle(bad)
    assert caught.value.path == str((bad / "model.ts").resolve())
    result = cli(["bench-infer", str(bad), "--out", str(tmp_path / "b.json")])
    assert result.code == 4
    assert "model.ts" in result.err and "sha256" in result.err


def test_tampered_bundle_json_is_refused(bundle4: Path, tmp_path: Path) -> None:
    bad = copy_bundle(bundle4, tmp_path / "bad")
    info = json.loads((bad / "bundle.json").read_text())
    info["class_names"][0] = "cat"
    (bad / "bundle.json").write_text(json.dumps(info))
    with pytest.raises(VerifyError, match="bundle.json"):
        bundle_mod.load_bundle(bad)


@pytest.mark.long  # drives real jobs for seconds: make test-long (CI runs it)
def test_path_escaping_manifest_is_refused(bundle4: Path, tmp_path: Path) -> None:
    bad = copy_bundle(bundle4, tmp_path / "bad")
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"x")
    raw = json.loads((bad / "manifest.json").read_text())
    raw["files"].append({"path": "../outside.bin", "size": 1, "sha256": sha256_file(outside)})
    (bad / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(VerifyError, match="escapes its directory"):
        bundle_mod.load_bundle(bad)


def test_symlink_escape_is_refused(bundle4: Path, tmp_path: Path) -> None:
    bad = copy_bundle(bundle4, tmp_path / "bad")
    outside = tmp_path / "model-elsewhere.ts"
    shutil.copyfile(bad / "model.ts", outside)  # same bytes, so only the escape is wrong
    (bad / "model.ts").unlink()
    (bad / "model.ts").symlink_to(outside)
    with pytest.raises(VerifyError, match="symlink escape"):
        bundle_mod.load_bundle(bad)


def test_uncommitted_directory_is_not_a_bundle(tmp_path: Path, cli: Cli) -> None:
    (tmp_path / "b").mkdir()
    result = cli(["predict", str(tmp_path / "b"), "--input", str(tmp_path / "x.npy")])
    assert result.code == 4 and "no manifest" in result.err


def test_export_refuses_existing_dir_and_force_replaces(
    run4: Path, bundle4: Path, tmp_path: Path, cli: Cli
) -> None:
    dest = copy_bundle(bundle4, tmp_path / "b")
    before = (dest / "manifest.json").read_bytes()
    result = cli(["export", str(run4), "--bundle", str(dest), "--no-onnx"])
    assert result.code == 2 and "--force" in result.err
    assert (dest / "manifest.json").read_bytes() == before
    result = cli(["export", str(run4), "--bundle", str(dest), "--no-onnx", "--force"])
    assert result.code == 0, result.err
    assert not (dest / "model.onnx").exists()
    assert json.loads(result.out)["id"] == bundle_mod.verify_bundle(dest).info.id
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_interrupted_export_leaves_no_bundle(
    run4: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "b"
    stale = tmp_path / ".b.tmp-999999999-dead"  # a killed export's leftovers (pid gone)
    stale.mkdir()
    monkeypatch.setenv("PREFLIGHT_FAULTS", "manifest.before_commit:raise")
    monkeypatch.setattr(faults, "_state", faults._State())
    with pytest.raises(OSError):
        export_mod.export(run4, dest, with_onnx=False, eval_samples=0)
    assert list(tmp_path.iterdir()) == []  # no half bundle, no temp dir, stale one removed


def test_export_of_unfinished_run_and_wrong_data(
    tmp_path: Path, run4: Path, data4: Path, cli: Cli
) -> None:
    (tmp_path / "run").mkdir()
    argv = ["export", str(tmp_path / "run"), "--bundle", str(tmp_path / "b")]
    result = cli([*argv, "--data", str(data4)])
    assert result.code == 1 and "no config.json" in result.err
    result = cli([*argv, "--data", str(run4)])
    assert result.code == 2 and "is not a dataset" in result.err
    two = write_data(tmp_path / "two", classes=2, samples=8)
    result = cli(["export", str(run4), "--bundle", str(tmp_path / "b"), "--data", str(two)])
    assert result.code == 2 and "2 classes" in result.err
    assert not (tmp_path / "b").exists()
