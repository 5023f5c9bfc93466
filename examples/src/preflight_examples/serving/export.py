"""`trainer export RUN --bundle DIR`: a finished run as a verified model bundle
(the format: ``serving.bundle``).

Export scripts the trained model behind its preprocessing (``infer.serving_model``), checks
TorchScript (and ONNX) against eager on the parity batches, scores it on the dataset
(``evaluate``), builds the bundle in a temp directory beside DIR and renames it into place,
so an interrupted export never leaves a half bundle at DIR.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import shutil
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from preflight.durable import (
    BadInputError,
    VerifyError,
    atomic_write,
    fsync_dir,
    manifest,
    read_json,
)
from preflight_examples.serving.bundle import (
    BUNDLE_FORMAT,
    BUNDLE_JSON,
    BUNDLE_KIND,
    CLASS_NAME_CHARS_MAX,
    MODEL_ONNX,
    MODEL_TS,
    PARITY_ATOL,
    PARITY_BATCH_SIZES,
    PARITY_SEED,
    BundleRef,
    bundle_id,
    load_torchscript,
    max_abs_diff,
    onnx_session,
    parity_batches,
    quiet_deprecations,
    run_torch,
    verify_bundle,
)
from preflight_examples.serving.evaluate import evaluate_module
from preflight_examples.serving.infer import serving_model

ONNX_OPSET = 17
TEMP_MARK = ".tmp-"
EVAL_SAMPLES_DEFAULT = 512


# -- the exported model ----------------------------------------------------------------------
@dataclass(frozen=True)
class RunModel:
    classifier: Any  # trainer.model.VideoClassifier, eval mode
    in_channels: int
    classes: int
    source: dict[str, Any]


def load_run_model(run_dir: str | os.PathLike[str]) -> RunModel:
    """Rebuild the finished run's model from config.json + the verified final state."""
    from preflight_examples.trainer.checkpoint import KIND_FINAL, load_committed
    from preflight_examples.trainer.final import read_final
    from preflight_examples.trainer.model import VideoClassifier
    from preflight_examples.trainer.rundir import RunPaths

    paths = RunPaths(Path(run_dir))
    final = read_final(paths.root)  # verifies config hash, manifest and fingerprint
    stored = read_json(paths.config)
    hyper = stored["hyper"]
    state = load_committed(paths.final, KIND_FINAL, hyper.get("steps"), stored["config_hash"])
    where = str(paths.final / "state.pt")
    if state.get("fingerprint") != final.fingerprint:
        raise VerifyError(where, "changed while exporting (fingerprint differs)")
    weights = state["model"]
    try:
        in_channels = int(weights["features.0.weight"].shape[1])
        classes = int(weights["head.weight"].shape[0])
        classifier = VideoClassifier(
            in_channels, classes, hyper["channels"], hyper["depth"], hyper["dropout"]
        )
        classifier.load_state_dict(weights)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise VerifyError(where, f"does not fit the model in config.json: {exc}") from None
    source = {
        "run": str(paths.root.resolve()),
        "fingerprint": final.fingerprint,
        "step": final.step,
        "config_hash": stored["config_hash"],
        "hyper": hyper,
    }
    return RunModel(classifier.eval(), in_channels, classes, source)


def _onnx_bytes(module: Any, example: np.ndarray) -> bytes:
    import torch

    buffer = io.BytesIO()
    with quiet_deprecations(), contextlib.redirect_stdout(sys.stderr):
        torch.onnx.export(
            module,
            (torch.from_numpy(example),),
            buffer,
            dynamo=False,  # the torch.export-based exporter needs onnxscript, not installed
            opset_version=ONNX_OPSET,
            input_names=["videos"],
            output_names=["logits"],
            dynamic_axes={"videos": {0: "batch"}, "logits": {0: "batch"}},
        )
    return buffer.getvalue()


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class Artifacts:
    torchscript: bytes
    onnx: bytes | None
    parity: dict[str, Any]


