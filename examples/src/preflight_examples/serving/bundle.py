"""Model bundles: `trainer export RUN --bundle DIR` and the verified load every reader uses.

```
DIR/model.ts      TorchScript of the eval-mode model; input uint8 [N, T, C, H, W] (the
                  dataset's layout), output float32 logits [N, K]. Preprocessing is inside
                  the model, so every caller (predict, serve, evaluate, ONNX) matches training.
DIR/model.onnx    the same graph in ONNX (only when the onnx package is installed)
DIR/bundle.json   input shape, class names, source run + fingerprint, parity, metrics
DIR/manifest.json durable manifest (relative paths, sizes, sha256), written last
```

Export builds the bundle in a temp directory beside DIR and renames it into place, so an
interrupted export never leaves a half bundle at DIR. Loading verifies the manifest first
and refuses a tampered or path-escaping bundle with a ``VerifyError`` naming the file.

torch is imported inside the functions that need it: `trainer promote/rollback` only verify
bundles, and a 2 s torch import would count against the rollback time.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import secrets
import shutil
import sys
import warnings
from collections.abc import Iterator
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
    sha256_bytes,
)
from preflight.durable.jsonio import require_fields

BUNDLE_FORMAT = "preflight-bundle/1"
BUNDLE_KIND = "preflight-bundle"
BUNDLE_JSON = "bundle.json"
MODEL_TS = "model.ts"
MODEL_ONNX = "model.onnx"
BUNDLE_JSON_BYTES_MAX = 4 << 20
MODEL_BYTES_MAX = 4 << 30
CLASS_NAME_CHARS_MAX = 200
ID_HEX_CHARS = 16
PARITY_ATOL = 1e-4  # the bound on |engine - eager| for the fixed batch
PARITY_BATCH_SIZES = (1, 4)  # a single sample and a batch: both ONNX axes are exercised
PARITY_SEED = 20240611
ONNX_OPSET = 17
TEMP_MARK = ".tmp-"


@dataclass(frozen=True)
class BundleInfo:
    """The parsed bundle.json (what every consumer needs to feed and read the model)."""

    id: str
    frames: int
    channels: int
    height: int
    width: int
    class_names: tuple[str, ...]
    has_onnx: bool
    raw: dict[str, Any]

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """[T, C, H, W] of one video, the dataset's layout."""
        return (self.frames, self.channels, self.height, self.width)

    @property
    def classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class BundleRef:
    """A bundle whose manifest verified: the resolved directory and its parsed bundle.json."""

    root: Path
    committed: manifest.Manifest
    info: BundleInfo


@dataclass(frozen=True)
class LoadedBundle:
    ref: BundleRef
    module: Any  # torch.jit.ScriptModule in eval mode (optimized when that kept parity)
    optimized: bool = False

    @property
    def id(self) -> str:
        return self.ref.info.id

    @property
    def info(self) -> BundleInfo:
        return self.ref.info


# -- bundle.json (pure) ----------------------------------------------------------------------
def bundle_id(fingerprint: str, input_shape: tuple[int, ...], class_names: tuple[str, ...]) -> str:
    """Identity of what a bundle serves: the trained weights plus the input/output contract."""
    text = f"{BUNDLE_FORMAT}\n{fingerprint}\n{list(input_shape)}\n{list(class_names)}"
    return hashlib.sha256(text.encode()).hexdigest()[:ID_HEX_CHARS]


def parse_info(raw: Any, where: str) -> BundleInfo:
    """Validate bundle.json (pure); BadInputError names the field."""
    require_fields(raw, where, {"format": str, "id": str, "input": dict, "class_names": list})
    if raw["format"] != BUNDLE_FORMAT:
        raise BadInputError(f"{where}: format {raw['format']!r} is not {BUNDLE_FORMAT!r}")
    if len(raw["id"]) != ID_HEX_CHARS or any(c not in "0123456789abcdef" for c in raw["id"]):
        raise BadInputError(f"{where}: field 'id' is not {ID_HEX_CHARS} hex digits")
    require_fields(raw["input"], f"{where}: input", {"shape": list, "dtype": str})
    shape = raw["input"]["shape"]
    if (
        len(shape) != 4
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
        or not all(1 <= d <= 4096 for d in shape)
    ):
        raise BadInputError(f"{where}: input.shape must be 4 integers [T, C, H, W] in [1, 4096]")
    if raw["input"]["dtype"] != "uint8":
        raise BadInputError(f"{where}: input.dtype must be 'uint8'")
    names = raw["class_names"]
    if not 1 <= len(names) <= 4096 or not all(
        isinstance(n, str) and 0 < len(n) <= CLASS_NAME_CHARS_MAX for n in names
    ):
        raise BadInputError(f"{where}: class_names must be 1 to 4096 non-empty strings")
    models = raw.get("models", {})
    if not isinstance(models, dict):
        raise BadInputError(f"{where}: field 'models' must be an object")
    frames, channels, height, width = shape
    return BundleInfo(
        raw["id"], frames, channels, height, width, tuple(names), bool(models.get("onnx")), raw
    )


