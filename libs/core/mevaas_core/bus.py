"""The platform's NATS JetStream bus: typed protobuf events, durable pull consumers, request/reply.

Conventions every service follows (ARCHITECTURE.md section 4):

* **Streams** per domain, created idempotently by ``Bus.ensure_streams()``: ``CHAIN`` (chain.>),
  ``OPP`` (opp.>), ``RISK`` (risk.>), ``EXEC`` (exec.>), ``TENANT`` (tenant.>), ``AUDIT`` (audit.>),
  plus ``PORTFOLIO`` (portfolio.>) and ``REPORT`` (report.>) for the rebalance commands and
  reports of section 2. File storage, limits retention with a max age per domain, and an explicit
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

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Generic, TypeVar

import nats
import nats.errors
import nats.js.errors
from google.protobuf.message import DecodeError, Message
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    PubAck,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue
from prometheus_client import Counter, Histogram

from mevaas_core.telemetry import extract_context, inject_headers

__all__ = [
    "DEFAULT_BACKOFF",
    "DUPLICATE_WINDOW",
    "PLATFORM_TENANT",
    "STREAMS",
    "Bus",
    "BusError",
    "Delivery",
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

log = logging.getLogger("mevaas.bus")
_tracer = trace.get_tracer("mevaas.bus")

M = TypeVar("M", bound=Message)
Q = TypeVar("Q", bound=Message)
R = TypeVar("R", bound=Message)

HEADER_MSG_ID: Final = "Nats-Msg-Id"
HEADER_TENANT: Final = "tenant-id"
HEADER_CONTENT_TYPE: Final = "content-type"
HEADER_SERVICE_ERROR: Final = "Nats-Service-Error"
HEADER_SERVICE_ERROR_CODE: Final = "Nats-Service-Error-Code"
CONTENT_TYPE_PREFIX: Final = "application/protobuf; proto="
PLATFORM_TENANT: Final = "_platform"
"""``tenant_id`` of events that belong to no tenant (market data, platform notices)."""

DUPLICATE_WINDOW: Final = timedelta(minutes=2)
DEFAULT_BACKOFF: Final[tuple[float, ...]] = (0.5, 2.0, 10.0, 30.0)

_DAY = timedelta(days=1)
_GIB = 1 << 30


@dataclass(frozen=True)
class StreamSpec:
    """One JetStream stream: what it captures and how long it keeps it."""

    name: str
    subjects: tuple[str, ...]
    max_age: timedelta
    description: str
    max_bytes: int = -1
    duplicate_window: timedelta = DUPLICATE_WINDOW

    def config(self, replicas: int = 1) -> StreamConfig:
        return StreamConfig(
            name=self.name,
            description=self.description,
            subjects=list(self.subjects),
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_age=self.max_age.total_seconds(),
            max_bytes=self.max_bytes,
            duplicate_window=self.duplicate_window.total_seconds(),
            num_replicas=replicas,
        )


STREAMS: Final[tuple[StreamSpec, ...]] = (
    StreamSpec("CHAIN", ("chain.>",), _DAY, "market data per chain: blocks, pending txs, pool state", _GIB),
    StreamSpec("OPP", ("opp.>",), _DAY, "opportunities found by strategies, per tenant", _GIB),
    StreamSpec("RISK", ("risk.>",), 7 * _DAY, "risk decisions and breaches, per tenant"),
    StreamSpec("EXEC", ("exec.>",), 7 * _DAY, "execution sessions and results, per tenant"),
    StreamSpec("TENANT", ("tenant.>",), 30 * _DAY, "tenant lifecycle events"),
    StreamSpec("AUDIT", ("audit.>",), 90 * _DAY, "audit trail of mutations"),
    StreamSpec("PORTFOLIO", ("portfolio.>",), 7 * _DAY, "portfolio commands (rebalance), per tenant"),
    StreamSpec("REPORT", ("report.>",), 7 * _DAY, "generated reports, per tenant"),
)

_stream_by_prefix: dict[str, str] = {
    spec_subject.split(".", 1)[0]: spec.name for spec in STREAMS for spec_subject in spec.subjects
}


def stream_for_subject(subject: str) -> str:
    """The stream capturing ``subject`` (by its first token), or ``"none"``; used for metric labels."""
    return _stream_by_prefix.get(subject.split(".", 1)[0], "none")


_content_types: dict[type[Message], str] = {}


def content_type_for(message_type: type[Message] | Message) -> str:
    cls = message_type if isinstance(message_type, type) else type(message_type)
    content_type = _content_types.get(cls)
    if content_type is None:
        content_type = _content_types[cls] = CONTENT_TYPE_PREFIX + cls.DESCRIPTOR.full_name
    return content_type


# --------------------------------------------------------------------------------------------- errors


class BusError(Exception):
    """Base of the bus's errors."""


