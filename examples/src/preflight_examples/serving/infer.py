"""Inference: the exported model, its engines, batch predict (`trainer predict`).

torch is imported only where a model runs, so the CLI can build its parser (and
`trainer rollback` can run) without paying for the torch import.

One input contract everywhere: uint8 videos [N, T, C, H, W] (the dataset's layout), checked
against the bundle's input shape before the model sees them (``serving.request``).
Preprocessing lives inside the exported model (``serving_model``), so no caller can feed it
differently from training.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from preflight.durable import BadInputError, atomic_write
from preflight_examples.serving.bundle import MODEL_ONNX, LoadedBundle, onnx_session, read_verified
from preflight_examples.serving.request import RequestError, check_videos, parse_request

if TYPE_CHECKING:
    import torch

INPUT_FILE_BYTES_MAX = 256 << 20
PREDICT_BATCH_DEFAULT = 32
ENGINES = ("torchscript", "onnx")


# -- the model that is exported --------------------------------------------------------------
def preprocess(videos: torch.Tensor) -> torch.Tensor:
    """uint8 [N, T, C, H, W] -> float32 [N, C, T, H, W] in [-1, 1].

    The same ops in the same order as `trainer fit` (Dataset.batch's transpose, then
    ``.float().div_(PIXEL_SCALE).sub_(1.0)``), so served inputs are bit-identical to
    training inputs; a unit test compares the two. The constant is spelled out because
    TorchScript cannot read module globals; serving_model() asserts it still matches.
    """
    return videos.permute(0, 2, 1, 3, 4).float().div(127.5).sub(1.0)


def serving_model(classifier: Any) -> Any:
    """The trained classifier behind its preprocessing: uint8 videos in, logits out.

    The class is built here so that importing this module does not import torch.
    """
    from torch import nn

    from preflight_examples.trainer.data import PIXEL_SCALE

    assert PIXEL_SCALE == 127.5, "infer.preprocess must change with trainer.data.PIXEL_SCALE"

    class ServingModel(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.classifier = inner

        def forward(self, videos: torch.Tensor) -> torch.Tensor:
            return self.classifier(preprocess(videos))

    return ServingModel(classifier).eval()


# -- engines and predictions -----------------------------------------------------------------
Engine = Callable[[np.ndarray], np.ndarray]


def torchscript_engine(module: Any) -> Engine:
    import torch

    def run(videos: np.ndarray) -> np.ndarray:
        videos = np.ascontiguousarray(videos)
        if not videos.flags.writeable:
            # torch.from_numpy shares memory and warns on read-only arrays (base64 bodies,
            # memory maps); the model never writes its input, but a copy keeps torch quiet.
            videos = videos.copy()
        with torch.inference_mode():
            return module(torch.from_numpy(videos)).numpy()

    return run


def onnx_engine(bundle: LoadedBundle) -> Engine:
    if not bundle.info.has_onnx:
        raise BadInputError(f"--engine onnx: bundle {bundle.ref.root} has no {MODEL_ONNX}")
    try:
        session = onnx_session(read_verified(bundle.ref, MODEL_ONNX))
    except ImportError:
        raise BadInputError("--engine onnx: onnxruntime is not installed") from None

    def run(videos: np.ndarray) -> np.ndarray:
        return session.run(None, {"videos": np.ascontiguousarray(videos)})[0]

    return run


class Predictor:
    """A loaded bundle behind one engine; validates every batch against the input shape."""

    def __init__(self, bundle: LoadedBundle, engine: str = "torchscript") -> None:
        if engine not in ENGINES:
            raise BadInputError(f"--engine: must be one of {', '.join(ENGINES)}")
        self.bundle = bundle
        self.engine_name = engine
        # The raw engine (no shape check): what bench-infer times.
        self.engine: Engine = (
            torchscript_engine(bundle.module) if engine == "torchscript" else onnx_engine(bundle)
        )

    @property
    def id(self) -> str:
        return self.bundle.id

    def logits(self, videos: np.ndarray, batch_max: int = 1 << 20) -> np.ndarray:
        videos = check_videos(videos, self.bundle.info.input_shape, "videos", batch_max)
        return np.asarray(self.engine(videos), dtype=np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise probabilities in float64 (stable: the row max is subtracted first)."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def records(
    logits: np.ndarray,
    class_names: Sequence[str],
    first_index: int = 0,
    labels: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """One JSON-able prediction per row: class, name, its probability, all probabilities."""
    probs = softmax(logits)
    chosen = probs.argmax(axis=1)
    rows = []
    for row, k in enumerate(chosen.tolist()):
        item: dict[str, Any] = {
            "index": first_index + row,
            "class": k,
            "class_name": class_names[k],
            "score": float(probs[row, k]),
            "probs": [float(p) for p in probs[row]],
        }
        if labels is not None:
            item["label"] = int(labels[row])
        rows.append(item)
    return rows


def to_csv(rows: list[dict[str, Any]], class_names: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    has_label = bool(rows) and "label" in rows[0]
    header = ["index", *(["label"] if has_label else []), "class", "class_name", "score"]
    writer.writerow(header + [f"p_{name}" for name in class_names])
    for row in rows:
        head = [row["index"], *([row["label"]] if has_label else []), row["class"]]
        probs = [repr(p) for p in row["probs"]]
        writer.writerow(head + [row["class_name"], repr(row["score"]), *probs])
    return buffer.getvalue()


# -- batch sources ---------------------------------------------------------------------------
def dataset_batches(
    dataset: Any, limit: int | None, batch_size: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(first index, uint8 [B, T, C, H, W], labels) over the first ``limit`` samples in order."""
    total = dataset.info.samples if limit is None else min(limit, dataset.info.samples)
    for start in range(0, total, batch_size):
        indices = np.arange(start, min(start + batch_size, total))
        videos, labels = dataset.batch(indices)
        # Dataset.batch hands out the training layout [B, C, T, H, W]; undo it (a view).
        yield start, videos.transpose(0, 2, 1, 3, 4), labels


