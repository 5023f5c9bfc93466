"""Inference: the exported model, request validation, batch predict, `trainer bench-infer`.

torch is imported only where a model runs, so the CLI can build its parser (and
`trainer rollback` can run) without paying for the torch import.

One input contract everywhere: uint8 videos [N, T, C, H, W] (the dataset's layout), checked
against the bundle's input shape before the model sees them. Preprocessing lives inside the
exported model (``serving_model``), so no caller can feed it differently from training.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from preflight.durable import BadInputError, atomic_write, loads_strict
from preflight_examples.serving.bundle import MODEL_ONNX, LoadedBundle, onnx_session, read_verified

if TYPE_CHECKING:
    import torch

BODY_BYTES_MAX = 8 << 20  # an 8-sample batch of 16x3x64x64 as nested lists is ~6.5 MB
VIDEOS_PER_REQUEST_MAX = 32
INPUT_FILE_BYTES_MAX = 256 << 20
PREDICT_BATCH_DEFAULT = 32
ENGINES = ("torchscript", "onnx")
SERVE_WORKERS_DEFAULT = 2  # inference threads: one per core of the small box this runs on
SERVE_QUEUE_MAX_DEFAULT = 64  # requests in flight before 503 rather than an ever longer queue
PERCENTILES = (50, 95, 99)


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


# -- input validation (pure) -----------------------------------------------------------------
class RequestError(Exception):
    """A request the server refuses: HTTP status plus a message naming the field."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def check_videos(
    videos: np.ndarray, shape: tuple[int, ...], where: str, batch_max: int
) -> np.ndarray:
    """uint8 [N, *shape] with 1 <= N <= batch_max, or RequestError naming ``where``."""
    want = "[N, " + ", ".join(str(d) for d in shape) + "]"
    if videos.ndim != len(shape) + 1 or tuple(videos.shape[1:]) != tuple(shape):
        raise RequestError(400, f"{where}: shape {list(videos.shape)} is not {want}")
    if videos.shape[0] < 1:
        raise RequestError(400, f"{where}: holds no videos")
    if videos.shape[0] > batch_max:
        raise RequestError(413, f"{where}: {videos.shape[0]} videos, at most {batch_max} allowed")
    if videos.dtype == np.uint8:
        return videos
    if videos.dtype.kind not in "iu":
        raise RequestError(400, f"{where}: values must be integers 0..255, got {videos.dtype}")
    if videos.size and (videos.min() < 0 or videos.max() > 255):
        raise RequestError(400, f"{where}: values must be in 0..255")
    return videos.astype(np.uint8)


SHAPE_DIMS_MAX = 8  # [N, T, C, H, W] has 5; numpy itself stops at 64 (a 500, not a 400)


def _shape_field(raw: Any) -> tuple[int, ...]:
    if isinstance(raw, list) and len(raw) > SHAPE_DIMS_MAX:
        raise RequestError(
            400, f"field 'shape': {len(raw)} dimensions, at most {SHAPE_DIMS_MAX} allowed"
        )
    if not isinstance(raw, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 1 << 20 for d in raw
    ):
        raise RequestError(400, "field 'shape': must be a list of non-negative integers")
    return tuple(raw)