def build_artifacts(serving: Any, input_shape: tuple[int, ...], with_onnx: bool) -> Artifacts:
    """Script (and export to ONNX) the serving module; check parity against eager."""
    import torch

    batches = parity_batches(input_shape)
    eager = run_torch(serving, batches)
    with quiet_deprecations():
        buffer = io.BytesIO()
        torch.jit.save(torch.jit.script(serving), buffer)
    ts_bytes = buffer.getvalue()
    ts_diff = max_abs_diff(run_torch(load_torchscript(ts_bytes, MODEL_TS), batches), eager)
    parity: dict[str, Any] = {
        "atol": PARITY_ATOL,
        "batch_sizes": list(PARITY_BATCH_SIZES),
        "seed": PARITY_SEED,
        "torchscript_max_abs": ts_diff,
    }
    if not ts_diff <= PARITY_ATOL:
        raise RuntimeError(f"export: TorchScript differs from eager by {ts_diff} > {PARITY_ATOL}")
    onnx_bytes = None
    if with_onnx and _importable("onnx"):
        onnx_bytes = _onnx_bytes(serving, batches[-1])
        parity.update(_onnx_parity(onnx_bytes, batches, eager))
    else:
        parity["onnx"] = "skipped: " + ("--no-onnx" if not with_onnx else "onnx not installed")
    return Artifacts(ts_bytes, onnx_bytes, parity)


def _onnx_parity(
    onnx_bytes: bytes, batches: list[np.ndarray], eager: list[np.ndarray]
) -> dict[str, Any]:
    if not _importable("onnxruntime"):
        return {"onnx": "exported; parity not checked: onnxruntime not installed"}
    session = onnx_session(onnx_bytes)
    outputs = [session.run(None, {"videos": b})[0] for b in batches]
    diff = max_abs_diff(outputs, eager)
    if not diff <= PARITY_ATOL:
        raise RuntimeError(f"export: ONNX differs from eager by {diff} > {PARITY_ATOL}")
    return {"onnx": "checked with onnxruntime", "onnx_max_abs": diff}


# -- export ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExportSpec:
    """What the exported model accepts and names, taken from a dataset."""

    input_shape: tuple[int, int, int, int]
    class_names: tuple[str, ...]
    data: dict[str, Any]  # path and identity of the dataset the shape came from