def read_input_file(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """--input: a .npy uint8 array [N, T, C, H, W] or a JSON file in the /predict format."""
    if not path.is_file():
        raise BadInputError(f"--input: {path} is not a file")
    if path.stat().st_size > INPUT_FILE_BYTES_MAX:
        raise BadInputError(f"--input: {path} exceeds {INPUT_FILE_BYTES_MAX} bytes")
    try:
        if path.suffix == ".npy":
            array = np.load(path, mmap_mode="r", allow_pickle=False)
            return check_videos(np.asarray(array), shape, f"--input {path}", 1 << 30)
        body = path.read_bytes()
        return parse_request(body, shape, 1 << 30, INPUT_FILE_BYTES_MAX)
    except RequestError as exc:
        raise BadInputError(f"--input {path}: {exc.message}") from None
    except ValueError as exc:
        raise BadInputError(f"--input {path}: not a readable .npy file: {exc}") from None


def predict_rows(
    predictor: Predictor,
    batches: Iterator[tuple[int, np.ndarray, np.ndarray | None]],
) -> list[dict[str, Any]]:
    names = predictor.bundle.info.class_names
    rows: list[dict[str, Any]] = []
    for start, videos, labels in batches:
        rows += records(predictor.logits(videos), names, start, labels)
    return rows


def array_batches(
    videos: np.ndarray, batch_size: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    for start in range(0, len(videos), batch_size):
        yield start, videos[start : start + batch_size], None


def render(rows: list[dict[str, Any]], predictor: Predictor, fmt: str) -> str | dict[str, Any]:
    names = predictor.bundle.info.class_names
    if fmt == "csv":
        return to_csv(rows, names)
    return {"bundle": predictor.id, "class_names": list(names), "predictions": rows}


def write_output(content: str | dict[str, Any], out: str | None) -> None:
    """--out FILE atomically, or stdout."""
    if out is None:
        text = content if isinstance(content, str) else json.dumps(content) + "\n"
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    atomic_write(out, content)