def _decode_base64(request: dict[str, Any]) -> np.ndarray:
    if request.get("dtype", "uint8") != "uint8":
        raise RequestError(400, "field 'dtype': only 'uint8' is accepted")
    if "shape" not in request:
        raise RequestError(400, "field 'shape': required with base64 'videos'")
    shape = _shape_field(request["shape"])
    try:
        data = base64.b64decode(request["videos"], validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, "field 'videos': not valid base64") from None
    if len(data) != math.prod(shape):
        raise RequestError(
            400, f"field 'videos': {len(data)} bytes do not fill shape {list(shape)}"
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def _nested(values: list[Any]) -> np.ndarray:
    try:
        array = np.array(values)
    except (ValueError, TypeError):
        raise RequestError(400, "field 'videos': nested lists are ragged") from None
    if array.dtype == np.bool_ or array.dtype.kind not in "iuf":
        raise RequestError(400, f"field 'videos': values must be integers 0..255 ({array.dtype})")
    if array.dtype.kind == "f":
        raise RequestError(400, "field 'videos': values must be integers 0..255, not floats")
    return array


def loads_body(body: bytes) -> Any:
    """Strict, bounded JSON (durable.loads_strict: no NaN/Infinity, bounded ints and depth)."""
    return loads_strict(body, "body")


def parse_request(
    body: bytes,
    shape: tuple[int, ...],
    batch_max: int = VIDEOS_PER_REQUEST_MAX,
    body_bytes_max: int = BODY_BYTES_MAX,
) -> np.ndarray:
    """A /predict body -> uint8 [N, T, C, H, W].

    ``{"videos": nested lists}`` or ``{"videos": "<base64 uint8>", "shape": [N, T, C, H, W]}``.
    """
    if len(body) > body_bytes_max:
        raise RequestError(413, f"body: {len(body)} bytes exceeds the limit of {body_bytes_max}")
    try:
        request = loads_body(body)
    except BadInputError as exc:
        raise RequestError(400, str(exc)) from None
    if not isinstance(request, dict) or "videos" not in request:
        raise RequestError(400, "body: expected a JSON object with field 'videos'")
    videos = request["videos"]
    if isinstance(videos, str):
        array = _decode_base64(request)
    elif isinstance(videos, list):
        array = _nested(videos)
    else:
        raise RequestError(400, "field 'videos': must be nested lists or a base64 string")
    return check_videos(array, shape, "field 'videos'", batch_max)


def encode_request(videos: np.ndarray) -> dict[str, Any]:
    """The compact request form (base64), as clients and the load test send it."""
    videos = np.ascontiguousarray(videos, dtype=np.uint8)
    return {
        "videos": base64.b64encode(videos.tobytes()).decode("ascii"),
        "shape": list(videos.shape),
        "dtype": "uint8",
    }


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


# -- bench-infer -----------------------------------------------------------------------------
def latency_summary(latencies_s: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds (pure)."""
    if not latencies_s:
        raise ValueError("latency_summary: no samples")
    ms = np.asarray(latencies_s, dtype=np.float64) * 1e3
    values = np.percentile(ms, PERCENTILES)
    summary = {
        f"latency_ms_p{p}": round(float(v), 3) for p, v in zip(PERCENTILES, values, strict=True)
    }
    summary["latency_ms_max"] = round(float(ms.max()), 3)
    summary["latency_ms_mean"] = round(float(ms.mean()), 3)
    return summary


@dataclass(frozen=True)
class BenchPlan:
    batch_sizes: tuple[int, ...]
    iterations: int  # timed calls per batch size, at most
    warmup: int  # untimed calls first (allocator, lazy init)
    budget_s: float  # wall-clock bound per batch size: a slow box gives fewer samples, no hang


def bench_batch(engine: Engine, batch: np.ndarray, plan: BenchPlan) -> dict[str, Any]:
    for _ in range(plan.warmup):
        engine(batch)
    latencies_s: list[float] = []
    started_s = time.perf_counter()
    while len(latencies_s) < plan.iterations and time.perf_counter() - started_s < plan.budget_s:
        begin_s = time.perf_counter()
        engine(batch)
        latencies_s.append(time.perf_counter() - begin_s)
    busy_s = sum(latencies_s)
    return {
        "batch_size": int(batch.shape[0]),
        "iterations": len(latencies_s),
        **latency_summary(latencies_s),
        "throughput_samples_per_s": round(batch.shape[0] * len(latencies_s) / busy_s, 1),
    }


def bench_infer(predictor: Predictor, plan: BenchPlan, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    shape = predictor.bundle.info.input_shape
    results = []
    for size in plan.batch_sizes:
        batch = rng.integers(0, 256, size=(size, *shape), dtype=np.uint8)
        predictor.logits(batch)  # validates the shape once, outside the timed loop
        results.append(bench_batch(predictor.engine, batch, plan))
    return results


def machine() -> dict[str, Any]:
    import platform

    import torch

    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


SINGLE_SAMPLE_P99_MS_TARGET = 10.0  # the bar on this CPU box (the seed asks < 100 ms)


def bench_report(
    predictor: Predictor, plan: BenchPlan, results: list[dict[str, Any]], threads: int
) -> dict[str, Any]:
    """reports/bench-infer.json: per batch size latencies and throughput, target, verdict."""
    single = next((r for r in results if r["batch_size"] == 1), None)
    measured = single["latency_ms_p99"] if single else None
    passed = None if measured is None else measured <= SINGLE_SAMPLE_P99_MS_TARGET
    return {
        "benchmark": "bench-infer",
        "bundle": predictor.id,
        "bundle_dir": str(predictor.bundle.ref.root),
        "engine": predictor.engine_name,
        "input_shape": list(predictor.bundle.info.input_shape),
        "threads": threads,
        "plan": {"iterations": plan.iterations, "warmup": plan.warmup, "budget_s": plan.budget_s},
        "machine": machine(),
        "results": results,
        "target": {
            "name": "single_sample_latency_ms_p99",
            "measured": measured,
            "target": f"<= {SINGLE_SAMPLE_P99_MS_TARGET}",
            "pass": passed,
        },
        "pass": passed,
    }
