"""The HTTP server's lifecycle on uvicorn: the CLI's server on the main thread
(``serve_forever``: graceful shutdown on SIGINT/SIGTERM) and a background one with bounded
start and stop (``ServerThread``: tests, benchmarks). The app is ``serve.make_app``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from preflight.durable import BadInputError
from preflight_examples.serving.serve import SHUTDOWN_TIMEOUT_S, ServerState, make_app

STARTUP_TIMEOUT_S = 30.0
GRACEFUL_S = 5


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
