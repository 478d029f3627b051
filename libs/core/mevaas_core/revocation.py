"""Revocation that takes effect at once: every service refuses the tokens of a revoked API key, a
deleted or re-roled user and a suspended or deleted tenant within moments, instead of honouring
them until they expire.

Tenancy writes a `CredentialRevoked` event into its outbox in the transaction of the change; the
relay publishes it on ``auth.<tenant>.revoked`` (stream AUTH). Every service process follows that
stream with its own ordered consumer (each replica sees every event) into a `RevocationSet`, which
the server interceptor checks on every call. A token is refused when it was issued at or before
the `not_before` of an entry naming its key, user, tenant or token id, so tokens issued later
(after a tenant is resumed, or a user's new roles) work.

A token lives at most the verifier's maximum lifetime, so an entry older than that covers no live
token: on start a service replays the stream from ``now - max lifetime`` and serves only once it
has caught up; the ordered consumer resumes from its last sequence after a reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final, TypeAlias

from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from mevaas.events.v1 import events_pb2
from mevaas_core.auth import Principal
from mevaas_core.bus import HEADER_CONTENT_TYPE, Bus, StreamSpec, content_type_for

log = logging.getLogger("mevaas.revocation")

AUTH_STREAM: Final = StreamSpec(
    "AUTH", ("auth.>",), timedelta(days=1), "credential revocations (kept beyond the longest token life)"
)
Kind: TypeAlias = events_pb2.RevocationKind.ValueType
KEY: Final = events_pb2.REVOCATION_KIND_API_KEY
USER: Final = events_pb2.REVOCATION_KIND_USER
TENANT: Final = events_pb2.REVOCATION_KIND_TENANT
TOKEN: Final = events_pb2.REVOCATION_KIND_TOKEN
_CONTENT_TYPE: Final = content_type_for(events_pb2.CredentialRevoked)


def subject_for(tenant_id: str) -> str:
    return f"auth.{tenant_id}.revoked"


def revocation_event(
    event_id: str, tenant_id: str, kind: Kind, subject_id: str, reason: str, *, at: datetime
) -> events_pb2.CredentialRevoked:
    """The event covering every token of (kind, subject_id) issued up to `at`."""
    event = events_pb2.CredentialRevoked(
        event_id=event_id, tenant_id=tenant_id, kind=kind, subject_id=subject_id, reason=reason
    )
    event.occurred_at.FromDatetime(at)
    event.not_before.FromDatetime(at)
    return event


class RevocationSet:
    """Not-before instants (ms since epoch) by (kind, id). Pure and in memory."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._entries: dict[tuple[int, str], int] = {}
        self._clock = clock
        self.ready = False

    def add(self, kind: Kind, subject_id: str, not_before_ms: int) -> None:
        key = (int(kind), subject_id)
        if not_before_ms > self._entries.get(key, -1):
            self._entries[key] = not_before_ms

    def apply(self, event: events_pb2.CredentialRevoked) -> None:
        if event.subject_id and event.kind != events_pb2.REVOCATION_KIND_UNSPECIFIED:
            self.add(event.kind, event.subject_id, event.not_before.ToMilliseconds())

    def revoked_by(self, principal: Principal) -> Kind | None:
        """The kind of the entry that revokes `principal`'s token, or None if it is still good.
        A tenant-wide entry wins, so a suspended tenant's caller learns why."""
        issued = principal.issued_at_ms
        for kind, subject_id in (
            (TENANT, principal.tenant_id),
            (KEY, principal.subject),
            (USER, principal.user_id),
            (TOKEN, principal.token_id),
        ):
            if subject_id:
                not_before = self._entries.get((int(kind), subject_id))
                if not_before is not None and issued <= not_before:
                    return kind
        return None

    def prune(self, max_lifetime_seconds: float) -> None:
        """Forget entries older than any live token."""
        horizon = int((self._clock() - max_lifetime_seconds) * 1000)
        self._entries = {k: v for k, v in self._entries.items() if v >= horizon}

    def __len__(self) -> int:
        return len(self._entries)


class RevocationFeed:
    """Follows ``auth.*.revoked`` into a `RevocationSet` (one ordered consumer per process)."""

    def __init__(self, bus: Bus, revocations: RevocationSet, *, max_lifetime_seconds: int) -> None:
        self._bus = bus
        self._revocations = revocations
        self._max_lifetime = max_lifetime_seconds
        self._subscription: object | None = None
        self._last_sequence = 0
        self._prune_task: asyncio.Task[None] | None = None

    async def start(self, *, catch_up_timeout: float = 30.0) -> None:
        """Subscribe and return once every entry still relevant is in the set."""
        await self._bus.ensure_streams([AUTH_STREAM])
        since = datetime.now(UTC) - timedelta(seconds=self._max_lifetime)
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=since)
        subscription = await self._bus.js.subscribe(
            "auth.*.revoked",
            stream=AUTH_STREAM.name,
            cb=self._on_message,
            ordered_consumer=True,
            config=config,
        )
        self._subscription = subscription
        deadline = time.monotonic() + catch_up_timeout
        while True:
            info = await subscription.consumer_info()
            delivered = info.delivered.stream_seq if info.delivered else 0
            if info.num_pending == 0 and self._last_sequence >= (delivered or 0):
                break
            if time.monotonic() > deadline:
                raise TimeoutError("the revocation feed did not catch up; refusing to serve without it")
            await asyncio.sleep(0.01)
        self._revocations.ready = True
        self._prune_task = asyncio.create_task(self._prune_forever(), name="revocation-prune")
        log.info("revocation feed caught up", extra={"entries": len(self._revocations)})

    async def _on_message(self, msg: Msg) -> None:
        self._last_sequence = msg.metadata.sequence.stream
        if (msg.headers or {}).get(HEADER_CONTENT_TYPE) != _CONTENT_TYPE:
            log.error("ignoring a message on %s that is not a CredentialRevoked", msg.subject)
            return
        try:
            event = events_pb2.CredentialRevoked.FromString(msg.data)
        except DecodeError:
            log.error("ignoring an undecodable CredentialRevoked on %s", msg.subject)
            return
        self._revocations.apply(event)

    async def _prune_forever(self) -> None:
        while True:
            await asyncio.sleep(60)
            self._revocations.prune(self._max_lifetime)

    async def stop(self) -> None:
        if self._prune_task is not None:
            self._prune_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prune_task
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()  # type: ignore[attr-defined]
