"""Telemetry: the small API datagen and trainer call; metrics, textfile, endpoint, JSON logs.

    tel = Telemetry.from_args(args, job="trainer")      # after add_cli_options(parser)
    tel.progress(done, total, rate_per_s, eta_s)        # every step / shard
    tel.loss(value); tel.grad_norm(value)               # non-finite values are counted
    tel.checkpoint(duration_s)                          # after each committed checkpoint
    tel.error(text); tel.log("info", "msg", **fields)
    tel.close()                                         # or `with Telemetry(...) as tel:`

With no --metrics-port, --metrics-file or --log-json every call is a cheap in-memory update:
no thread, no socket, no file. With --metrics-file a background thread rewrites the textfile
every --metrics-interval seconds (and soon after a non-finite value or an error), sampling
the process tree's RSS as it goes; close() writes it a last time with preflight_up 0.
"""

from __future__ import annotations

import argparse
import math
import os
import threading
import time
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any

from prometheus_client import start_http_server

from preflight.durable.errors import BadInputError
from preflight_examples.telemetry import names
from preflight_examples.telemetry.jsonlog import JsonLog
from preflight_examples.telemetry.median import RunningMedian
from preflight_examples.telemetry.memory import default_budget_bytes, tree_rss_bytes
from preflight_examples.telemetry.metrics import Metrics
from preflight_examples.telemetry.textfile import check_path, write_textfile

DEFAULT_INTERVAL_S = 1.0
INTERVAL_S_MIN = 0.05
INTERVAL_S_MAX = 300.0
WRITE_GAP_S_MIN = 0.05  # a NaN storm must not turn into an fsync storm
JOIN_TIMEOUT_S = 5.0
DEFAULT_ADDR = "127.0.0.1"  # an endpoint on every interface is a choice, not a default
RUN_ID_ENV = "PREFLIGHT_RUN_ID"
RUN_ID_CHARS_MAX = 64
WRITE_ERRORS_LOGGED_MAX = 10


def new_run_id() -> str:
    return os.environ.get(RUN_ID_ENV) or uuid.uuid4().hex[:12]


def add_cli_options(parser: argparse.ArgumentParser) -> None:
    """The telemetry options, shared by every workload's command line."""
    group = parser.add_argument_group("telemetry")
    group.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics over HTTP on PORT (0: any free port, logged)",
    )
    group.add_argument(
        "--metrics-addr",
        default=DEFAULT_ADDR,
        metavar="ADDR",
        help=f"address the metrics endpoint binds ({DEFAULT_ADDR})",
    )
    group.add_argument(
        "--metrics-file",
        default=None,
        metavar="PATH.prom",
        help="write metrics to PATH.prom atomically (node_exporter textfile collector)",
    )
    group.add_argument(
        "--metrics-interval",
        type=float,
        default=DEFAULT_INTERVAL_S,
        metavar="S",
        help=f"seconds between textfile rewrites and RSS samples ({DEFAULT_INTERVAL_S})",
    )
    group.add_argument(
        "--log-json",
        nargs="?",
        const="-",
        default=None,
        metavar="PATH",
        help="structured logs: one JSON object per line, to PATH or stderr",
    )
    group.add_argument(
        "--memory-budget-bytes",
        type=int,
        default=None,
        metavar="N",
        help="memory the job may use, for the memory alert (default: cgroup limit or RAM)",
    )
    group.add_argument(
        "--run-id",
        default=None,
        metavar="ID",
        help=f"run_id label on metrics and logs (default ${RUN_ID_ENV} or a random id)",
    )


def _check_options(
    job: str,
    run_id: str,
    port: int | None,
    interval_s: float,
    budget_bytes: int | None,
) -> None:
    if not job or len(job) > RUN_ID_CHARS_MAX:
        raise BadInputError(f"telemetry: job name {job!r} must be 1..{RUN_ID_CHARS_MAX} chars")
    if not run_id or len(run_id) > RUN_ID_CHARS_MAX or not run_id.isprintable():
        raise BadInputError(f"--run-id {run_id!r}: need 1..{RUN_ID_CHARS_MAX} printable chars")
    if port is not None and not 0 <= port <= 65535:
        raise BadInputError(f"--metrics-port {port}: must be in 0..65535")
    if not INTERVAL_S_MIN <= interval_s <= INTERVAL_S_MAX:
        raise BadInputError(
            f"--metrics-interval {interval_s}: must be in [{INTERVAL_S_MIN}, {INTERVAL_S_MAX}]"
        )
    if budget_bytes is not None and budget_bytes <= 0:
        raise BadInputError(f"--memory-budget-bytes {budget_bytes}: must be positive")