# -- verified load ---------------------------------------------------------------------------
def verify_bundle(path: str | os.PathLike[str]) -> BundleRef:
    """Verify a bundle's manifest and bundle.json (no torch); VerifyError names the file.

    The path is resolved once, so a deploy's ``current`` symlink switched meanwhile cannot
    make us verify one bundle and load another.
    """
    given = Path(path)
    if not given.is_dir():
        raise BadInputError(f"BUNDLE: {given} is not a directory")
    root = Path(os.path.realpath(given))
    committed = manifest.verify(root)
    manifest_path = str(root / manifest.MANIFEST_NAME)
    kind = committed.meta.get("kind")
    if kind != BUNDLE_KIND:
        raise VerifyError(manifest_path, f"not a model bundle (kind {kind!r})")
    for required in (BUNDLE_JSON, MODEL_TS):
        if committed.entry(required) is None:
            raise VerifyError(str(root / required), "not listed in the bundle's manifest")
    info_path = root / BUNDLE_JSON
    try:
        info = parse_info(read_json(info_path, bytes_max=BUNDLE_JSON_BYTES_MAX), str(info_path))
    except BadInputError as exc:
        raise VerifyError(str(info_path), str(exc)) from None
    if committed.meta.get("id") != info.id:
        raise VerifyError(manifest_path, f"records id {committed.meta.get('id')!r}, not {info.id}")
    if info.has_onnx and committed.entry(MODEL_ONNX) is None:
        raise VerifyError(str(root / MODEL_ONNX), "named in bundle.json but not in the manifest")
    return BundleRef(root, committed, info)


def read_verified(ref: BundleRef, rel: str) -> bytes:
    """A listed file's bytes, re-hashed after reading: what we load is what was verified."""
    entry = ref.committed.entry(rel)
    path = ref.root / rel
    if entry is None:
        raise VerifyError(str(path), "not listed in the bundle's manifest")
    if entry.size > MODEL_BYTES_MAX:
        raise VerifyError(str(path), f"{entry.size} bytes exceeds the limit of {MODEL_BYTES_MAX}")
    with open(path, "rb") as handle:
        data = handle.read(entry.size + 1)
    if len(data) != entry.size or sha256_bytes(data) != entry.sha256:
        raise VerifyError(str(path), "changed after verification (sha256 differs from manifest)")
    return data


@contextlib.contextmanager
def _quiet_deprecations() -> Iterator[None]:
    # torch 2.9+ marks TorchScript and the TorchScript-based ONNX exporter deprecated; both
    # still work and are what the issue asks for, so the warning is noise to a CLI user.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*deprecated.*")
        # The ONNX exporter traces GroupNorm's training-only size check; eval never runs it.
        warnings.filterwarnings("ignore", message=".*Converting a tensor to a Python boolean.*")
        yield


def load_torchscript(data: bytes, where: str) -> Any:
    import torch

    try:
        with _quiet_deprecations():
            module = torch.jit.load(io.BytesIO(data), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any load failure means a bad model file
        raise VerifyError(where, f"not a loadable TorchScript model: {exc}") from None
    module.eval()
    return module


def optimize(module: Any, input_shape: tuple[int, ...]) -> Any | None:
    """freeze + optimize_for_inference, or None when that fails or changes the outputs.

    It moves the 3D convolutions to oneDNN (single-sample latency ~2.5x lower on CPU than
    the default slow_conv3d path). The result cannot be saved, so it is redone at every
    load, and kept only if it matches the saved model on the parity batches.
    """
    import torch

    try:
        with _quiet_deprecations():
            fast = torch.jit.optimize_for_inference(torch.jit.freeze(module))
        batches = parity_batches(input_shape)
        diff = max_abs_diff(_run_torch(fast, batches), _run_torch(module, batches))
    except Exception:  # noqa: BLE001 - optional speed-up: any failure keeps the plain model
        return None
    return fast if diff <= PARITY_ATOL else None


def load_bundle(path: str | os.PathLike[str], *, fast: bool = True) -> LoadedBundle:
    """Verify, then load the TorchScript model (CPU, eval mode; optimized when ``fast``)."""
    ref = verify_bundle(path)
    module = load_torchscript(read_verified(ref, MODEL_TS), str(ref.root / MODEL_TS))
    faster = optimize(module, ref.info.input_shape) if fast else None
    return LoadedBundle(ref, faster if faster is not None else module, faster is not None)


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


def parity_batches(input_shape: tuple[int, ...]) -> list[np.ndarray]:
    """The fixed uint8 batches every engine is compared on (seeded, so reproducible)."""
    rng = np.random.default_rng(PARITY_SEED)
    return [
        rng.integers(0, 256, size=(n, *input_shape), dtype=np.uint8) for n in PARITY_BATCH_SIZES
    ]


def max_abs_diff(outputs: list[np.ndarray], reference: list[np.ndarray]) -> float:
    return max(float(np.max(np.abs(a - b))) for a, b in zip(outputs, reference, strict=True))


def _run_torch(module: Any, batches: list[np.ndarray]) -> list[np.ndarray]:
    import torch

    with torch.inference_mode():
        return [module(torch.from_numpy(b)).numpy() for b in batches]


def onnx_session(data: bytes) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # One thread each: the same budget TorchScript gets, and no spinning pool on a small box.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def _onnx_bytes(module: Any, example: np.ndarray) -> bytes:
    import torch

    buffer = io.BytesIO()
    with _quiet_deprecations(), contextlib.redirect_stdout(sys.stderr):
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
    eager = _run_torch(serving, batches)
    with _quiet_deprecations():
        buffer = io.BytesIO()
        torch.jit.save(torch.jit.script(serving), buffer)
    ts_bytes = buffer.getvalue()
    ts_diff = max_abs_diff(_run_torch(load_torchscript(ts_bytes, MODEL_TS), batches), eager)
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


EVAL_SAMPLES_DEFAULT = 512


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
    from preflight_examples.serving.evaluate import evaluate_module
    from preflight_examples.serving.infer import serving_model
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
