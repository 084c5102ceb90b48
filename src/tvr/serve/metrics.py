"""Prometheus metrics of one server: requests and latency per endpoint, the index's size and model.

A registry of its own per app (not the process-wide default), so two apps in one process (tests)
never share counters.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, *, n_videos: int, method: str, kind: str) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("tvr_http_requests", "HTTP requests answered", ["endpoint", "method", "status"],
                                registry=self.registry)
        self.latency = Histogram("tvr_http_request_duration_seconds", "Time to answer a request", ["endpoint"],
                                 buckets=LATENCY_BUCKETS_S, registry=self.registry)
        Gauge("tvr_index_videos", "Videos in the served index", registry=self.registry).set(n_videos)
        Gauge("tvr_index_info", "The served index's model (labels; value 1)", ["method", "kind"],
              registry=self.registry).labels(method=method, kind=kind).set(1)

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint=endpoint, method=method, status=str(status)).inc()
        self.latency.labels(endpoint=endpoint).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