class Telemetry:
    def __init__(
        self,
        job: str,
        run_id: str | None = None,
        *,
        metrics_port: int | None = None,
        metrics_addr: str = DEFAULT_ADDR,
        metrics_file: str | os.PathLike[str] | None = None,
        log_json: str | None = None,
        interval_s: float = DEFAULT_INTERVAL_S,
        memory_budget_bytes: int | None = None,
        checkpoints: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`checkpoints`: the job commits checkpoints, so their age is exported from the
        start (a job that never manages its first one must age too)."""
        run_id = run_id or new_run_id()
        _check_options(job, run_id, metrics_port, interval_s, memory_budget_bytes)
        self.job = job
        self.run_id = run_id
        self.interval_s = float(interval_s)
        self.metrics_file = check_path(metrics_file) if metrics_file is not None else None
        self.log_json = log_json  # "-" is stderr: callers then keep plain lines off it
        self._clock = clock
        self._metrics = Metrics(job, run_id)
        self._median = RunningMedian(names.LOSS_MEDIAN_WINDOW)
        self._lock = threading.Lock()  # one textfile writer at a time
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._closed = False
        self._last_done: int | None = None
        self._last_progress_log_s = -math.inf
        self._write_errors = 0
        self._m("up").set(1)
        budget = memory_budget_bytes or default_budget_bytes()
        self._m("memory_budget").set(budget)
        if checkpoints:
            self._m("ckpt_last").set(clock())
        self._log = JsonLog(log_json, job=job, run_id=run_id, clock=clock) if log_json else None
        self._server: Any = None
        self._server_thread: threading.Thread | None = None
        self.port: int | None = None
        if metrics_port is not None:
            self._start_server(metrics_port, metrics_addr)
        self._ticker: threading.Thread | None = None
        if self.metrics_file is not None or self._server is not None:
            self.rss()
            if self.metrics_file is not None:
                self.flush()
            self._ticker = threading.Thread(target=self._tick_loop, name="telemetry", daemon=True)
            self._ticker.start()
        self.log(
            "info",
            "telemetry started",
            pid=os.getpid(),
            metrics_port=self.port,
            metrics_file=self.metrics_file,
            memory_budget_bytes=budget,
        )

    @classmethod
    def from_args(
        cls, args: argparse.Namespace, job: str, run_id: str | None = None, **kwargs: Any
    ) -> Telemetry:
        """A Telemetry configured by add_cli_options' flags (missing flags: defaults)."""
        return cls(
            job,
            run_id or getattr(args, "run_id", None),
            metrics_port=getattr(args, "metrics_port", None),
            metrics_addr=getattr(args, "metrics_addr", DEFAULT_ADDR),
            metrics_file=getattr(args, "metrics_file", None),
            log_json=getattr(args, "log_json", None),
            interval_s=getattr(args, "metrics_interval", DEFAULT_INTERVAL_S),
            memory_budget_bytes=getattr(args, "memory_budget_bytes", None),
            **kwargs,
        )

    # -- outputs

    def _start_server(self, port: int, addr: str) -> None:
        try:
            server, thread = start_http_server(port, addr=addr, registry=self._metrics.registry)
        except OSError as exc:
            raise BadInputError(f"--metrics-port {port}: cannot listen on {addr}: {exc}") from exc
        self._server, self._server_thread = server, thread
        self.port = int(server.server_address[1])

    def _m(self, attr: str) -> Any:
        return self._metrics.child(getattr(self._metrics, attr))

    @property
    def registry(self) -> Any:
        return self._metrics.registry

    def flush(self) -> None:
        """Rewrite the textfile now (no-op without --metrics-file)."""
        if self.metrics_file is None:
            return
        with self._lock:
            try:
                write_textfile(self.metrics_file, self._metrics.registry)
            except OSError as exc:
                # A full disk must not kill a training run over its metrics; say so, boundedly.
                self._write_errors += 1
                if self._write_errors <= WRITE_ERRORS_LOGGED_MAX:
                    self.log("warning", "metrics textfile write failed", error=str(exc))

    def _tick_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            self.rss()
            self.flush()
            self._stop.wait(WRITE_GAP_S_MIN)

    def _kick(self) -> None:
        """Ask the ticker for an early write: alerts should not wait out the interval."""
        self._wake.set()

    def log(self, level: str, msg: str, **fields: Any) -> None:
        if self._log is not None:
            self._log.log(level, msg, **fields)

    # -- the job's reports

    def progress(
        self, done: int, total: int, rate_per_s: float | None = None, eta_s: float | None = None
    ) -> None:
        """`rate_per_s` goes to the JSON log only: the metric is the units_done counter."""
        now = self._clock()
        if done != self._last_done:
            # The first report is the baseline (a resumed job starts past 0); a step back
            # (a rollback to a checkpoint) counts nothing, as a counter cannot go down.
            if self._last_done is not None and done > self._last_done:
                self._m("units_done").inc(done - self._last_done)
            self._last_done = done
            self._m("last_advance").set(now)
        self._m("done").set(done)
        self._m("total").set(total)
        self._m("eta").set(eta_s if eta_s is not None else math.nan)
        if self._log is not None:
            self._log.step = done
            if done >= total or now - self._last_progress_log_s >= self.interval_s:
                self._last_progress_log_s = now
                self.log(
                    "info", "progress", done=done, total=total, rate_per_s=rate_per_s, eta_s=eta_s
                )

    def loss(self, value: float) -> None:
        value = float(value)
        self._m("loss").set(value)
        if not math.isfinite(value):
            self.nonfinite(what="loss", value=value)
            return
        self._median.add(value)
        median = self._median.median()
        if median is not None and len(self._median) >= names.LOSS_MEDIAN_MIN_COUNT:
            self._m("loss_median").set(median)

    def grad_norm(self, value: float) -> None:
        value = float(value)
        self._m("grad_norm").set(value)
        if not math.isfinite(value):
            self.nonfinite(what="grad_norm", value=value)

    def nonfinite(self, count: int = 1, *, what: str = "value", value: float = math.nan) -> None:
        if count < 1:
            raise ValueError(f"nonfinite: count must be >= 1, got {count}")
        self._m("nonfinite").inc(count)
        self.log("warning", f"non-finite {what}", what=what, value=value, count=count)
        self._kick()

    def rss(self) -> int:
        """Sample the process tree's RSS now; the ticker does this every interval."""
        rss_bytes = tree_rss_bytes()
        self._m("rss").set(rss_bytes)
        return rss_bytes

    def checkpoint(self, duration_s: float) -> None:
        """A checkpoint committed: its age restarts from now."""
        self._m("ckpt_last").set(self._clock())
        self._m("ckpt_duration").set(duration_s)
        self.log("info", "checkpoint", duration_s=duration_s)

    def error(self, text: str) -> None:
        cut = " ".join(str(text).split())[: names.ERROR_TEXT_CHARS_MAX]
        self._m("last_error").set(self._clock())
        self._m("last_error_info").info({"message": cut})
        self.log("error", str(text))
        self._kick()

    # -- lifecycle

    def close(self) -> None:
        """Final textfile write with preflight_up 0; stop the thread and the endpoint."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        if self._ticker is not None:
            self._ticker.join(JOIN_TIMEOUT_S)
        self._m("up").set(0)
        if self._ticker is not None:
            self.rss()
        self.flush()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._server_thread is not None:
                self._server_thread.join(JOIN_TIMEOUT_S)
        self.log("info", "telemetry stopped")
        if self._log is not None:
            self._log.close()

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and not isinstance(exc, KeyboardInterrupt | SystemExit):
            self.error(f"{type(exc).__name__}: {exc}")
        self.close()
