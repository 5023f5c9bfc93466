"""The server's Prometheus exposition (/metrics): requests by endpoint and status, a latency
histogram, model reloads and the process_* series; prometheus_client when installed, else a
minimal text form of the same families.
"""

from __future__ import annotations

import threading

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


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
