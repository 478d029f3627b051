"""Prometheus metrics shared by every service and the `/metrics` endpoint."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

GRPC_HANDLED = Counter(
    "mevaas_grpc_server_handled_total",
    "gRPC calls completed by the server, by method and status code.",
    ["service", "method", "code"],
)
GRPC_LATENCY = Histogram(
    "mevaas_grpc_server_handling_seconds",
    "gRPC call latency as seen by the server.",
    ["service", "method"],
    buckets=LATENCY_BUCKETS,
)


def start_metrics_server(host: str, port: int) -> tuple[int, object]:
    """Serve /metrics from a background thread; returns the bound port and the server (to shut down)."""
    server, _thread = start_http_server(port, addr=host)
    return int(server.server_port), server
