"""Fuzz the trainer's parsers (dataset.json, bundle.json, /predict requests, checkpoint state)
and prove a checkpoint carrying a pickle payload is refused without running it."""

from __future__ import annotations

import io
import json
import pathlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import strategies as st
from preflight_examples.serving import bundle
from preflight_examples.serving.request import RequestError, encode_request, parse_request
from preflight_examples.trainer import data
from preflight_examples.trainer.checkpoint import (
    KIND_CHECKPOINT,
    STATE_FORMAT,
    STATE_NAME,
    load_committed,
)

from preflight.durable import manifest
from preflight.durable.errors import BadInputError, VerifyError
from suites.examples.trainer.conftest import fit_args, write_tiny_dataset
from suites.security.conftest import Result
from suites.security.strategies import document_bytes, json_values, mutated_document

Fuzz = Callable[..., Any]
EXIT_REFUSED = 4


class Payload:
    """Unpickling this creates ``marker``: the proof that a pickle ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def _plant(directory: Path, marker: Path) -> None:
    """Replace state.pt with a payload pickle and re-commit a VALID manifest with the same
    meta, so only torch.load(weights_only=True) stands between the payload and execution."""
    old = manifest.read(directory)
    torch.save({"format": STATE_FORMAT, "payload": Payload(marker)}, directory / STATE_NAME)
    manifest.commit(directory, files=[e.path for e in old.files], meta=old.meta)
    manifest.verify(directory)


def test_pickle_payload_in_a_committed_checkpoint_is_refused_and_never_runs(
    tmp_path: Path, trainer: Callable[..., Result]
) -> None:
    ds = write_tiny_dataset(tmp_path / "ds")
    run = tmp_path / "run"
    argv = fit_args(ds, run, 10)
    assert trainer(*argv).returncode == 0
    marker = tmp_path / "PWNED"
    _plant(run / "final", marker)
    for step_dir in sorted((run / "checkpoints").iterdir()):
        _plant(step_dir, marker)
    for command in (["verify", str(run)], ["fingerprint", str(run)]):
        done = trainer(*command)
        assert done.returncode == EXIT_REFUSED, done.stderr
        assert STATE_NAME in done.stderr and "final" in done.stderr
    # Resume: every checkpoint is refused by name, nothing is trained on.
    (run / "final" / manifest.MANIFEST_NAME).unlink()
    done = trainer(*argv)
    assert done.returncode == EXIT_REFUSED, done.stderr
    assert "step-00000005/state.pt" in done.stderr
    # Never advise loading it unsafely or allowlisting the payload's globals.
    assert "weights_only=False" not in done.stderr and "add_safe_globals" not in done.stderr
    assert not marker.exists()


def test_checkpoint_state_bytes_load_or_refuse(tmp_path: Path, fuzz: Fuzz) -> None:
    directory = tmp_path / "step-00000005"
    directory.mkdir()
    buffer = io.BytesIO()
    state = {"format": STATE_FORMAT, "step": 5, "config_hash": "h", "w": torch.ones(3)}
    torch.save(state, buffer)
    valid = buffer.getvalue()
    (directory / STATE_NAME).write_bytes(valid)
    meta = {"kind": KIND_CHECKPOINT, "step": 5, "config_hash": "h"}
    manifest.commit(directory, files=[STATE_NAME], meta=meta)
    marker = tmp_path / "PWNED"
    evil = io.BytesIO()
    torch.save({"x": Payload(marker)}, evil)

    @st.composite
    def damaged(draw: st.DrawFn) -> bytes:
        raw = bytearray(draw(st.sampled_from([valid, evil.getvalue()])))
        kind = draw(st.sampled_from(["flip", "truncate", "garbage", "as_is"]))
        if kind == "garbage":
            return draw(st.binary(max_size=2048))
        if kind == "truncate":
            return bytes(raw[: draw(st.integers(0, len(raw)))])
        if kind == "flip":
            for _ in range(draw(st.integers(1, 8))):
                at = draw(st.integers(0, len(raw) - 1))
                raw[at] ^= 1 << draw(st.integers(0, 7))
        return bytes(raw)

    def check(raw: bytes) -> None:
        (directory / STATE_NAME).write_bytes(raw)
        manifest.commit(directory, files=[STATE_NAME], meta=meta)
        load_committed(directory, KIND_CHECKPOINT, 5, "h")

    tally = fuzz("checkpoint_state", damaged(), check, (VerifyError,))
    assert tally.refused > 0 and not tally.crashes
    assert not marker.exists()


def test_dataset_json_parse_info_refuses_with_bad_input_error(tmp_path: Path, fuzz: Fuzz) -> None:
    ds = write_tiny_dataset(tmp_path / "ds")
    valid = json.loads((ds / data.DATASET_JSON).read_text())
    absurd = st.sampled_from(
        [
            {"samples": 10**12, "shard_size": 1},
            {"samples": 10**12},
            {"frames": 10**9},
            {"classes": 0},
            {"shards": [{}] * 3},
        ]
    ).map(lambda claim: {**valid, **claim})
    docs = st.one_of(mutated_document(valid), absurd, json_values())
    tally = fuzz(
        "trainer_dataset_json", docs, lambda d: data.parse_info(d, "dataset.json"), (BadInputError,)
    )
    assert tally.refused > 0 and not tally.crashes


def test_bundle_json_parse_info_refuses_with_bad_input_error(fuzz: Fuzz) -> None:
    valid = {
        "format": bundle.BUNDLE_FORMAT,
        "id": "0" * bundle.ID_HEX_CHARS,
        "input": {"shape": [4, 1, 16, 16], "dtype": "uint8"},
        "class_names": ["a", "b"],
        "models": {"torchscript": "model.ts"},
    }
    docs = st.one_of(mutated_document(valid), json_values())
    tally = fuzz(
        "bundle_json", docs, lambda d: bundle.parse_info(d, "bundle.json"), (BadInputError,)
    )
    assert tally.refused > 0 and not tally.crashes


@pytest.mark.parametrize("form", ["nested", "base64"])
def test_predict_request_parsing_refuses_with_request_error(form: str, fuzz: Fuzz) -> None:
    shape = (2, 1, 4, 4)
    videos = np.arange(2 * 32, dtype=np.uint8).reshape(2, *shape)
    valid = {"videos": videos.tolist()} if form == "nested" else encode_request(videos)

    def check(body: bytes) -> None:
        array = parse_request(body, shape, batch_max=4, body_bytes_max=1 << 16)
        assert array.dtype == np.uint8 and array.shape[1:] == shape

    tally = fuzz(f"predict_request_{form}", document_bytes(valid), check, (RequestError,))
    assert tally.refused > 0 and not tally.crashes


def test_run_config_json_verifies_or_refuses(
    tmp_path: Path, trainer: Callable[..., Result], fuzz: Fuzz
) -> None:
    """config.json of a finished run, mutated: `trainer verify` and a resume's drift check
    either accept it or refuse it naming the file."""
    from preflight_examples.trainer.final import read_final
    from preflight_examples.trainer.rundir import RunPaths, prepare_config

    ds = write_tiny_dataset(tmp_path / "ds")
    run = tmp_path / "run"
    assert trainer(*fit_args(ds, run, 5)).returncode == 0
    paths = RunPaths(run)
    original = paths.config.read_bytes()
    valid = json.loads(original)

    def check(raw: bytes) -> None:
        paths.config.write_bytes(raw)
        refused: list[Exception] = []
        try:
            for call in (
                lambda: read_final(run),
                lambda: prepare_config(paths, valid["hyper"], valid["config_hash"], new=False),
            ):
                try:
                    call()
                except (BadInputError, VerifyError) as exc:
                    refused.append(exc)
        finally:
            paths.config.write_bytes(original)
        if refused:
            raise refused[0]

    tally = fuzz("trainer_config_json", document_bytes(valid), check, (BadInputError, VerifyError))
    assert tally.refused > 0 and not tally.crashes


def test_content_length_header_is_a_number_or_a_request_error(fuzz: Fuzz) -> None:
    from preflight_examples.serving.serve import check_content_length

    headers = st.one_of(
        st.text(max_size=30),
        st.sampled_from(["²", "١٢", "9" * 5000, "-1", "1e3", " 12", "0x10", "12\x00"]),
        st.integers(0, 10**30).map(str),
    )
    tally = fuzz(
        "content_length",
        headers,
        lambda value: check_content_length(value, 1 << 20),
        (RequestError,),
    )
    assert tally.refused > 0 and not tally.crashes
