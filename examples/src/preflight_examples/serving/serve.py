"""`trainer serve BUNDLE_OR_DEPLOY_DIR --port P`: the HTTP app (starlette) and its model slot;
``serving.server`` runs it on uvicorn, ``serving.serve_metrics`` renders /metrics.

POST /predict  {"videos": nested lists | base64, "shape": [...]} -> predictions + bundle id
GET  /healthz  the bundle being served (id, fingerprint) and the deploy target
GET  /metrics  Prometheus text: requests by endpoint and status, latency histogram, reloads

Hot swap: given a deploy directory, a watcher thread polls ``current`` every ``poll_s``;
on a change it loads the new bundle (verified) off the request path and then replaces one
reference. Each request reads that reference once when it starts, so in-flight requests
finish on the model they started with and none is dropped. A bundle that fails to load is
reported and not retried until ``current`` changes again; the old model keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from preflight.durable import BadInputError, DurableError
from preflight_examples.serving.bundle import load_bundle
from preflight_examples.serving.deploy import CURRENT, POLL_S_DEFAULT, current_target, is_deploy_dir
from preflight_examples.serving.infer import Predictor, records
from preflight_examples.serving.request import (
    BODY_BYTES_MAX,
    SERVE_QUEUE_MAX_DEFAULT,
    SERVE_WORKERS_DEFAULT,
    VIDEOS_PER_REQUEST_MAX,
    RequestError,
    parse_request,
)
from preflight_examples.serving.serve_metrics import ServeMetrics

# A body must arrive within this long: a client sending a byte at a time (slowloris) holds
# an upload slot, never a model slot, and loses even that after this bound (408).
BODY_READ_TIMEOUT_S = 10.0
UPLOADS_PER_SLOT = 4  # bodies being received at once, per queue slot
SHUTDOWN_TIMEOUT_S = 10.0


def log(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), file=sys.stderr, flush=True)


# -- the model slot and its watcher ----------------------------------------------------------
@dataclass
class Served:
    """What one request uses from start to end (replaced whole, never mutated)."""

    predictor: Predictor
    target: str | None  # the deploy ``current`` target it was loaded from
    loaded_at: float


@dataclass
class ServerState:
    source: Path
    engine: str
    served: Served
    metrics: ServeMetrics
    body_bytes_max: int = BODY_BYTES_MAX
    batch_max: int = VIDEOS_PER_REQUEST_MAX
    queue_max: int = SERVE_QUEUE_MAX_DEFAULT
    workers: int = SERVE_WORKERS_DEFAULT
    inflight: int = 0
    uploading: int = 0  # requests whose body is still being received
    body_read_timeout_s: float = BODY_READ_TIMEOUT_S
    pool: ThreadPoolExecutor | None = None
    failed_target: str | None = None


def load_predictor(path: Path, engine: str) -> Predictor:
    return Predictor(load_bundle(path), engine)


def initial_state(source: str | Path, engine: str = "torchscript", **limits: Any) -> ServerState:
    """Load the bundle (or the deploy dir's ``current``) before the port opens."""
    path = Path(source)
    if not path.is_dir():
        raise BadInputError(f"BUNDLE: {path} is not a directory")
    deploy = is_deploy_dir(path)
    target = current_target(path) if deploy else None
    predictor = load_predictor(path / CURRENT if deploy else path, engine)
    return ServerState(
        path, engine, Served(predictor, target, time.time()), ServeMetrics(), **limits
    )


def check_for_swap(state: ServerState) -> bool:
    """One watcher poll: load and swap in a changed ``current``; True when swapped."""
    target = current_target(state.source)
    if target is None or target == state.served.target or target == state.failed_target:
        return False
    try:
        predictor = load_predictor(state.source / CURRENT, state.engine)
    except (DurableError, OSError) as exc:
        state.failed_target = target
        state.metrics.reload("failed")
        log("reload_failed", target=target, error=str(exc), serving=state.served.predictor.id)
        return False
    old = state.served.predictor.id
    # One reference assignment: atomic under the GIL; requests that already read the old
    # Served keep it (and its model) alive until they finish.
    state.served = Served(predictor, target, time.time())
    state.failed_target = None
    state.metrics.reload("ok")
    log("model_swapped", old=old, new=predictor.id, target=target)
    return True


class Watcher:
    """Polls the deploy directory on a daemon thread; stop() is bounded."""

    def __init__(self, state: ServerState, poll_s: float) -> None:
        self._state = state
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="serve-watcher", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                check_for_swap(self._state)
            except Exception as exc:  # noqa: BLE001 - a watcher error must not kill serving
                log("watcher_error", error=repr(exc))

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = SHUTDOWN_TIMEOUT_S) -> None:
        self._stop.set()
        self._thread.join(timeout_s)