def bundle_document(
    run: RunModel, spec: ExportSpec, artifacts: Artifacts, metrics: dict[str, Any] | None
) -> dict[str, Any]:
    ident = bundle_id(run.source["fingerprint"], spec.input_shape, spec.class_names)
    return {
        "format": BUNDLE_FORMAT,
        "id": ident,
        "input": {
            "shape": list(spec.input_shape),
            "dtype": "uint8",
            "layout": "N,T,C,H,W (the dataset's layout); values 0..255",
            "preprocess": "inside the model: permute to N,C,T,H,W; x / 127.5 - 1",
        },
        "output": {"name": "logits", "shape": ["N", len(spec.class_names)]},
        "classes": len(spec.class_names),
        "class_names": list(spec.class_names),
        "source": {**run.source, "data": spec.data},
        "models": {
            "torchscript": MODEL_TS,
            "onnx": MODEL_ONNX if artifacts.onnx is not None else None,
        },
        "parity": artifacts.parity,
        "metrics": metrics,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _temp_dir(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_exports(dest: Path) -> list[str]:
    """Temp directories beside ``dest`` left by a killed export (their pid is gone)."""
    removed = []
    prefix = f".{dest.name}{TEMP_MARK}"
    for entry in dest.parent.iterdir() if dest.parent.is_dir() else []:
        if not entry.name.startswith(prefix) or entry.is_symlink() or not entry.is_dir():
            continue
        pid_text = entry.name[len(prefix) :].split("-", 1)[0]
        if pid_text.isdigit() and not _pid_alive(int(pid_text)):
            shutil.rmtree(entry)
            removed.append(entry.name)
    return removed


def check_destination(dest: Path, force: bool) -> None:
    """Refuse a --bundle that would clobber something, before any work is done (exit 2)."""
    if not dest.parent.is_dir():
        raise BadInputError(f"--bundle: parent directory {dest.parent} does not exist")
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise BadInputError(f"--bundle: {dest} exists and is not a directory")
    if dest.exists() and not force:
        raise BadInputError(f"--bundle: {dest} already exists; pass --force to replace it")
    if dest.exists() and any(dest.iterdir()):
        try:
            verify_bundle(dest)
        except (VerifyError, BadInputError):
            raise BadInputError(
                f"--bundle: {dest} is not a bundle; refusing to replace it even with --force"
            ) from None


def write_bundle(
    dest: Path, document: dict[str, Any], artifacts: Artifacts, force: bool = False
) -> BundleRef:
    """Write files into a temp dir beside ``dest``, commit its manifest, rename into place."""
    remove_stale_exports(dest)
    temp = _temp_dir(dest)
    temp.mkdir()
    try:
        atomic_write(temp / MODEL_TS, artifacts.torchscript)
        files = [BUNDLE_JSON, MODEL_TS]
        if artifacts.onnx is not None:
            atomic_write(temp / MODEL_ONNX, artifacts.onnx)
            files.append(MODEL_ONNX)
        atomic_write(temp / BUNDLE_JSON, document)
        meta = {"kind": BUNDLE_KIND, "id": document["id"]}
        manifest.commit(temp, files=files, config=document, meta=meta)
        verify_bundle(temp)  # pair assertion: what we committed reads back as a bundle
        _move_into_place(temp, dest, force)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return verify_bundle(dest)


def _move_into_place(temp: Path, dest: Path, force: bool) -> None:
    old = None
    if dest.exists() and force:
        old = _temp_dir(dest)
        os.rename(dest, old)
    try:
        os.rename(temp, dest)
    except OSError as exc:
        if old is not None:
            os.rename(old, dest)
        raise BadInputError(f"--bundle: cannot move the new bundle to {dest}: {exc}") from None
    fsync_dir(dest.parent)
    if old is not None:
        shutil.rmtree(old)



def resolve_data_dir(run_dir: Path, data: str | None) -> Path:
    """--data, else the dataset the run last fully hashed (its data-verified.json record)."""
    if data is not None:
        return Path(data)
    from preflight_examples.trainer.rundir import RunPaths

    record = RunPaths(run_dir).data_verified
    if record.is_file():
        try:
            root = read_json(record).get("root")
        except (BadInputError, AttributeError):
            root = None
        if isinstance(root, str) and Path(root).is_dir():
            return Path(root)
    raise BadInputError(
        f"--data: not given, and {run_dir} names no readable dataset; pass --data DATASET "
        "(the input shape and class names come from it)"
    )


def class_names_of(dataset_json: Any, classes: int) -> tuple[str, ...]:
    """dataset.json's class_names when they are K distinct strings, else class0..classK-1."""
    names = dataset_json.get("class_names") if isinstance(dataset_json, dict) else None
    if (
        isinstance(names, list)
        and len(names) == classes
        and len(set(names)) == classes
        and all(isinstance(n, str) and 0 < len(n) <= CLASS_NAME_CHARS_MAX for n in names)
    ):
        return tuple(names)
    return tuple(f"class{k}" for k in range(classes))


def dataset_spec(dataset: Any, run: RunModel) -> ExportSpec:
    """Input shape and class names from an opened (verified) dataset that fits the model."""
    from preflight_examples.trainer.data import DATASET_JSON

    info = dataset.info
    if (info.channels, info.classes) != (run.in_channels, run.classes):
        raise BadInputError(
            f"--data: {dataset.root} has {info.channels} channels and {info.classes} classes; "
            f"the model takes {run.in_channels} channels and predicts {run.classes} classes"
        )
    names = class_names_of(read_json(dataset.root / DATASET_JSON), info.classes)
    trained_on = run.source["hyper"].get("data_sha256") == dataset.identity
    data = {
        "path": str(Path(dataset.root).resolve()),
        "identity": dataset.identity,
        "is_training_data": trained_on,
    }
    return ExportSpec((info.frames, info.channels, info.size, info.size), names, data)


def export(
    run_dir: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    data: str | None = None,
    eval_samples: int = EVAL_SAMPLES_DEFAULT,
    force: bool = False,
    with_onnx: bool = True,
) -> BundleRef:
    """`trainer export`: checks that need no work first (exit 2), then build and commit."""
    from preflight_examples.trainer.data import check_data_dir, open_dataset

    dest_path, run_path = Path(dest), Path(run_dir)
    if eval_samples < 0:
        raise BadInputError(f"--eval-samples: must be >= 0, got {eval_samples}")
    check_destination(dest_path, force)
    data_dir = resolve_data_dir(run_path, data)
    check_data_dir(data_dir)
    run = load_run_model(run_path)
    dataset = open_dataset(data_dir)
    spec = dataset_spec(dataset, run)
    artifacts = build_artifacts(serving_model(run.classifier), spec.input_shape, with_onnx)
    metrics = None
    if eval_samples:
        module = load_torchscript(artifacts.torchscript, MODEL_TS)
        metrics = evaluate_module(module, dataset, spec.class_names, limit=eval_samples)
        metrics["data"] = spec.data
    return write_bundle(dest_path, bundle_document(run, spec, artifacts, metrics), artifacts, force)
