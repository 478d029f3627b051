"""The connection: publishing, consuming, request/reply and shutdown."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import nats
import nats.errors
import nats.js.errors
from google.protobuf.message import DecodeError, Message
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, PubAck
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import Counter, Histogram

from mevaas_core.bus.consumer import Handler, Subscription
from mevaas_core.bus.errors import (
    NoRespondersError,
    PublishError,
    RemoteError,
    RequestTimeoutError,
)
from mevaas_core.bus.identities import inbox_prefix
from mevaas_core.bus.metrics import (
    _publish_duplicates,
    _publish_errors,
    _publish_seconds,
    _published,
    _request_seconds,
    _requests,
)
from mevaas_core.bus.serving import RequestContext, Service, answerer
from mevaas_core.bus.signing import HEADER_SIGNATURE, EventSigner
from mevaas_core.bus.streams import (
    DEFAULT_BACKOFF,
    HEADER_CONTENT_TYPE,
    HEADER_MSG_ID,
    HEADER_SERVICE_ERROR,
    HEADER_SERVICE_ERROR_CODE,
    HEADER_TENANT,
    STREAMS,
    StreamSpec,
    _stream_by_prefix,
    content_type_for,
    stream_for_subject,
)
from mevaas_core.telemetry import inject_headers

log = logging.getLogger("mevaas.bus")
_tracer = trace.get_tracer("mevaas.bus")
# Pauses before asking again while the server answers "no responders" (see _request_served).
NO_RESPONDERS_RETRY_PAUSES = (0.005, 0.01, 0.02, 0.04, 0.08)

M = TypeVar("M", bound=Message)
Q = TypeVar("Q", bound=Message)
R = TypeVar("R", bound=Message)


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
        # Set by the service that owns subjects others must be able to trust (tenancy).
        self.signer: EventSigner | None = None

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
        tls_ca_file: str = "",
    ) -> Bus:
        """Connect (``url`` may list several servers, comma-separated) and reconnect forever by default.

        A URL carrying ``user:password`` connects as that identity (mevaas_core.bus.identities),
        with the identity's own inbox prefix for replies. ``tls_ca_file`` (PEM) verifies a
        ``tls://`` server signed by a private CA (cluster TLS)."""
        holder: list[Bus] = []
        servers = [u.strip() for u in url.split(",") if u.strip()]
        user = next((urlsplit(u).username for u in servers if urlsplit(u).username), None)

        async def reconnected() -> None:
            where = nc.connected_url
            log.warning(
                "NATS reconnected to %s:%s", where.hostname if where else "?", where.port if where else ""
            )
            if holder:
                for subscription in list(holder[0]._subscriptions):
                    subscription._connection_reset()

        async def disconnected() -> None:
            if not (holder and holder[0]._closing):
                log.warning("NATS disconnected")

        async def error(exc: Exception) -> None:
            log.warning("NATS error: %r", exc)

        nc = await nats.connect(
            servers=servers,
            inbox_prefix=inbox_prefix(unquote(user)) if user else "_INBOX",
            name=client_name,
            connect_timeout=connect_timeout,
            max_reconnect_attempts=max_reconnect_attempts,
            reconnected_cb=reconnected,
            disconnected_cb=disconnected,
            error_cb=error,
            drain_timeout=int(drain_timeout),
            tls=ssl.create_default_context(cafile=tls_ca_file) if tls_ca_file else None,
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
        data = message.SerializeToString()
        if self.signer is not None:
            hdrs[HEADER_SIGNATURE] = self.signer.signature(subject, msg_id, data)
        started = time.perf_counter()
        try:
            ack = await self.js.publish(subject, data, timeout=timeout or self.request_timeout, headers=hdrs)
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
                reply = await self._request_served(subject, message.SerializeToString(), timeout, hdrs)
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

    async def _request_served(
        self, subject: str, payload: bytes, timeout: float, headers: dict[str, str]
    ) -> Msg:
        """``nc.request``, asked again a few times over ~150 ms (within ``timeout``) while the
        server answers "no responders". Nobody received such a request, so asking again is always
        safe; and the server does say it for a moment where a responder is subscribed (a few requests
        in a thousand right after the subject's previous responder disconnected and a new one
        subscribed, as in a rolling restart: the next ask, 1-5 ms later, is answered)."""
        deadline = time.monotonic() + timeout
        pauses = iter(NO_RESPONDERS_RETRY_PAUSES)
        while True:
            try:
                return await self.nc.request(
                    subject, payload, timeout=max(deadline - time.monotonic(), 0.001), headers=headers
                )
            except nats.errors.NoRespondersError:
                pause = next(pauses, None)
                if pause is None or time.monotonic() + pause >= deadline:
                    raise
                await asyncio.sleep(pause)

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
        service = Service(self, subject, queue, request_type, concurrency)
        answer = answerer(self.nc, subject, request_type, handler)

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

    @property
    def served(self) -> list[Service]:
        """The request handlers this connection runs (what a fuzzer or a health page walks)."""
        return list(self._services)

    @property
    def subscriptions(self) -> list[Subscription[Any]]:
        """The durable consumers this connection runs."""
        return list(self._subscriptions)

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
