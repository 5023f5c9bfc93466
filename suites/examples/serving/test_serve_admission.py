"""Issue 19, item 6: slow uploads never take model slots, a body must arrive in bounded
time, /healthz reflects capacity, and an absurd ``shape`` is a 400."""

from __future__ import annotations

import base64
import http.client
import json
import socket
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

from preflight_examples.serving import serve  # noqa: E402
from preflight_examples.serving.request import RequestError, encode_request, parse_request  # noqa: E402
from preflight_examples.serving.server import ServerThread  # noqa: E402

SHAPE = (4, 1, 16, 16)
QUEUE_MAX = 2
SLOW_UPLOADS = 6  # more than the queue: every model slot would be taken by old code
SOCKET_TIMEOUT_S = 20.0


def request(url: str, method: str, path: str, body: bytes | None = None) -> tuple[int, dict]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=SOCKET_TIMEOUT_S)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def slow_upload(url: str, stack: ExitStack) -> socket.socket:
    """Headers for a 1000-byte body, then one byte: the body never completes."""
    host, port = url.removeprefix("http://").split(":")
    sock = stack.enter_context(socket.create_connection((host, int(port)), SOCKET_TIMEOUT_S))
    sock.sendall(
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n{"
    )
    return sock


def body() -> bytes:
    videos = np.zeros((1, *SHAPE), dtype=np.uint8)
    return json.dumps(encode_request(videos)).encode()


@pytest.fixture
def state(bundle4: Path) -> serve.ServerState:
    return serve.initial_state(bundle4, queue_max=QUEUE_MAX, body_bytes_max=64 << 10)


@pytest.fixture
def server(state: serve.ServerState) -> Iterator[ServerThread]:
    with ServerThread(serve.make_app(state)) as running:
        yield running


def test_slow_uploads_do_not_take_model_slots(
    server: ServerThread, state: serve.ServerState
) -> None:
    with ExitStack() as stack:
        for _ in range(SLOW_UPLOADS):
            slow_upload(server.url, stack)
        status, reply = request(server.url, "POST", "/predict", body())
        assert status == 200, reply
        status, health = request(server.url, "GET", "/healthz")
        assert status == 200 and health["status"] == "ok" and health["inflight"] == 0


def test_a_body_that_does_not_arrive_in_time_is_a_408(
    server: ServerThread, state: serve.ServerState
) -> None:
    state.body_read_timeout_s = 0.2
    with ExitStack() as stack:
        sock = slow_upload(server.url, stack)
        reply = sock.recv(65536)  # bounded by the socket timeout
    assert reply.startswith(b"HTTP/1.1 408"), reply[:80]


def test_healthz_reflects_capacity(server: ServerThread, state: serve.ServerState) -> None:
    state.inflight = state.queue_max  # every model slot taken
    try:
        status, health = request(server.url, "GET", "/healthz")
        assert status == 503 and health["status"] == "busy"
    finally:
        state.inflight = 0
    status, health = request(server.url, "GET", "/healthz")
    assert status == 200 and health["status"] == "ok"


@pytest.mark.parametrize("dims", [65, 100_000])
def test_an_absurd_shape_is_a_400(dims: int) -> None:
    # One byte fills a shape of ones: only the number of dimensions is absurd.
    one_byte = base64.b64encode(b"\0").decode()
    raw = json.dumps({"videos": one_byte, "dtype": "uint8", "shape": [1] * dims}).encode()
    with pytest.raises(RequestError) as caught:
        parse_request(raw, SHAPE, 4, 16 << 20)
    assert caught.value.status == 400 and "shape" in caught.value.message
