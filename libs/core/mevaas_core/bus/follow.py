"""Every message of a subject to this process alone, in order: an ordered (ephemeral) consumer.

A durable consumer shares its messages among the replicas that use it, which is right for work
(each row written once) and wrong for state each process keeps for itself (a price book, a
market recording): with two replicas each would see every other block. `follow` gives each
process the whole feed from ``since`` on; the ordered consumer recreates itself from the last
sequence it saw after a reconnect, so nothing is skipped. Nothing is acked or redelivered: a
handler that raises is logged and the feed goes on (the state it builds must tolerate that)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from google.protobuf.message import Message
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import ConsumerConfig, DeliverPolicy

from mevaas_core.bus.inbound import InvalidPayload, decode_inbound

if TYPE_CHECKING:
    from mevaas_core.bus.client import Bus

log = logging.getLogger("mevaas.bus")

M = TypeVar("M", bound=Message)


class Follower:
    """A running `follow`; ``stop`` ends it."""

    def __init__(self, subscription: NatsSubscription) -> None:
        self._subscription = subscription

    async def stop(self) -> None:
        await self._subscription.unsubscribe()


async def follow(
    bus: Bus,
    stream: str,
    filter_subject: str,
    message_type: type[M],
    handler: Callable[[M], Awaitable[None]],
    *,
    since: datetime | None = None,
) -> Follower:
    """Run ``handler`` for each ``message_type`` on ``filter_subject`` of ``stream``, published at
    or after ``since`` (None: only new ones), in stream order, in this process."""
    config = (
        ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=since)
        if since is not None
        else ConsumerConfig(deliver_policy=DeliverPolicy.NEW)
    )

    async def on_message(msg: Msg) -> None:
        try:
            message = decode_inbound(message_type, msg.data, msg.headers or {}, tenant_required=False)
        except InvalidPayload as exc:
            log.error("follow %s: ignoring a message on %s: %s", stream, msg.subject, exc)
            return
        try:
            await handler(message)
        except Exception:
            log.exception("follow %s: the handler failed on %s", stream, msg.subject)

    subscription = await bus.js.subscribe(
        filter_subject, stream=stream, cb=on_message, ordered_consumer=True, config=config
    )
    return Follower(subscription)


async def read_back(
    bus: Bus, stream: str, filter_subject: str, message_type: type[M], *, idle_s: float = 2.0
) -> AsyncIterator[M]:
    """Every ``message_type`` on ``filter_subject`` the stream still holds, oldest first, up to the
    newest at the time of reading (or ``idle_s`` without one): what a process that started late
    did not see. A message that fails the inbound checks is skipped, as ``follow`` skips it."""
    subscription = await bus.js.subscribe(
        filter_subject,
        stream=stream,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    try:
        while True:
            try:
                msg = await subscription.next_msg(timeout=idle_s)
            except NatsTimeoutError:
                return
            try:
                message = decode_inbound(message_type, msg.data, msg.headers or {}, tenant_required=False)
            except InvalidPayload as exc:
                log.error("read back %s: ignoring a message on %s: %s", stream, msg.subject, exc)
            else:
                yield message
            if msg.metadata.num_pending == 0:
                return
    finally:
        await subscription.unsubscribe()
