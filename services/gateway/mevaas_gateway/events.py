"""What the gateway takes from NATS: live events for server-sent event streams, and the events
that invalidate cached replies. Both are core-NATS observers (plain subscriptions), so they
consume nothing from the services' durable consumers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass

import grpc
from aiohttp import web
from google.protobuf.message import DecodeError, Message
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from mevaas.events.v1 import events_pb2
from mevaas_core.auth import PLATFORM_TENANT_ID
from mevaas_core.bus import HEADER_MSG_ID
from mevaas_gateway.api import GatewayError, HttpApi, error_response, message_json
from mevaas_gateway.domain import http_errors
from mevaas_gateway.domain.cache import UPSTREAMS_CHANGED_BY, ResponseCache

HEARTBEAT_SECONDS = 15.0
QUEUE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class LiveSubject:
    template: str  # {tenant} is the caller's tenant
    message_type: type[Message]
    event: str  # the SSE event name


# The live streams a portal (or any HTTP client) can follow at /v1/events/<name>.
LIVE_STREAMS: dict[str, tuple[LiveSubject, ...]] = {
    "sessions": (LiveSubject("exec.{tenant}.session", events_pb2.ExecutionSessionEvent, "session"),),
    "executions": (LiveSubject("exec.{tenant}.result", events_pb2.ExecutionResult, "execution"),),
    "opportunities": (LiveSubject("opp.{tenant}.*", events_pb2.Opportunity, "opportunity"),),
    "decisions": (LiveSubject("risk.{tenant}.decision", events_pb2.RiskDecision, "decision"),),
    "alerts": (
        LiveSubject("risk.{tenant}.breach", events_pb2.RiskBreach, "breach"),
        LiveSubject("risk.{tenant}.killswitch", events_pb2.KillSwitchChanged, "killswitch"),
        LiveSubject(f"risk.{PLATFORM_TENANT_ID}.killswitch", events_pb2.KillSwitchChanged, "killswitch"),
    ),
}


async def watch_invalidations(nc: NatsClient, cache: ResponseCache) -> list[Subscription]:
    async def on_message(msg: Msg) -> None:
        cache.on_event(msg.subject, PLATFORM_TENANT_ID)

    return [await nc.subscribe(f"{domain}.>", cb=on_message) for domain in UPSTREAMS_CHANGED_BY]


class LiveEvents:
    def __init__(self, api: HttpApi, nc: NatsClient) -> None:
        self.api = api
        self.nc = nc

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["stream"]
        subjects = LIVE_STREAMS.get(name)
        if subjects is None:
            known = ", ".join(sorted(LIVE_STREAMS))
            return error_response(
                http_errors.error(grpc.StatusCode.NOT_FOUND, f"no live stream {name!r}; streams: {known}")
            )
        try:
            caller = await self.api.caller(request)
            if caller is None:
                raise GatewayError(
                    http_errors.error(grpc.StatusCode.UNAUTHENTICATED, "sign in to follow live events")
                )
            self.api.throttle(caller.principal)
        except GatewayError as exc:
            return error_response(exc.error)
        tenant = caller.principal.tenant_id
        if caller.principal.is_platform_admin and request.query.get("tenant_id"):
            tenant = request.query["tenant_id"]
        queue: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue(QUEUE_SIZE)
        subscriptions = []
        for live in subjects:
            subscriptions.append(
                await self.nc.subscribe(live.template.format(tenant=tenant), cb=_enqueue(live, queue))
            )
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        try:
            await response.write(b"retry: 2000\n: connected\n\n")
            # The stream lives as long as the caller's access token: a client reconnects (browsers'
            # EventSource does so itself) and is authenticated again.
            deadline = caller.principal.expires_at
            while time.time() < deadline:
                try:
                    event, msg_id, data = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    await response.write(b": heartbeat\n\n")
                    continue
                await response.write(f"event: {event}\nid: {msg_id}\ndata: {data}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            for subscription in subscriptions:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()
        return response


def _enqueue(live: LiveSubject, queue: asyncio.Queue[tuple[str, str, str]]):  # type: ignore[no-untyped-def]
    async def on_message(msg: Msg) -> None:
        try:
            decoded = live.message_type.FromString(msg.data)
        except DecodeError:
            return
        msg_id = (msg.headers or {}).get(HEADER_MSG_ID, "")
        with contextlib.suppress(asyncio.QueueFull):  # a reader that cannot keep up loses events, not memory
            queue.put_nowait((live.event, msg_id, json.dumps(message_json(decoded))))

    return on_message