# -- HTTP ------------------------------------------------------------------------------------
def check_content_length(declared: str | None, limit_bytes: int) -> None:
    """RequestError for a content-length that is not plain ASCII digits ("²" is isdigit()
    but not int()-able; 5000 digits overflow int()) or that exceeds ``limit_bytes``."""
    if declared is None:
        return
    if not (declared.isascii() and declared.isdigit() and len(declared) <= 19):
        raise RequestError(400, "header 'content-length': not a number")
    if int(declared) > limit_bytes:
        raise RequestError(413, f"body: {declared} bytes exceeds the limit of {limit_bytes}")


async def read_body(request: Request, limit_bytes: int) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit_bytes`` (never buffered)."""
    check_content_length(request.headers.get("content-length"), limit_bytes)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit_bytes:
            raise RequestError(413, f"body: exceeds the limit of {limit_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_body_bounded(request: Request, limit_bytes: int, timeout_s: float) -> bytes:
    """``read_body`` within ``timeout_s``: a slow upload is a 408, never a held slot."""
    try:
        return await asyncio.wait_for(read_body(request, limit_bytes), timeout_s)
    except TimeoutError:
        raise RequestError(408, f"body: not received within {timeout_s:g} s") from None


def uploads_max(state: ServerState) -> int:
    return max(1, state.queue_max) * UPLOADS_PER_SLOT


def at_capacity(state: ServerState) -> bool:
    """No room for another request: every model slot or every upload slot is taken."""
    return state.inflight >= state.queue_max or state.uploading >= uploads_max(state)


def predict_body(state: ServerState, served: Served, body: bytes) -> dict[str, Any]:
    """Parse, validate and predict (runs on the inference pool, off the event loop)."""
    predictor = served.predictor
    info = predictor.bundle.info
    videos = parse_request(body, info.input_shape, state.batch_max, state.body_bytes_max)
    return {
        "bundle": predictor.id,
        "predictions": records(predictor.logits(videos), info.class_names),
    }


def _error(status: int, message: str, bundle: str) -> JSONResponse:
    return JSONResponse({"error": message, "bundle": bundle}, status_code=status)


def make_app(state: ServerState, poll_s: float = POLL_S_DEFAULT) -> Starlette:
    async def predict(request: Request) -> Response:
        started_s = time.perf_counter()
        served = state.served  # read once: this request uses this model to the end
        response = await _admit(request, served)
        state.metrics.request("predict", response.status_code, time.perf_counter() - started_s)
        return response

    async def _admit(request: Request, served: Served) -> Response:
        """Receive the body in an upload slot (bounded in number and time), then take a
        model slot: a request counts against capacity only once its body is here, so slow
        uploads cannot make every other request a 503. Only the event loop's thread touches
        the counters: no lock."""
        if state.uploading >= uploads_max(state):
            return _error(503, "server busy: too many uploads in progress", served.predictor.id)
        state.uploading += 1
        try:
            body = await read_body_bounded(request, state.body_bytes_max, state.body_read_timeout_s)
        except RequestError as exc:
            return _error(exc.status, exc.message, served.predictor.id)
        finally:
            state.uploading -= 1
        if state.inflight >= state.queue_max:
            return _error(503, "server busy: too many queued requests", served.predictor.id)
        state.inflight += 1
        try:
            return await _predict(body, served)
        finally:
            state.inflight -= 1

    async def _predict(body: bytes, served: Served) -> Response:
        try:
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(state.pool, predict_body, state, served, body)
        except RequestError as exc:
            return _error(exc.status, exc.message, served.predictor.id)
        except Exception as exc:  # noqa: BLE001 - a failed request, not a failed server
            log("predict_error", error=repr(exc))
            return _error(500, f"inference failed: {exc}", served.predictor.id)
        return JSONResponse(result, headers={"x-bundle-id": served.predictor.id})

    async def healthz(request: Request) -> Response:
        served = state.served
        info = served.predictor.bundle.info
        busy = at_capacity(state)
        body = {
            # Health is capacity: a load balancer must stop sending here while every slot
            # is taken, not learn it from 503s on /predict.
            "status": "busy" if busy else "ok",
            "inflight": state.inflight,
            "queue_max": state.queue_max,
            "uploading": state.uploading,
            "bundle": served.predictor.id,
            "fingerprint": info.raw.get("source", {}).get("fingerprint"),
            "target": served.target,
            "engine": state.engine,
            "loaded_at": served.loaded_at,
            "input_shape": list(info.input_shape),
            "class_names": list(info.class_names),
        }
        status = 503 if busy else 200
        state.metrics.request("healthz", status, 0.0)
        return JSONResponse(body, status_code=status, headers={"x-bundle-id": served.predictor.id})

    async def metrics(request: Request) -> Response:
        payload, content_type = state.metrics.render()
        return Response(payload, media_type=content_type)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.pool = ThreadPoolExecutor(state.workers, thread_name_prefix="serve-infer")
        watcher = Watcher(state, poll_s) if is_deploy_dir(state.source) else None
        if watcher is not None:
            watcher.start()
        try:
            yield
        finally:
            if watcher is not None:
                watcher.stop()
            state.pool.shutdown(wait=False, cancel_futures=True)

    routes = [
        Route("/predict", predict, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
