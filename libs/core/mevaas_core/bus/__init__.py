"""The platform's NATS JetStream bus: typed protobuf events, durable pull consumers, request/reply.

Conventions every service follows (ARCHITECTURE.md section 4):

* **Streams** per domain, created idempotently by ``Bus.ensure_streams()``: ``CHAIN`` (chain.>),
  ``OPP`` (opp.>), ``RISK`` (risk.>), ``EXEC`` (exec.>), ``TENANT`` (tenant.>), ``AUDIT`` (audit.>),
  plus ``PORTFOLIO`` (portfolio.>) and ``REPORT`` (report.>) for the rebalance commands and
  reports of section 2, and ``PROTECT`` (protect.>) for MEV protection (sandwich threats). File storage, limits retention with a max age per domain, and an explicit
  ``duplicate_window`` (2 minutes) inside which a repeated ``Nats-Msg-Id`` is stored only once.
* **Subjects**: ``<domain>.<tenant_id>.<event>`` for tenant data (``opp.<tenant>.<strategy>``),
  ``chain.<chain_id>.<event>`` for market data. Events that belong to no tenant (market data,
  platform-wide notices) carry ``tenant_id=PLATFORM_TENANT``.
* **Payloads** are protobuf messages (``mevaas.events.v1``), never ad-hoc JSON. Headers:
  ``Nats-Msg-Id`` (the business key: the same event published twice must carry the same id),
  ``tenant-id``, ``traceparent`` (OpenTelemetry W3C trace context) and
  ``content-type: application/protobuf; proto=<message full name>``.
* **Consumers** are durable pull consumers with explicit ack. Several processes subscribing with
  the same durable name share the work (that is how replicas scale); each message goes to one of
  them. A handler that returns acks the message; one that raises naks it with a backoff delay;
  after ``max_deliver`` attempts JetStream drops it and its advisory is logged. A payload that
  cannot be decoded (or lacks the ``tenant-id`` header, or carries another message type) is
  poison: terminated at once and logged, never retried.
* **Handlers are idempotent**: a message can be delivered more than once (a crash between the
  work and the ack, an ack lost on the wire). Handlers write through unique keys in Postgres
  (e.g. ``INSERT ... ON CONFLICT (tenant_id, opportunity_id) DO NOTHING``) so a redelivery changes
  nothing twice. Use ``ack_sync=True`` where the next step must know the ack was recorded.
* **Request/reply** over core NATS (``Bus.request`` / ``Bus.serve`` with queue groups) only where
  a caller must wait for an answer; every request has an explicit timeout.

Every publish and every handler run is a span (the handler's span continues the publisher's
trace) and is counted in Prometheus metrics prefixed ``mevaas_bus_``, labelled by stream.
"""

from nats.js.api import PubAck

from mevaas_core.bus.client import Bus
from mevaas_core.bus.consumer import Delivery, Handler, Subscription
from mevaas_core.bus.errors import (
    BusError,
    NoRespondersError,
    PublishError,
    RemoteError,
    RequestTimeoutError,
    ServiceError,
)
from mevaas_core.bus.serving import RequestContext, Service
from mevaas_core.bus.streams import (
    CONTENT_TYPE_PREFIX,
    DEFAULT_BACKOFF,
    DUPLICATE_WINDOW,
    HEADER_CONTENT_TYPE,
    HEADER_MSG_ID,
    HEADER_SERVICE_ERROR,
    HEADER_SERVICE_ERROR_CODE,
    HEADER_TENANT,
    PLATFORM_TENANT,
    STREAMS,
    StreamSpec,
    content_type_for,
    stream_for_subject,
)

__all__ = [
    "CONTENT_TYPE_PREFIX",
    "DEFAULT_BACKOFF",
    "DUPLICATE_WINDOW",
    "HEADER_CONTENT_TYPE",
    "HEADER_MSG_ID",
    "HEADER_SERVICE_ERROR",
    "HEADER_SERVICE_ERROR_CODE",
    "HEADER_TENANT",
    "PLATFORM_TENANT",
    "STREAMS",
    "Bus",
    "BusError",
    "Delivery",
    "Handler",
    "NoRespondersError",
    "PubAck",
    "PublishError",
    "RemoteError",
    "RequestContext",
    "RequestTimeoutError",
    "Service",
    "ServiceError",
    "StreamSpec",
    "Subscription",
    "content_type_for",
    "stream_for_subject",
]
