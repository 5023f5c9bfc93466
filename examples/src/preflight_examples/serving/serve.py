"""`trainer serve BUNDLE_OR_DEPLOY_DIR --port P`: HTTP JSON predictions on uvicorn + starlette.

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
import gc
import json
import signal
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from preflight.durable import BadInputError, DurableError
from preflight_examples.serving.bundle import load_bundle
from preflight_examples.serving.deploy import CURRENT, POLL_S_DEFAULT, current_target, is_deploy_dir
from preflight_examples.serving.infer import (
    BODY_BYTES_MAX,
    SERVE_QUEUE_MAX_DEFAULT,
    SERVE_WORKERS_DEFAULT,
    VIDEOS_PER_REQUEST_MAX,
    Predictor,
    RequestError,
    parse_request,
    records,
)

STARTUP_TIMEOUT_S = 30.0
# A body must arrive within this long: a client sending a byte at a time (slowloris) holds
# an upload slot, never a model slot, and loses even that after this bound (408).
BODY_READ_TIMEOUT_S = 10.0
UPLOADS_PER_SLOT = 4  # bodies being received at once, per queue slot
SHUTDOWN_TIMEOUT_S = 10.0
GRACEFUL_S = 5
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def log(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), file=sys.stderr, flush=True)


# -- metrics ---------------------------------------------------------------------------------
class ServeMetrics:
    """Prometheus exposition; prometheus_client when installed, else a minimal text form."""

    def __init__(self, use_prometheus_client: bool = True) -> None:
        try:
            import prometheus_client as prom
        except ImportError:
            prom = None
        if not use_prometheus_client:
            prom = None
        self._prom = prom
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        self._latency: dict[str, list[float]] = {}  # endpoint -> [sum_s, count]
        self._reloads: dict[str, int] = {}
        if prom is not None:
            # A registry per app: several servers in one process (tests) never collide.
            self.registry = prom.CollectorRegistry()
            # process_* (CPU, RSS, open fds, start time): the standard series a dashboard
            # and the usual alerts expect of any long-running server.
            prom.ProcessCollector(registry=self.registry)
            self._requests = prom.Counter(
                "preflight_serve_requests",
                "HTTP requests",
                ["endpoint", "status"],
                registry=self.registry,
            )
            self._seconds = prom.Histogram(
                "preflight_serve_request_latency_seconds",
                "request latency",
                ["endpoint"],
                buckets=LATENCY_BUCKETS_S,
                registry=self.registry,
            )
            self._reload_counter = prom.Counter(
                "preflight_serve_model_reloads",
                "model reloads",
                ["result"],
                registry=self.registry,
            )

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        if self._prom is not None:
            self._requests.labels(endpoint, str(status)).inc()
            self._seconds.labels(endpoint).observe(seconds)
            return
        with self._lock:
            key = (endpoint, str(status))
            self._counts[key] = self._counts.get(key, 0) + 1
            total = self._latency.setdefault(endpoint, [0.0, 0.0])
            total[0] += seconds
            total[1] += 1

    def reload(self, result: str) -> None:
        if self._prom is not None:
            self._reload_counter.labels(result).inc()
            return
        with self._lock:
            self._reloads[result] = self._reloads.get(result, 0) + 1

    def render(self) -> tuple[bytes, str]:
        if self._prom is not None:
            return self._prom.generate_latest(self.registry), self._prom.CONTENT_TYPE_LATEST
        with self._lock:
            # HELP and TYPE for every family, as `promtool check metrics` asks.
            lines = [
                "# HELP preflight_serve_requests_total HTTP requests",
                "# TYPE preflight_serve_requests_total counter",
            ]
            for (endpoint, status), count in sorted(self._counts.items()):
                lines.append(
                    f'preflight_serve_requests_total{{endpoint="{endpoint}",status="{status}"}} '
                    f"{count}"
                )
            lines.append("# HELP preflight_serve_request_latency_seconds request latency")
            lines.append("# TYPE preflight_serve_request_latency_seconds summary")
            for endpoint, (total_s, count) in sorted(self._latency.items()):
                label = f'{{endpoint="{endpoint}"}}'
                lines.append(f"preflight_serve_request_latency_seconds_sum{label} {total_s}")
                lines.append(f"preflight_serve_request_latency_seconds_count{label} {count:.0f}")
            lines.append("# HELP preflight_serve_model_reloads_total model reloads")
            lines.append("# TYPE preflight_serve_model_reloads_total counter")
            for result, count in sorted(self._reloads.items()):
                lines.append(f'preflight_serve_model_reloads_total{{result="{result}"}} {count}')
        return ("\n".join(lines) + "\n").encode(), "text/plain; version=0.0.4; charset=utf-8"


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


# -- server lifecycle ------------------------------------------------------------------------
def bind(host: str, port: int) -> socket.socket:
    """Bind ourselves, so a taken port is a clear error (exit 2), not uvicorn's sys.exit(3)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise BadInputError(f"--host/--port: cannot listen on {host}:{port}: {exc}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    """uvicorn re-raises a caught SIGTERM once it has shut down, so a clean shutdown would
    still end the process by the signal (exit -15); serve_forever handles signals itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def uvicorn_server(app: Starlette) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_keep_alive=5,
        timeout_graceful_shutdown=GRACEFUL_S,
    )
    return _Server(config)


class ServerThread:
    """A server on a background thread with bounded start and stop (tests, benchmarks)."""

    def __init__(self, app: Starlette, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = bind(host, port)
        self.host = host
        self.port = int(self.sock.getsockname()[1])
        self.server = uvicorn_server(app)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="serve", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = STARTUP_TIMEOUT_S) -> ServerThread:
        self._thread.start()
        deadline_s = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline_s:
                self.stop()
                raise RuntimeError(f"server on {self.url} did not start within {timeout_s} s")
            time.sleep(0.01)
        return self

    def stop(self, timeout_s: float = SHUTDOWN_TIMEOUT_S) -> None:
        self.server.should_exit = True
        self._thread.join(timeout_s / 2)
        if self._thread.is_alive():
            self.server.force_exit = True
            self._thread.join(timeout_s / 2)
        self.sock.close()
        if self._thread.is_alive():
            raise RuntimeError(f"server on {self.url} did not stop within {timeout_s} s")

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_forever(
    state: ServerState, host: str, port: int, poll_s: float, announce: Callable[[dict], None]
) -> None:
    """The CLI's server on the main thread. SIGINT/SIGTERM start a graceful shutdown
    (in-flight requests finish, bounded by GRACEFUL_S); a second signal stops waiting."""
    sock = bind(host, port)
    bound_port = int(sock.getsockname()[1])
    server = uvicorn_server(make_app(state, poll_s))
    # Everything allocated so far (torch, the model, the app) lives as long as the server:
    # moved out of the collector's reach, a full collection under load no longer walks it
    # (measured: a 120 ms pause in the middle of serving without this).
    gc.collect()
    gc.freeze()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        server.force_exit = server.should_exit
        server.should_exit = True

    async def run() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        deadline_s = time.monotonic() + STARTUP_TIMEOUT_S
        while not server.started and not task.done() and time.monotonic() < deadline_s:
            await asyncio.sleep(0.01)
        if not server.started:
            server.should_exit = True
            await asyncio.wait_for(task, SHUTDOWN_TIMEOUT_S)
            raise RuntimeError(f"server did not start within {STARTUP_TIMEOUT_S} s")
        url = f"http://{host}:{bound_port}"
        announce(
            {
                "event": "serving",
                "url": url,
                "bundle": state.served.predictor.id,
                "source": str(state.source),
            }
        )
        await task

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        asyncio.run(run())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
