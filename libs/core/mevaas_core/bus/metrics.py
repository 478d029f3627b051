"""Prometheus metrics of the bus (prefix ``mevaas_bus_``), labelled by stream."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

_published = Counter("mevaas_bus_published_total", "Messages stored by JetStream", ["stream"])
_publish_duplicates = Counter(
    "mevaas_bus_publish_duplicates_total",
    "Publishes JetStream recognised as duplicates (same msg id)",
    ["stream"],
)
_publish_errors = Counter("mevaas_bus_publish_errors_total", "Publishes that failed", ["stream"])
_publish_seconds = Histogram(
    "mevaas_bus_publish_seconds",
    "Publish latency until JetStream's ack",
    ["stream"],
    buckets=_LATENCY_BUCKETS,
)
_consumed = Counter(
    "mevaas_bus_consumed_total",
    "Messages handled by consumers, by outcome (ack, nak, term)",
    ["stream", "consumer", "outcome"],
)
_handler_errors = Counter("mevaas_bus_handler_errors_total", "Handler exceptions", ["stream", "consumer"])
_handler_seconds = Histogram(
    "mevaas_bus_handler_seconds", "Handler latency", ["stream", "consumer"], buckets=_LATENCY_BUCKETS
)
_delivery_lag = Histogram(
    "mevaas_bus_delivery_lag_seconds",
    "Time from JetStream storing a message to its handler starting",
    ["stream", "consumer"],
    buckets=_LATENCY_BUCKETS,
)
_max_deliveries = Counter(
    "mevaas_bus_max_deliveries_total", "Messages dropped after max_deliver attempts", ["stream", "consumer"]
)
_requests = Counter("mevaas_bus_requests_total", "Requests sent, by outcome", ["domain", "outcome"])
_request_seconds = Histogram(
    "mevaas_bus_request_seconds", "Request round-trip latency", ["domain"], buckets=_LATENCY_BUCKETS
)
_served = Counter("mevaas_bus_served_total", "Requests served, by outcome", ["subject", "outcome"])
_serve_seconds = Histogram(
    "mevaas_bus_serve_seconds", "Request handler latency", ["subject"], buckets=_LATENCY_BUCKETS
)