class PublishError(BusError):
    """JetStream did not store the message (no stream for the subject, a limit, or no answer in time).
    Retrying with the same ``msg_id`` is safe: a copy stored meanwhile is deduplicated."""


class RequestTimeoutError(BusError, TimeoutError):
    """No reply within the request's timeout."""


class NoRespondersError(BusError):
    """Nobody serves the subject."""


class RemoteError(BusError):
    """The server side of a request failed; ``code`` follows HTTP conventions (400, 404, 500, ...)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"remote error {code}: {message}")
        self.code = code
        self.message = message


class ServiceError(Exception):
    """Raise from a ``serve`` handler to answer with an error code and message of your choice."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Poison(Exception):
    pass


# -------------------------------------------------------------------------------------------- metrics

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


# ------------------------------------------------------------------------------------------ consumers


@dataclass(frozen=True, slots=True)
class Delivery:
    """Everything about one delivery of a message, besides the decoded payload."""

    subject: str
    headers: Mapping[str, str]
    tenant_id: str
    msg_id: str
    num_delivered: int
    stream: str
    consumer: str
    stream_sequence: int
    published_at: datetime
    trace_context: Context
    _msg: Msg = field(repr=False, compare=False)

    async def in_progress(self) -> None:
        """Tell JetStream the handler is still working (resets the ack wait); for long handlers."""
        await self._msg.in_progress()


Handler = Callable[[M, Delivery], Awaitable[None]]


