"""Serving benchmark: a load test at 2x the expected rate, and rollback time under load.
Writes reports/bench-serve.json.

    .venv/bin/python benchmarks/bench_serve.py [--quick] [--out reports/bench-serve.json]

Two default-size models (--channels 16 --depth 3, 16x3x64x64 clips) are trained for a few
steps and exported; both are promoted into a deploy directory and `trainer serve` runs as
a child process on 127.0.0.1 following it. The load is open-loop: request i is due at
start + i / rate and its latency is counted from that due time, so a stalled server is
charged for the queue it causes (no coordinated omission). Rollback time is measured from
launching `trainer rollback` to the first /predict response carrying the old bundle's id,
while the expected load keeps running; every request in the window must succeed.

The load generator (``open_loop``, ``summarize``) is also used by the small-tier unit test.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

REPO = Path(__file__).resolve().parent.parent

EXPECTED_RATE_PER_S = 25.0  # the planning figure for one serving replica on this 2-core box
LOAD_FACTOR = 2.0  # the issue: load at 2x the expected rate
P99_TARGET_MS = 100.0  # the seed: "serve predictions at < 100 ms p99"
ROLLBACK_TARGET_S = 5.0  # the bar (the seed asks 5 minutes)
REQUEST_TIMEOUT_S = 10.0
CHILD_TIMEOUT_S = 600.0
SERVER_START_TIMEOUT_S = 120.0
SERVER_STOP_TIMEOUT_S = 20.0
SWITCH_TIMEOUT_S = 30.0
CLIENTS = 8
BODIES = 16


# -- HTTP client -----------------------------------------------------------------------------
def request(
    url: str, method: str, path: str, body: bytes | None = None, timeout_s: float = 10.0
) -> tuple[int, dict[str, Any]]:
    """One request on a fresh connection: (status, JSON body or {})."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout_s)
    try:
        headers = {"content-type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        try:
            return response.status, json.loads(payload) if payload else {}
        except ValueError:
            return response.status, {"text": payload.decode(errors="replace")}
    finally:
        conn.close()


@dataclass(frozen=True)
class Outcome:
    due_s: float  # when the request was due (perf_counter)
    done_s: float  # when its response (or error) arrived
    status: int  # HTTP status; 0 = connection error or timeout
    bundle: str | None  # x-bundle-id of the response

    @property
    def latency_s(self) -> float:
        return self.done_s - self.due_s


class _Client:
    """One keep-alive connection per client thread, reopened after an error."""

    def __init__(self, url: str, timeout_s: float) -> None:
        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port
        self._timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: bytes) -> tuple[int, str | None]:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout_s)
        try:
            self._conn.request(
                "POST", path, body=body, headers={"content-type": "application/json"}
            )
            response = self._conn.getresponse()
            response.read()
            return response.status, response.getheader("x-bundle-id")
        except (OSError, http.client.HTTPException):
            self.close()
            return 0, None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def open_loop(
    url: str,
    bodies: list[bytes],
    rate_per_s: float,
    duration_s: float,
    clients: int = CLIENTS,
    stop: threading.Event | None = None,
    timeout_s: float = REQUEST_TIMEOUT_S,
) -> list[Outcome]:
    """Send rate_per_s * duration_s POST /predict requests on a fixed schedule (bounded)."""
    total = max(1, int(rate_per_s * duration_s))
    start_s = time.perf_counter() + 0.05
    jobs: queue.Queue[int] = queue.Queue()
    for i in range(total):
        jobs.put(i)
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def work() -> None:
        client = _Client(url, timeout_s)
        try:
            while not (stop is not None and stop.is_set()):
                try:
                    i = jobs.get_nowait()
                except queue.Empty:
                    return
                due_s = start_s + i / rate_per_s
                time.sleep(max(0.0, due_s - time.perf_counter()))
                status, bundle = client.post("/predict", bodies[i % len(bodies)])
                with lock:
                    outcomes.append(Outcome(due_s, time.perf_counter(), status, bundle))
        finally:
            client.close()

    threads = [threading.Thread(target=work, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    # Every request has a timeout, so the whole run is bounded by this.
    join_s = duration_s + timeout_s * (total / clients + 1) + 5
    deadline_s = time.monotonic() + join_s
    for thread in threads:
        thread.join(max(0.0, deadline_s - time.monotonic()))
    if any(thread.is_alive() for thread in threads):
        raise TimeoutError(f"load generator did not finish within {join_s:.0f} s")
    return sorted(outcomes, key=lambda o: o.due_s)


def summarize(outcomes: list[Outcome]) -> dict[str, Any]:
    """Requests, errors, latency percentiles (ms) and achieved rate (pure)."""
    if not outcomes:
        return {"requests": 0, "errors": 0}
    latencies_ms = np.array([o.latency_s for o in outcomes]) * 1e3
    p50, p95, p99 = np.percentile(latencies_ms, [50, 95, 99])
    span_s = max(o.done_s for o in outcomes) - min(o.due_s for o in outcomes)
    statuses: dict[str, int] = {}
    for o in outcomes:
        statuses[str(o.status)] = statuses.get(str(o.status), 0) + 1
    return {
        "requests": len(outcomes),
        "errors": sum(o.status != 200 for o in outcomes),
        "statuses": statuses,
        "latency_ms_p50": round(float(p50), 2),
        "latency_ms_p95": round(float(p95), 2),
        "latency_ms_p99": round(float(p99), 2),
        "latency_ms_max": round(float(latencies_ms.max()), 2),
        "achieved_rate_per_s": round(len(outcomes) / span_s, 1) if span_s > 0 else None,
    }


def make_bodies(shape: list[int], count: int = BODIES, seed: int = 0) -> list[bytes]:
    """Single-video /predict bodies in the compact base64 form."""
    from preflight_examples.serving.request import encode_request

    rng = np.random.default_rng(seed)
    videos = rng.integers(0, 256, size=(count, 1, *shape), dtype=np.uint8)
    return [json.dumps(encode_request(v)).encode() for v in videos]


# -- the benchmark ---------------------------------------------------------------------------
def cli_argv(*args: str) -> list[str]:
    """The serving subcommands (identical to `trainer ...` once trainer/cli.py wires them)."""
    return [sys.executable, "-m", "preflight_examples.serving.cli", *args]


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLIGHT_FAULTS")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def run_child(argv: list[str]) -> str:
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
        env=child_env(),
        cwd=REPO,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def make_bundles(work: Path, steps: int) -> list[Path]:
    """Two default-size models (seeds 0 and 1) exported as bundles."""
    from preflight_examples.trainer.synthetic import write_dataset

    data = write_dataset(
        work / "data", samples=64, frames=16, channels=3, size=64, classes=4, shard_size=1000
    )
    bundles = []
    for seed in (0, 1):
        run = work / f"run{seed}"
        fit = [sys.executable, "-m", "preflight_examples.trainer.cli", "fit",
               "--data", str(data), "--out", str(run)]
        run_child([*fit, "--steps", str(steps), "--seed", str(seed), "--ckpt-every", "0"])
        bundle = work / f"bundle{seed}"
        run_child(cli_argv("export", str(run), "--bundle", str(bundle), "--eval-samples", "64"))
        bundles.append(bundle)
    return bundles


class ServerProcess:
    """`trainer serve DEPLOY --port 0` as a child; the URL is read from its first line."""

    def __init__(self, deploy: Path, log: Path) -> None:
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cli_argv("serve", str(deploy), "--port", "0", "--host", "127.0.0.1"),
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=child_env(),
            cwd=REPO,
        )
        lines: queue.Queue[bytes] = queue.Queue()
        stdout = self.proc.stdout
        assert stdout is not None
        # readline() has no timeout; a reader thread plus a bounded get() gives it one.
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
        try:
            first = lines.get(timeout=SERVER_START_TIMEOUT_S)
            self.url = json.loads(first)["url"]
        except (queue.Empty, ValueError, KeyError):
            self.stop()
            raise RuntimeError(f"server did not announce itself; see {log}") from None

    def stop(self) -> int | None:
        """SIGTERM, bounded graceful wait, then SIGKILL; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(SERVER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(SERVER_STOP_TIMEOUT_S)
        self._log.close()
        return self.proc.returncode


def wait_for_bundle(url: str, bundle: str, timeout_s: float = SWITCH_TIMEOUT_S) -> float:
    """Poll /healthz until it reports ``bundle``; returns when (perf_counter)."""
    deadline_s = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline_s:
        status, body = request(url, "GET", "/healthz")
        if status == 200 and body.get("bundle") == bundle:
            return time.perf_counter()
        time.sleep(0.01)
    raise TimeoutError(f"server did not switch to {bundle} within {timeout_s} s")


def time_switch(
    url: str, bodies: list[bytes], argv: list[str], to_bundle: str, rate_per_s: float
) -> dict[str, Any]:
    """Run ``argv`` (promote/rollback) under load; time until a /predict response is served
    by ``to_bundle``. Every request in the window counts toward errors."""
    stop = threading.Event()
    outcomes: list[Outcome] = []

    def run_load() -> None:
        outcomes.extend(open_loop(url, bodies, rate_per_s, SWITCH_TIMEOUT_S, 4, stop))

    load = threading.Thread(target=run_load, daemon=True)
    load.start()
    time.sleep(0.5)  # requests in flight before the switch begins
    started_s = time.perf_counter()
    run_child(argv)
    command_s = time.perf_counter() - started_s
    healthz_s = wait_for_bundle(url, to_bundle) - started_s
    time.sleep(0.5)  # and after it
    stop.set()
    load.join(SWITCH_TIMEOUT_S + REQUEST_TIMEOUT_S * 2)
    served = [o.done_s for o in outcomes if o.bundle == to_bundle and o.done_s >= started_s]
    return {
        "command_s": round(command_s, 3),
        "to_healthz_s": round(healthz_s, 3),
        "to_first_predict_s": round(min(served) - started_s, 3) if served else None,
        "load": summarize(outcomes),
    }


def result(
    name: str, measured: Any, target: str, passed: bool | None, unit: str, **detail: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "measured": measured,
        "target": target,
        "pass": passed,
        "unit": unit,
        "detail": detail,
    }


def bench(work: Path, quick: bool) -> list[dict[str, Any]]:
    bundle_a, bundle_b = make_bundles(work, steps=3 if quick else 10)
    ids = [json.loads((b / "bundle.json").read_text())["id"] for b in (bundle_a, bundle_b)]
    deploy = work / "deploy"
    for bundle in (bundle_a, bundle_b):
        run_child(cli_argv("promote", str(bundle), "--to", str(deploy)))
    server = ServerProcess(deploy, work / "serve.log")
    try:
        shape = request(server.url, "GET", "/healthz")[1]["input_shape"]
        bodies = make_bodies(shape)
        open_loop(server.url, bodies, 20.0, 1.0)  # warm-up, not counted
        rate = EXPECTED_RATE_PER_S * LOAD_FACTOR
        load = summarize(open_loop(server.url, bodies, rate, 5.0 if quick else 30.0))
        cycles = []
        for _ in range(1 if quick else 3):
            back = time_switch(
                server.url, bodies, cli_argv("rollback", str(deploy)), ids[0], EXPECTED_RATE_PER_S
            )
            forward = time_switch(
                server.url,
                bodies,
                cli_argv("promote", str(bundle_b), "--to", str(deploy)),
                ids[1],
                EXPECTED_RATE_PER_S,
            )
            cycles.append({"rollback": back, "promote": forward})
    finally:
        exit_code = server.stop()
    rollback_s = [c["rollback"]["to_first_predict_s"] for c in cycles]
    worst_s = None if None in rollback_s else max(rollback_s)
    swap_errors = sum(c[k]["load"]["errors"] for c in cycles for k in ("rollback", "promote"))
    swap_requests = sum(c[k]["load"]["requests"] for c in cycles for k in ("rollback", "promote"))
    return [
        result(
            "load_errors",
            load["errors"],
            "== 0",
            load["errors"] == 0,
            f"failed requests of {load['requests']} at {rate:g} req/s "
            f"({LOAD_FACTOR:g}x the expected {EXPECTED_RATE_PER_S:g} req/s)",
            **load,
        ),
        result(
            "load_latency_ms_p99",
            load["latency_ms_p99"],
            f"<= {P99_TARGET_MS:g}",
            load["latency_ms_p99"] <= P99_TARGET_MS,
            "ms from due time to response, single-video base64 /predict",
        ),
        result(
            "rollback_to_old_model_s",
            worst_s,
            f"<= {ROLLBACK_TARGET_S:g}",
            worst_s is not None and worst_s <= ROLLBACK_TARGET_S,
            "s from launching `trainer rollback` to the first /predict served by the old "
            "bundle (max over cycles)",
            cycles=cycles,
        ),
        result(
            "swap_errors",
            swap_errors,
            "== 0",
            swap_errors == 0,
            f"failed requests of {swap_requests} sent during promote/rollback windows",
        ),
        result(
            "server_exit_code_on_sigterm", exit_code, "== 0", exit_code == 0, "graceful shutdown"
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--out", default=str(REPO / "reports" / "bench-serve.json"))
    args = parser.parse_args()
    started_s = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        results = bench(Path(tmp), args.quick)
    from preflight.durable import atomic_write

    report = {
        "benchmark": "serve",
        "quick": args.quick,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "wall_s": round(time.monotonic() - started_s, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_1m": round(os.getloadavg()[0], 2),
        },
        "model": "default (--channels 16 --depth 3), 16x3x64x64 uint8 clips, TorchScript, "
        "1 torch thread, 2 inference workers, client and server on the same machine",
        "results": results,
        "pass": all(r["pass"] is not False for r in results),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, report)
    for r in results:
        verdict = {True: "PASS", False: "FAIL", None: "info"}[r["pass"]]
        print(
            f"{verdict:4}  {r['name']:30} {json.dumps(r['measured']):>10}  target {r['target']}"
            f"  ({r['unit']})"
        )
    print(f"wrote {args.out} in {report['wall_s']} s")
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
