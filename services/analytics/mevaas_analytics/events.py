"""NATS consumers of the read model, with batched idempotent writes.

Every consumer runs with `concurrency` handlers in flight. A handler turns its event into rows
(`store.*_rows`) and hands them to the shared `BatchWriter`, which writes everything queued by
the handlers in flight in ONE transaction (`executemany` per statement), then releases the
handlers; only then do they return and their messages get acked. A failed transaction fails
every handler of the batch, so all of its messages are redelivered; the rows are unique on the
event's business key (`ON CONFLICT DO NOTHING`), so a redelivery writes nothing twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from google.protobuf.message import Message

from mevaas.events.v1 import events_pb2
from mevaas_analytics import store
from mevaas_analytics.store import Statement
from mevaas_core.bus import Bus, Delivery
from mevaas_core.db import platform_transaction


class BatchWriter:
    """Writes the statements of concurrently handled messages together, one transaction per batch."""

    def __init__(self, pool: asyncpg.Pool, *, max_batch: int = 512) -> None:
        self.pool = pool
        self.max_batch = max_batch
        self._pending: list[tuple[list[Statement], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.transactions = 0

    async def write(self, statements: list[Statement]) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((statements, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_all())
        await future

    async def _flush_all(self) -> None:
        # Yield once so every handler already running gets to queue its rows into this batch.
        await asyncio.sleep(0)
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            try:
                await self._write(batch)
            except Exception as exc:  # the handlers re-raise it: their messages are nak'ed
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)

    async def _write(self, batch: Sequence[tuple[list[Statement], asyncio.Future[None]]]) -> None:
        # Group consecutive identical statements so each runs as one executemany.
        groups: list[tuple[str, list[tuple[Any, ...]]]] = []
        for statements, _ in batch:
            for sql, args in statements:
                if groups and groups[-1][0] == sql:
                    groups[-1][1].append(args)
                else:
                    groups.append((sql, [args]))
        async with platform_transaction(self.pool) as conn:
            for sql, rows in groups:
                await conn.executemany(sql, rows)
        self.transactions += 1


@dataclass(frozen=True)
class Feed:
    stream: str
    filter_subject: str
    message_type: type[Message]
    rows: Callable[[Any], list[Statement]]


FEEDS: dict[str, Feed] = {
    "opportunities": Feed("OPP", "opp.>", events_pb2.Opportunity, store.opportunity_rows),
    "decisions": Feed("RISK", "risk.*.decision", events_pb2.RiskDecision, store.decision_rows),
    "breaches": Feed("RISK", "risk.*.breach", events_pb2.RiskBreach, store.breach_rows),
    "killswitch": Feed("RISK", "risk.*.killswitch", events_pb2.KillSwitchChanged, store.kill_switch_rows),
    "results": Feed("EXEC", "exec.*.result", events_pb2.ExecutionResult, store.execution_rows),
    "sessions": Feed("EXEC", "exec.*.session", events_pb2.ExecutionSessionEvent, store.session_rows),
    "tenants": Feed("TENANT", "tenant.>", events_pb2.TenantEvent, store.tenant_rows),
    "audit": Feed("AUDIT", "audit.*.record", events_pb2.AuditRecord, store.audit_rows),
    "market": Feed("CHAIN", "chain.*.block", events_pb2.MarketUpdate, store.market_rows),
}

MarketListener = Callable[[events_pb2.MarketUpdate], Awaitable[None]]


async def subscribe_all(
    bus: Bus,
    writer: BatchWriter,
    *,
    durable_prefix: str = "analytics",
    concurrency: int = 64,
    on_market: MarketListener | None = None,
) -> list[Any]:
    """Start one durable consumer per feed; returns the subscriptions (stopped by the caller)."""
    subscriptions = []
    for name, feed in FEEDS.items():

        async def handle(message: Any, _delivery: Delivery, feed: Feed = feed, name: str = name) -> None:
            # Market state first: once a block's row is committed, its pools are recorded too.
            if name == "market" and on_market is not None:
                await on_market(message)
            await writer.write(feed.rows(message))

        subscriptions.append(
            await bus.subscribe(
                feed.stream,
                f"{durable_prefix}-{name}",
                feed.filter_subject,
                feed.message_type,
                handle,
                concurrency=concurrency,
                batch=max(32, concurrency),
            )
        )
    return subscriptions
