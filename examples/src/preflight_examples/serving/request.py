"""What a /predict request (or a `trainer predict --input` file) may be, checked before
any model sees it: uint8 videos [N, T, C, H, W] of the bundle's input shape, as nested lists
or base64, within the size limits below. Pure: no torch, no server.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

import numpy as np

from preflight.durable import BadInputError, loads_strict

BODY_BYTES_MAX = 8 << 20  # an 8-sample batch of 16x3x64x64 as nested lists is ~6.5 MB
VIDEOS_PER_REQUEST_MAX = 32
SERVE_WORKERS_DEFAULT = 2  # inference threads: one per core of the small box this runs on
SERVE_QUEUE_MAX_DEFAULT = 64  # requests in flight before 503 rather than an ever longer queue


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