class Subscription(Generic[M]):
    """A running durable pull consumer. Created by ``Bus.subscribe``; stopped by ``stop()`` or
    ``Bus.close()``.

    Messages are pulled continuously with long-lived pull requests and handed to the handler as
    soon as they arrive, up to ``concurrency`` at a time; at most ``max(batch, concurrency)``
    messages are held (requested, buffered or in a handler) so none waits long enough to time out.

    Accounting: JetStream delivers messages with their own subject, so they cannot be matched to
    the pull request that brought them; only status messages (heartbeat, 408 expired, 409) come on
    a request's reply subject, with ``Nats-Pending-Messages`` telling how much of it went unused.
    So one total counts the messages asked for and not yet received. If it is above zero and
    nothing was heard for three heartbeats, the server lost the requests (restart, reconnect):
    the total is reset and new requests are sent.
    """

    _EXPIRES = 30.0  # lifetime of one pull request on the server
    _HEARTBEAT = 5.0  # idle heartbeat the server sends on a waiting pull request

    def __init__(
        self,
        bus: Bus,
        *,
        stream: str,
        durable: str,
        filter_subject: str,
        message_type: type[M],
        handler: Handler[M],
        config: ConsumerConfig,
        backoff: Sequence[float],
        batch: int,
        concurrency: int,
        ack_sync: bool,
        drain_timeout: float,
    ) -> None:
        self._bus = bus
        self._nc = bus.nc
        self.stream = stream
        self.durable = durable
        self.filter_subject = filter_subject
        self.message_type = message_type
        self._handler = handler
        self._config = config
        self._max_deliver = config.max_deliver or -1
        self._backoff = tuple(backoff) or (0.0,)
        self._batch = batch
        self._concurrency = concurrency
        self._capacity = max(batch, concurrency)
        self._ack_sync = ack_sync
        self._drain_timeout = drain_timeout
        self._content_type = content_type_for(message_type)
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"

        self._outstanding = 0  # messages asked for and not yet received
        self._last_heard = time.monotonic()
        self._request_ids = itertools.count(1)
        self._buffer: asyncio.Queue[Msg] = asyncio.Queue()
        self._busy = 0  # workers inside a handler
        self._idle = asyncio.Event()  # set while no worker is inside a handler
        self._idle.set()
        self._workers: list[asyncio.Task[None]] = []
        self._threshold = max(1, self._capacity // 2)
        self._wake = asyncio.Event()
        self._stopping = False
        self._recreate_consumer = False
        self._runner: asyncio.Task[None] | None = None
        self._inbox = ""
        self._inbox_sub: NatsSubscription | None = None
        self._advisory_sub: NatsSubscription | None = None

        self._m_ack = _consumed.labels(stream, durable, "ack")
        self._m_nak = _consumed.labels(stream, durable, "nak")
        self._m_term = _consumed.labels(stream, durable, "term")
        self._m_errors = _handler_errors.labels(stream, durable)
        self._m_seconds = _handler_seconds.labels(stream, durable)
        self._m_lag = _delivery_lag.labels(stream, durable)
        self._m_max_deliveries = _max_deliveries.labels(stream, durable)

    # lifecycle ------------------------------------------------------------------------------------

    async def _start(self) -> None:
        try:
            await self._bus.js.add_consumer(self.stream, config=self._config)
        except nats.js.errors.APIError as exc:
            raise BusError(
                f"cannot create or update consumer {self.stream}/{self.durable} "
                f"(error {exc.err_code}: {exc.description or 'refused'}); a durable's deliver policy "
                "cannot change once created: delete the consumer or use a new durable name"
            ) from exc
        self._inbox = self._nc.new_inbox()
        self._inbox_sub = await self._nc.subscribe(self._inbox + ".*", cb=self._on_message)
        self._advisory_sub = await self._nc.subscribe(
            f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{self.stream}.{self.durable}",
            queue=f"mevaas-advisory.{self.stream}.{self.durable}",
            cb=self._on_max_deliveries,
        )
        name = f"bus-consumer-{self.stream}-{self.durable}"
        self._runner = asyncio.create_task(self._run(), name=name)
        self._workers = [
            asyncio.create_task(self._work(), name=f"{name}-worker-{i}") for i in range(self._concurrency)
        ]

    @property
    def running(self) -> bool:
        return self._runner is not None and not self._runner.done()

    async def stop(self) -> None:
        """Stop pulling, hand buffered messages back (nak without delay, so another replica takes
        them now), let running handlers finish (up to the drain timeout), then unsubscribe."""
        if self._stopping:
            return
        self._stopping = True
        self._wake.set()
        if self._runner is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        await self._hand_back_buffered()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._drain_timeout):
                await self._idle.wait()
        for worker in self._workers:  # idle ones wait for a message; late ones get cancelled (nak)
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        await self._hand_back_buffered()
        for sub in (self._inbox_sub, self._advisory_sub):
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        self._bus._forget(self)

    async def _hand_back_buffered(self) -> None:
        while not self._buffer.empty():
            with contextlib.suppress(Exception):
                await self._buffer.get_nowait().nak()

    def _connection_reset(self) -> None:
        """After a reconnect the server may have lost our pull requests: ask again."""
        self._reset_requests()
        self._wake.set()

    def _reset_requests(self) -> None:
        self._outstanding = 0

    # pulling --------------------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                if self._recreate_consumer:
                    self._recreate_consumer = False
                    await self._bus.js.add_consumer(self.stream, config=self._config)
                self._check_requests()
                await self._top_up()
            except Exception:
                if self._stopping:
                    break
                log.exception("consumer %s/%s: pulling failed; retrying", self.stream, self.durable)
                await asyncio.sleep(1.0)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._HEARTBEAT):
                    await self._wake.wait()

    def _free(self) -> int:
        return self._capacity - (self._outstanding + self._buffer.qsize() + self._busy)

    async def _work(self) -> None:
        """One of ``concurrency`` workers. Taking the next buffered message without a task per
        message lets the acks of a burst leave in one write."""
        while not self._stopping:
            msg = await self._buffer.get()
            self._busy += 1
            self._idle.clear()
            try:
                await self._handle(msg)
            finally:
                self._busy -= 1
                if self._busy == 0:
                    self._idle.set()
                if self._free() >= self._threshold:
                    self._wake.set()

    def _check_requests(self) -> None:
        now = time.monotonic()
        if self._outstanding > 0 and now - self._last_heard > 3 * self._HEARTBEAT:
            log.info("consumer %s/%s: pull requests went silent; asking again", self.stream, self.durable)
            self._reset_requests()
            self._last_heard = now

    async def _top_up(self) -> None:
        free = self._free()
        while free >= self._threshold and not self._stopping:
            count = min(free, self._batch)
            request_id = str(next(self._request_ids))
            now = time.monotonic()
            if self._outstanding == 0:
                self._last_heard = now
            self._outstanding += count
            body = {
                "batch": count,
                "expires": int(self._EXPIRES * 1e9),
                "idle_heartbeat": int(self._HEARTBEAT * 1e9),
            }
            await self._nc.publish(
                self._next_subject, json.dumps(body).encode(), reply=f"{self._inbox}.{request_id}"
            )
            free -= count

    async def _on_message(self, msg: Msg) -> None:
        self._last_heard = time.monotonic()
        status = msg.headers.get("Status") if msg.headers else None
        if not status:
            self._outstanding = max(0, self._outstanding - 1)
            if self._stopping:
                with contextlib.suppress(Exception):
                    await msg.nak()
            else:
                self._buffer.put_nowait(msg)
            return  # workers take it from here; the puller only needs waking for status messages
        elif status == "100":  # idle heartbeat: a request is waiting
            return
        else:  # 404 no messages / 408 request expired / 409 conflict: this request is over
            unused = (msg.headers or {}).get("Nats-Pending-Messages")
            # Without the count (old servers) assume nothing is pending: at worst one batch too many.
            self._outstanding = max(0, self._outstanding - int(unused)) if unused else 0
            if status == "409":
                description = (msg.headers or {}).get("Description", "")
                log.warning("consumer %s/%s: pull request ended: %s", self.stream, self.durable, description)
                if "deleted" in description.lower():
                    self._recreate_consumer = True
        self._wake.set()

    # handling -------------------------------------------------------------------------------------

    async def _handle(self, msg: Msg) -> None:
        started = time.perf_counter()
        headers = msg.headers or {}
        meta = msg.metadata
        self._m_lag.observe(max(0.0, time.time() - meta.timestamp.timestamp()))
        try:
            message = self._decode(msg, headers)
        except _Poison as poison:
            log.error(
                "consumer %s/%s: poison message on %s (stream seq %d) terminated: %s",
                self.stream,
                self.durable,
                msg.subject,
                meta.sequence.stream,
                poison,
                extra={"subject": msg.subject, "msg_id": headers.get(HEADER_MSG_ID)},
            )
            with contextlib.suppress(Exception):
                await msg.term()
            self._m_term.inc()
            return
        ctx = extract_context(headers)
        delivery = Delivery(
            subject=msg.subject,
            headers=headers,
            tenant_id=headers[HEADER_TENANT],
            msg_id=headers.get(HEADER_MSG_ID, ""),
            num_delivered=meta.num_delivered,
            stream=meta.stream,
            consumer=meta.consumer,
            stream_sequence=meta.sequence.stream,
            published_at=meta.timestamp,
            trace_context=ctx,
            _msg=msg,
        )
        attributes: dict[str, AttributeValue] = {
            "messaging.destination.name": msg.subject,
            "messaging.message.id": delivery.msg_id,
            "messaging.message.delivery_count": delivery.num_delivered,
            "tenant.id": delivery.tenant_id,
        }
        with _tracer.start_as_current_span(
            f"{self.stream} process", context=ctx, kind=SpanKind.CONSUMER, attributes=attributes
        ) as span:
            try:
                await self._handler(message, delivery)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await msg.nak()
                raise
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                self._m_errors.inc()
                await self._nak_after_failure(msg, delivery, exc)
                return
            finally:
                self._m_seconds.observe(time.perf_counter() - started)
            try:
                if self._ack_sync:
                    await msg.ack_sync(timeout=self._bus.request_timeout)
                else:
                    await msg.ack()
                self._m_ack.inc()
            except Exception:
                log.warning(
                    "consumer %s/%s: ack of %s failed; it will be redelivered",
                    self.stream,
                    self.durable,
                    delivery.msg_id,
                    exc_info=True,
                )

    def _decode(self, msg: Msg, headers: Mapping[str, str]) -> M:
        content_type = headers.get(HEADER_CONTENT_TYPE)
        if content_type is not None and content_type != self._content_type:
            raise _Poison(f"content-type {content_type!r}, expected {self._content_type!r}")
        if not headers.get(HEADER_TENANT):
            raise _Poison("no tenant-id header")
        try:
            return self.message_type.FromString(msg.data)
        except DecodeError as exc:
            raise _Poison(f"undecodable {self.message_type.DESCRIPTOR.full_name}: {exc}") from exc

    async def _nak_after_failure(self, msg: Msg, delivery: Delivery, exc: Exception) -> None:
        attempt = delivery.num_delivered
        final = 0 < self._max_deliver <= attempt
        delay = self._backoff[min(attempt, len(self._backoff)) - 1]
        log.log(
            logging.ERROR if final else logging.WARNING,
            "consumer %s/%s: handler failed on %s (msg id %s, attempt %d/%s): %r%s",
            self.stream,
            self.durable,
            delivery.subject,
            delivery.msg_id,
            attempt,
            self._max_deliver if self._max_deliver > 0 else "unlimited",
            exc,
            "; no attempts left, JetStream drops it" if final else f"; retrying in {delay}s",
            extra={"tenant_id": delivery.tenant_id, "msg_id": delivery.msg_id, "subject": delivery.subject},
        )
        try:
            await msg.nak(delay=None if final else delay)
            self._m_nak.inc()
        except Exception:
            log.warning("consumer %s/%s: nak failed", self.stream, self.durable, exc_info=True)

    async def _on_max_deliveries(self, msg: Msg) -> None:
        try:
            advisory = json.loads(msg.data)
        except ValueError:
            return
        self._m_max_deliveries.inc()
        seq = int(advisory.get("stream_seq", 0))
        subject = msg_id = tenant = "?"
        with contextlib.suppress(Exception):
            stored = await self._bus.js.get_msg(self.stream, seq)
            subject = stored.subject or "?"
            stored_headers = stored.headers or {}
            msg_id = stored_headers.get(HEADER_MSG_ID, "?")
            tenant = stored_headers.get(HEADER_TENANT, "?")
        log.error(
            "consumer %s/%s: message dropped after %s deliveries: stream seq %d, subject %s, msg id %s",
            self.stream,
            self.durable,
            advisory.get("deliveries"),
            seq,
            subject,
            msg_id,
            extra={"tenant_id": tenant, "msg_id": msg_id, "subject": subject},
        )


