"""Transactional outbox: events are written in the same transaction as the state change they
describe, then a relay publishes them to JetStream. A committed change therefore always yields
its event, and a rolled-back one never does.

The relay publishes with `Nats-Msg-Id = event_id`, so a crash between publishing and marking the
row published is absorbed by JetStream's duplicate window; several relay replicas share the work
through `FOR UPDATE SKIP LOCKED`. It wakes on NOTIFY for low latency and polls as a fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

import asyncpg
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message

from mevaas_core.db import platform_transaction
from mevaas_core.telemetry import extract_context, get_tracer, inject_headers

log = logging.getLogger("mevaas.outbox")
_tracer = get_tracer("mevaas.outbox")

OUTBOX_TABLE_SQL = """
CREATE TABLE {schema}.outbox (
    id            bigserial   PRIMARY KEY,
    event_id      text        NOT NULL UNIQUE,
    tenant_id     text        NOT NULL,
    subject       text        NOT NULL,
    message_type  text        NOT NULL,
    payload       bytea       NOT NULL,
    traceparent   text        NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
CREATE INDEX outbox_pending ON {schema}.outbox (id) WHERE published_at IS NULL;
"""


class Publisher(Protocol):
    async def publish(self, subject: str, message: Message, *, msg_id: str, tenant_id: str) -> object: ...


def _decode(message_type: str, payload: bytes) -> Message:
    """Rebuild a stored event; its type is registered because the producing service imported it."""
    descriptor = descriptor_pool.Default().FindMessageTypeByName(message_type)
    message = message_factory.GetMessageClass(descriptor)()
    message.ParseFromString(payload)
    return message


async def enqueue(
    conn: asyncpg.Connection, schema: str, *, subject: str, message: Message, event_id: str, tenant_id: str
) -> None:
    carrier: dict[str, str] = {}
    inject_headers(carrier)
    await conn.execute(
        f"INSERT INTO {schema}.outbox (event_id, tenant_id, subject, message_type, payload, traceparent) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING",
        event_id,
        tenant_id,
        subject,
        message.DESCRIPTOR.full_name,
        message.SerializeToString(deterministic=True),
        carrier.get("traceparent", ""),
    )
    await conn.execute(f"NOTIFY {schema}_outbox")


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        schema: str,
        publisher: Publisher,
        *,
        batch_size: int = 200,
        poll_seconds: float = 1.0,
    ) -> None:
        self._pool = pool
        self._schema = schema
        self._publisher = publisher
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener: Any = None

    async def start(self) -> None:
        self._listener = await self._pool.acquire()
        await self._listener.add_listener(f"{self._schema}_outbox", self._on_notify)
        self._task = asyncio.create_task(self._run(), name=f"{self._schema}-outbox-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._listener is not None:
            await self._listener.remove_listener(f"{self._schema}_outbox", self._on_notify)
            await self._pool.release(self._listener)
        # One last pass so a clean shutdown leaves nothing pending.
        with contextlib.suppress(Exception):
            await self.publish_pending()

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                while await self.publish_pending() == self._batch_size:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay pass failed; retrying")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_seconds)

    async def publish_pending(self) -> int:
        """Publish one batch of pending events; returns how many were published."""
        async with platform_transaction(self._pool) as conn:
            rows = await conn.fetch(
                f"SELECT id, event_id, tenant_id, subject, message_type, payload, traceparent "
                f"FROM {self._schema}.outbox WHERE published_at IS NULL "
                "ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                self._batch_size,
            )
            for row in rows:
                # Continue the trace of the request that wrote the event, not the relay's.
                parent = extract_context({"traceparent": row["traceparent"]}) if row["traceparent"] else None
                with _tracer.start_as_current_span("outbox relay", context=parent):
                    await self._publisher.publish(
                        row["subject"],
                        _decode(row["message_type"], bytes(row["payload"])),
                        msg_id=row["event_id"],
                        tenant_id=row["tenant_id"],
                    )
            if rows:
                await conn.execute(
                    f"UPDATE {self._schema}.outbox SET published_at = now() WHERE id = ANY($1::bigint[])",
                    [row["id"] for row in rows],
                )
        return len(rows)
