"""The serving side of request/reply: a running handler (``Service``) and the per-request step
that decodes, calls the handler and answers (``answerer``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from google.protobuf.message import Message
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode

from mevaas_core.bus.errors import ServiceError
from mevaas_core.bus.inbound import InvalidPayload, decode_inbound
from mevaas_core.bus.metrics import _serve_seconds, _served
from mevaas_core.bus.streams import (
    HEADER_CONTENT_TYPE,
    HEADER_SERVICE_ERROR,
    HEADER_SERVICE_ERROR_CODE,
    HEADER_TENANT,
    content_type_for,
)
from mevaas_core.telemetry import extract_context

if TYPE_CHECKING:
    from mevaas_core.bus.client import Bus

log = logging.getLogger("mevaas.bus")
_tracer = trace.get_tracer("mevaas.bus")

Q = TypeVar("Q", bound=Message)


@dataclass(frozen=True, slots=True)
class RequestContext:
    subject: str
    headers: Mapping[str, str]
    tenant_id: str | None
    trace_context: Context


class Service:
    """A running request handler (one queue-group member). Stopped by ``stop()`` or ``Bus.close()``."""

    def __init__(
        self, bus: Bus, subject: str, queue: str, request_type: type[Message], concurrency: int
    ) -> None:
        self._bus = bus
        self.subject = subject
        self.queue = queue
        self.request_type = request_type
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


def answerer(
    nc: NatsClient,
    subject: str,
    request_type: type[Q],
    handler: Callable[[Q, RequestContext], Awaitable[Message]],
) -> Callable[[Msg], Coroutine[Any, Any, None]]:
    """One request's handling: decode, call ``handler``, answer with its reply or its error."""
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
                    request = decode_inbound(request_type, msg.data, headers, tenant_required=False)
                except InvalidPayload as exc:
                    raise ServiceError(400, str(exc)) from exc
                context = RequestContext(msg.subject, headers, headers.get(HEADER_TENANT), ctx)
                response = await handler(request, context)
                payload = response.SerializeToString()
                reply_headers[HEADER_CONTENT_TYPE] = content_type_for(response)
                served_ok.inc()
            except Exception as exc:
                # Only a ServiceError's own message crosses the bus: anything else may carry
                # database or connection text, which stays in this process's log.
                code, text = (
                    (exc.code, exc.message) if isinstance(exc, ServiceError) else (500, "internal error")
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
                    await nc.publish(msg.reply, payload, headers=reply_headers)

    return answer
