"""The HTTP server: endpoints, refusals, metrics, hot swap with no failed request, load."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

# `trainer serve` needs the serving dependencies; without them only this file is skipped.
pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

from preflight_examples.serving import deploy, serve  # noqa: E402
from preflight_examples.serving.bundle import load_bundle  # noqa: E402
from preflight_examples.serving.infer import Predictor  # noqa: E402
from preflight_examples.serving.request import encode_request  # noqa: E402
from preflight_examples.serving.serve_metrics import ServeMetrics  # noqa: E402
from preflight_examples.serving.server import ServerThread  # noqa: E402

from suites.examples.serving.conftest import Cli, bundle_id, load_bench_serve  # noqa: E402

SHAPE = (4, 1, 16, 16)
WAIT_S = 20.0  # bound on every wait for the server to switch models


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_bench_serve()


def clips(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *SHAPE), dtype=np.uint8)


def post(url: str, body: bytes, chunked: bool = False) -> tuple[int, dict, str | None]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        if chunked:  # no content-length: the limit must hold while streaming
            conn.request("POST", "/predict", body=iter([body]), encode_chunked=True)
        else:
            conn.request("POST", "/predict", body=body)
        response = conn.getresponse()
        return response.status, json.loads(response.read()), response.getheader("x-bundle-id")
    finally:
        conn.close()


@pytest.fixture
def server(bundle4: Path) -> Iterator[ServerThread]:
    state = serve.initial_state(bundle4, body_bytes_max=64 << 10, batch_max=4)
    with ServerThread(serve.make_app(state)) as running:
        yield running


def wait_for(bench: ModuleType, url: str, bundle: str) -> None:
    bench.wait_for_bundle(url, bundle, timeout_s=WAIT_S)


def test_predict_and_healthz(server: ServerThread, bundle4: Path, bench: ModuleType) -> None:
    status, health = bench.request(server.url, "GET", "/healthz")
    assert status == 200 and health["bundle"] == bundle_id(bundle4)
    assert (
        health["fingerprint"]
        == json.loads((bundle4 / "bundle.json").read_text())["source"]["fingerprint"]
    )
    videos = clips(3)
    offline = Predictor(load_bundle(bundle4)).logits(videos)
    want = np.exp(offline) / np.exp(offline).sum(axis=1, keepdims=True)
    for body in (encode_request(videos), {"videos": videos.tolist()}):
        status, reply, header = post(server.url, json.dumps(body).encode())
        assert status == 200 and header == reply["bundle"] == bundle_id(bundle4)
        got = np.array([p["probs"] for p in reply["predictions"]])
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_bad_requests_get_400_or_413_and_are_counted(
    server: ServerThread, bench: ModuleType
) -> None:
    status, reply, _ = post(server.url, b"{oops")
    assert status == 400 and "invalid JSON" in reply["error"]
    status, reply, _ = post(server.url, json.dumps({"videos": clips(1)[:, :1].tolist()}).encode())
    assert status == 400 and "field 'videos'" in reply["error"]
    status, reply, _ = post(server.url, json.dumps(encode_request(clips(5))).encode())
    assert status == 413 and "at most 4" in reply["error"]
    big = b" " * (65 << 10)
    for chunked in (False, True):
        status, reply, _ = post(server.url, big, chunked=chunked)
        assert status == 413 and "exceeds the limit" in reply["error"]
    assert bench.request(server.url, "GET", "/predict")[0] == 405
    status, metrics = bench.request(server.url, "GET", "/metrics")
    text = metrics["text"]
    assert status == 200
    assert 'preflight_serve_requests_total{endpoint="predict",status="400"} 2.0' in text
    assert 'preflight_serve_requests_total{endpoint="predict",status="413"} 3.0' in text
    assert "preflight_serve_request_latency_seconds_bucket" in text


def test_hot_swap_and_rollback_drop_no_request(
    bundle4: Path, worse4: Path, tmp_path: Path, bench: ModuleType
) -> None:
    d = tmp_path / "deploy"
    deploy.promote(bundle4, d)
    state = serve.initial_state(d)
    bodies = [json.dumps(encode_request(clips(1, seed))).encode() for seed in range(4)]
    with ServerThread(serve.make_app(state, poll_s=0.05)) as running:
        stop = threading.Event()
        outcomes: list = []

        def load() -> None:
            outcomes.extend(bench.open_loop(running.url, bodies, 80.0, WAIT_S, 3, stop))

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        time.sleep(0.2)
        deploy.promote(worse4, d)
        wait_for(bench, running.url, bundle_id(worse4))
        time.sleep(0.2)
        deploy.rollback(d)
        wait_for(bench, running.url, bundle_id(bundle4))
        time.sleep(0.2)
        stop.set()
        loader.join(WAIT_S)
    assert outcomes and all(o.status == 200 for o in outcomes), bench.summarize(outcomes)
    served = [o.bundle for o in outcomes]
    assert bundle_id(worse4) in served  # the swap happened under load, both ways
    assert served[-1] == bundle_id(bundle4)


def test_a_bundle_that_fails_to_load_is_not_served(
    bundle4: Path, worse4: Path, tmp_path: Path, bench: ModuleType
) -> None:
    d = tmp_path / "deploy"
    deploy.promote(worse4, d)
    deploy.promote(bundle4, d)
    (d / "bundles" / bundle_id(worse4) / "model.ts").write_bytes(b"tampered")
    state = serve.initial_state(d)
    with ServerThread(serve.make_app(state, poll_s=0.05)) as running:
        deploy.switch_current(d, bundle_id(worse4))  # bypasses rollback's own verification
        deadline_s = time.monotonic() + WAIT_S
        while state.failed_target is None and time.monotonic() < deadline_s:
            time.sleep(0.02)
        assert state.failed_target == bundle_id(worse4)
        assert bench.request(running.url, "GET", "/healthz")[1]["bundle"] == bundle_id(bundle4)
        status, _, header = post(running.url, json.dumps(encode_request(clips(1))).encode())
        assert status == 200 and header == bundle_id(bundle4)
        text = bench.request(running.url, "GET", "/metrics")[1]["text"]
        assert 'preflight_serve_model_reloads_total{result="failed"} 1.0' in text


def test_load_at_twice_the_expected_rate_has_no_errors(
    server: ServerThread, bench: ModuleType
) -> None:
    """Small tier of benchmarks/bench_serve.py: the p99 is reported there, not judged here."""
    bodies = [json.dumps(encode_request(clips(1, seed))).encode() for seed in range(4)]
    expected_rate_per_s = 20.0
    outcomes = bench.open_loop(server.url, bodies, 2 * expected_rate_per_s, 1.5)
    summary = bench.summarize(outcomes)
    assert summary["requests"] == 60 and summary["errors"] == 0, summary
    assert summary["latency_ms_p50"] <= summary["latency_ms_p99"]


def test_serve_refuses_a_taken_port(bundle4: Path, cli: Cli) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = cli(["serve", str(bundle4), "--port", str(port)])
    assert result.code == 2 and "cannot listen" in result.err


@pytest.mark.parametrize("use_prometheus_client", [True, False])
def test_metrics_exposition_with_and_without_prometheus_client(
    use_prometheus_client: bool,
) -> None:
    if use_prometheus_client:
        pytest.importorskip("prometheus_client")
    metrics = ServeMetrics(use_prometheus_client)
    metrics.request("predict", 200, 0.004)
    metrics.request("predict", 200, 0.006)
    metrics.request("predict", 413, 0.001)
    metrics.reload("ok")
    text = metrics.render()[0].decode()
    for line in (
        'preflight_serve_requests_total{endpoint="predict",status="200"} 2',
        'preflight_serve_requests_total{endpoint="predict",status="413"} 1',
        'preflight_serve_request_latency_seconds_count{endpoint="predict"} 3',
        'preflight_serve_model_reloads_total{result="ok"} 1',
    ):
        assert line in text, text
