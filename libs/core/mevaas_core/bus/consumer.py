"""Durable pull consumers: ``Bus.subscribe`` returns a running `Subscription`."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Generic, TypeVar

import nats.js.errors
from google.protobuf.message import Message
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.js.api import ConsumerConfig
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from mevaas_core.bus.errors import BusError
from mevaas_core.bus.inbound import InvalidPayload, decode_inbound
from mevaas_core.bus.metrics import (
    _consumed,
    _delivery_lag,
    _handler_errors,
    _handler_seconds,
    _max_deliveries,
)
from mevaas_core.bus.streams import HEADER_MSG_ID, HEADER_TENANT
from mevaas_core.telemetry import extract_context

if TYPE_CHECKING:
    from mevaas_core.bus.client import Bus

log = logging.getLogger("mevaas.bus")
_tracer = trace.get_tracer("mevaas.bus")

M = TypeVar("M", bound=Message)


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
        except InvalidPayload as poison:
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
        return decode_inbound(self.message_type, msg.data, headers, tenant_required=True)

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