# ------------------------------------------------------------------------------------ request/reply


@dataclass(frozen=True, slots=True)
class RequestContext:
    subject: str
    headers: Mapping[str, str]
    tenant_id: str | None
    trace_context: Context


class Service:
    """A running request handler (one queue-group member). Stopped by ``stop()`` or ``Bus.close()``."""

    def __init__(self, bus: Bus, subject: str, queue: str, concurrency: int) -> None:
        self._bus = bus
        self.subject = subject
        self.queue = queue
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._sub: NatsSubscription | None = None

    async def stop(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self._bus.request_timeout * 5)
        self._bus._forget(self)


# ---------------------------------------------------------------------------------------------- bus


class Bus:
    """A connection to NATS with JetStream. Create with ``await Bus.connect(url, client_name)``."""

    def __init__(self, nc: NatsClient, *, request_timeout: float = 5.0) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream(timeout=request_timeout)
        self.request_timeout = request_timeout
        self._subscriptions: set[Subscription[Any]] = set()
        self._services: set[Service] = set()
        self._publish_metrics: dict[str, tuple[Counter, Counter, Counter, Histogram]] = {}
        self._closing = False

    @classmethod
    async def connect(
        cls,
        url: str,
        client_name: str,
        *,
        connect_timeout: float = 5.0,
        request_timeout: float = 5.0,
        max_reconnect_attempts: int = -1,
        drain_timeout: float = 30.0,
    ) -> Bus:
        """Connect (``url`` may list several servers, comma-separated) and reconnect forever by default."""
        holder: list[Bus] = []

        async def reconnected() -> None:
            log.warning("NATS reconnected to %s", nc.connected_url.netloc if nc.connected_url else "?")
            if holder:
                for subscription in list(holder[0]._subscriptions):
                    subscription._connection_reset()

        async def disconnected() -> None:
            if not (holder and holder[0]._closing):
                log.warning("NATS disconnected")

        async def error(exc: Exception) -> None:
            log.warning("NATS error: %r", exc)

        nc = await nats.connect(
            servers=[u.strip() for u in url.split(",") if u.strip()],
            name=client_name,
            connect_timeout=connect_timeout,
            max_reconnect_attempts=max_reconnect_attempts,
            reconnected_cb=reconnected,
            disconnected_cb=disconnected,
            error_cb=error,
            drain_timeout=int(drain_timeout),
        )
        bus = cls(nc, request_timeout=request_timeout)
        holder.append(bus)
        return bus

    async def ensure_streams(self, specs: Sequence[StreamSpec] = STREAMS, *, replicas: int = 1) -> None:
        """Create the streams, or bring existing ones to ``specs`` (safe to run from every replica)."""
        for spec in specs:
            for subject in spec.subjects:
                _stream_by_prefix.setdefault(subject.split(".", 1)[0], spec.name)
            config = spec.config(replicas)
            for attempt in range(3):
                try:
                    await self.js.add_stream(config)
                    break
                except nats.js.errors.BadRequestError as exc:
                    if exc.err_code != 10058 and "already in use" not in (exc.description or ""):
                        raise
                try:
                    await self.js.update_stream(config)
                    break
                except nats.js.errors.NotFoundError:
                    if attempt == 2:
                        raise
                    continue  # deleted in between: create it again
            log.debug("stream %s ready", spec.name)

    # publishing -----------------------------------------------------------------------------------

    def _metrics_for(self, stream: str) -> tuple[Counter, Counter, Counter, Histogram]:
        metrics = self._publish_metrics.get(stream)
        if metrics is None:
            metrics = (
                _published.labels(stream),
                _publish_duplicates.labels(stream),
                _publish_errors.labels(stream),
                _publish_seconds.labels(stream),
            )
            self._publish_metrics[stream] = metrics
        return metrics

    async def publish(
        self,
        subject: str,
        message: Message,
        *,
        msg_id: str,
        tenant_id: str,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> PubAck:
        """Store ``message`` in the stream capturing ``subject``; returns JetStream's ack.

        ``msg_id`` is the business key of the event: a second publish with the same id inside the
        stream's duplicate window is not stored again and returns an ack with ``duplicate=True``.
        """
        if not msg_id:
            raise ValueError("msg_id is required (the event's business key, for deduplication)")
        if not tenant_id:
            raise ValueError(
                f"tenant_id is required (use PLATFORM_TENANT for {subject!r} if it has no tenant)"
            )
        stream = stream_for_subject(subject)
        published, duplicates, errors, seconds = self._metrics_for(stream)
        hdrs = dict(headers) if headers else {}
        hdrs[HEADER_MSG_ID] = msg_id
        hdrs[HEADER_TENANT] = tenant_id
        hdrs[HEADER_CONTENT_TYPE] = content_type_for(message)
        # The span is not made current (nothing runs inside it but the network call), which saves
        # two context switches per publish; its context goes into the headers explicitly.
        span = _tracer.start_span(
            f"{stream} publish",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.destination.name": subject,
                "messaging.message.id": msg_id,
                "tenant.id": tenant_id,
            },
        )
        inject_headers(hdrs, trace.set_span_in_context(span))
        started = time.perf_counter()
        try:
            ack = await self.js.publish(
                subject, message.SerializeToString(), timeout=timeout or self.request_timeout, headers=hdrs
            )
        except Exception as exc:
            errors.inc()
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            span.end()
            if isinstance(exc, nats.js.errors.NoStreamResponseError):
                raise PublishError(f"no stream captures subject {subject!r}") from exc
            if isinstance(exc, (nats.errors.TimeoutError, TimeoutError)):
                raise PublishError(
                    f"no ack from JetStream for {subject!r} (msg id {msg_id}) in time"
                ) from exc
            if isinstance(exc, nats.js.errors.APIError):
                raise PublishError(f"JetStream refused {subject!r}: {exc.description}") from exc
            raise
        seconds.observe(time.perf_counter() - started)
        if ack.duplicate:
            duplicates.inc()
            span.set_attribute("messaging.nats.duplicate", True)
        else:
            published.inc()
        span.end()
        return ack

    # consuming ------------------------------------------------------------------------------------

    async def subscribe(
        self,
        stream: str,
        durable: str,
        filter_subject: str,
        message_type: type[M],
        handler: Handler[M],
        *,
        max_deliver: int = 5,
        backoff: Sequence[float] = DEFAULT_BACKOFF,
        ack_wait: float = 30.0,
        batch: int = 32,
        concurrency: int = 1,
        ack_sync: bool = False,
        deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
        max_ack_pending: int | None = None,
        drain_timeout: float = 10.0,
    ) -> Subscription[M]:
        """Run ``handler`` for every message of the durable consumer ``durable`` on ``stream``
        (created or updated to this configuration), limited to ``filter_subject``.

        * ``max_deliver``: attempts before JetStream gives the message up (-1: unlimited);
        * ``backoff``: nak delay after the 1st, 2nd, ... failure (the last value repeats);
        * ``ack_wait``: how long a handler may run before JetStream redelivers the message elsewhere
          (call ``delivery.in_progress()`` to extend it);
        * ``batch``: messages asked for per pull request; ``concurrency``: handlers running at once
          (1 keeps the stream's order, apart from redeliveries);
        * ``ack_sync``: wait for the server to confirm each ack.
        """
        if batch < 1 or concurrency < 1:
            raise ValueError("batch and concurrency must be >= 1")
        config = ConsumerConfig(
            name=durable,
            durable_name=durable,
            filter_subject=filter_subject,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            deliver_policy=deliver_policy,
            max_ack_pending=max_ack_pending,
        )
        subscription = Subscription(
            self,
            stream=stream,
            durable=durable,
            filter_subject=filter_subject,
            message_type=message_type,
            handler=handler,
            config=config,
            backoff=backoff,
            batch=batch,
            concurrency=concurrency,
            ack_sync=ack_sync,
            drain_timeout=drain_timeout,
        )
        await subscription._start()
        self._subscriptions.add(subscription)
        return subscription

    # request/reply --------------------------------------------------------------------------------

    async def request(
        self,
        subject: str,
        message: Message,
        response_type: type[R],
        *,
        timeout: float | None = None,
        tenant_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> R:
        """Send ``message`` to whoever serves ``subject`` and wait for the typed answer.

        Raises ``RequestTimeoutError`` (no answer in time), ``NoRespondersError`` (nobody serves the
        subject) or ``RemoteError`` (the server answered with an error).
        """
        domain = subject.split(".", 1)[0]
        hdrs = dict(headers) if headers else {}
        hdrs[HEADER_CONTENT_TYPE] = content_type_for(message)
        if tenant_id:
            hdrs[HEADER_TENANT] = tenant_id
        timeout = timeout or self.request_timeout
        with _tracer.start_as_current_span(
            f"{domain} request",
            kind=SpanKind.CLIENT,
            attributes={"messaging.system": "nats", "messaging.destination.name": subject},
        ):
            inject_headers(hdrs)
            started = time.perf_counter()
            outcome = "error"
            try:
                reply = await self.nc.request(
                    subject, message.SerializeToString(), timeout=timeout, headers=hdrs
                )
                reply_headers = reply.headers or {}
                if HEADER_SERVICE_ERROR in reply_headers:
                    outcome = "remote_error"
                    code = int(reply_headers.get(HEADER_SERVICE_ERROR_CODE, "500") or 500)
                    raise RemoteError(code, reply_headers[HEADER_SERVICE_ERROR])
                try:
                    response = response_type.FromString(reply.data)
                except DecodeError as exc:
                    raise RemoteError(502, f"undecodable {response_type.DESCRIPTOR.full_name} reply") from exc
                outcome = "ok"
                return response
            except nats.errors.NoRespondersError as exc:
                outcome = "no_responders"
                raise NoRespondersError(f"nobody serves {subject!r}") from exc
            except (nats.errors.TimeoutError, TimeoutError) as exc:
                outcome = "timeout"
                raise RequestTimeoutError(f"no reply on {subject!r} within {timeout}s") from exc
            finally:
                _requests.labels(domain, outcome).inc()
                _request_seconds.labels(domain).observe(time.perf_counter() - started)

    async def serve(
        self,
        subject: str,
        queue: str,
        request_type: type[Q],
        handler: Callable[[Q, RequestContext], Awaitable[Message]],
        *,
        concurrency: int = 16,
    ) -> Service:
        """Answer requests on ``subject`` (wildcards allowed) as a member of queue group ``queue``:
        each request goes to one member. The handler's return value is the reply; raising
        ``ServiceError`` answers with its code, any other exception with 500."""
        service = Service(self, subject, queue, concurrency)
        served_ok = _served.labels(subject, "ok")
        served_error = _served.labels(subject, "error")
        seconds = _serve_seconds.labels(subject)

        async def answer(msg: Msg) -> None:
            started = time.perf_counter()
            headers = msg.headers or {}
            ctx = extract_context(headers)
            with _tracer.start_as_current_span(
                f"{subject} serve",
                context=ctx,
                kind=SpanKind.SERVER,
                attributes={"messaging.system": "nats", "messaging.destination.name": msg.subject},
            ) as span:
                reply_headers: dict[str, str] = {}
                payload = b""
                try:
                    try:
                        request = request_type.FromString(msg.data)
                    except DecodeError as exc:
                        raise ServiceError(400, f"undecodable {request_type.DESCRIPTOR.full_name}") from exc
                    context = RequestContext(msg.subject, headers, headers.get(HEADER_TENANT), ctx)
                    response = await handler(request, context)
                    payload = response.SerializeToString()
                    reply_headers[HEADER_CONTENT_TYPE] = content_type_for(response)
                    served_ok.inc()
                except Exception as exc:
                    code, text = (
                        (exc.code, exc.message) if isinstance(exc, ServiceError) else (500, repr(exc))
                    )
                    if code >= 500:
                        log.exception("serving %s failed", msg.subject)
                    span.set_status(Status(StatusCode.ERROR, text))
                    reply_headers = {HEADER_SERVICE_ERROR: text[:512], HEADER_SERVICE_ERROR_CODE: str(code)}
                    served_error.inc()
                finally:
                    seconds.observe(time.perf_counter() - started)
                if msg.reply:
                    with contextlib.suppress(Exception):
                        await self.nc.publish(msg.reply, payload, headers=reply_headers)

        async def on_request(msg: Msg) -> None:
            await service._slots.acquire()  # backpressure: NATS buffers what we cannot take yet
            task = asyncio.create_task(answer(msg))
            service._tasks.add(task)

            def done(t: asyncio.Task[None]) -> None:
                service._tasks.discard(t)
                service._slots.release()

            task.add_done_callback(done)

        service._sub = await self.nc.subscribe(subject, queue=queue, cb=on_request)
        self._services.add(service)
        return service

    # shutdown -------------------------------------------------------------------------------------

    def _forget(self, item: Subscription[Any] | Service) -> None:
        if isinstance(item, Service):
            self._services.discard(item)
        else:
            self._subscriptions.discard(item)

    async def close(self) -> None:
        """Graceful shutdown: stop consumers and services (letting running handlers finish), flush
        pending publishes, close the connection."""
        self._closing = True
        await asyncio.gather(
            *(s.stop() for s in list(self._subscriptions)),
            *(s.stop() for s in list(self._services)),
            return_exceptions=True,
        )
        if not self.nc.is_closed:
            try:
                await self.nc.drain()
            except Exception:
                log.warning("NATS drain failed; closing", exc_info=True)
                await self.nc.close()

    async def __aenter__(self) -> Bus:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
