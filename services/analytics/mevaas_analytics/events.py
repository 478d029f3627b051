"""NATS consumers of the read model, with batched idempotent writes.

Every consumer runs with `concurrency` handlers in flight. A handler turns its event into rows
(`store.*_rows`) and hands them to the shared `BatchWriter`, which writes everything queued by
the handlers in flight in ONE transaction (`executemany` per statement), then releases the
handlers; only then do they return and their messages get acked. A failed transaction fails
every handler of the batch, so all of its messages are redelivered; the rows are unique on the
event's business key (`ON CONFLICT DO NOTHING`), so a redelivery writes nothing twice.

An event that no retry could record (`MalformedEvent`, raised while building its rows) is refused
before it reaches the batch: logged and acknowledged with no row, so it neither fails the other
messages' transaction nor is redelivered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from google.protobuf.message import Message

from mevaas.events.v1 import events_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas_analytics import store
from mevaas_analytics.domain import MalformedEvent
from mevaas_analytics.store import Statement, protected, protections, threats
from mevaas_core.bus import Bus, Delivery
from mevaas_core.db import platform_transaction

log = logging.getLogger("mevaas.analytics.events")


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
    # Rows whose last write must be the stream's last message (not the one that happened to
    # finish last) are written in stream order.
    ordered: bool = False


FEEDS: dict[str, Feed] = {
    "opportunities": Feed("OPP", "opp.>", events_pb2.Opportunity, store.opportunity_rows),
    "decisions": Feed("RISK", "risk.*.decision", events_pb2.RiskDecision, store.decision_rows),
    "breaches": Feed("RISK", "risk.*.breach", events_pb2.RiskBreach, store.breach_rows),
    "killswitch": Feed("RISK", "risk.*.killswitch", events_pb2.KillSwitchChanged, store.kill_switch_rows),
    "results": Feed("EXEC", "exec.*.result", events_pb2.ExecutionResult, store.execution_rows),
    "sessions": Feed("EXEC", "exec.*.session", events_pb2.ExecutionSessionEvent, store.session_rows),
    "rebalances": Feed(
        "EXEC", "exec.*.rebalance_status", execution_pb2.RebalanceUpdated, store.rebalance_status_rows
    ),
    "protected": Feed(
        "EXEC", "exec.*.protected", events_pb2.ProtectedTransactionEvent, protected.protected_rows
    ),
    "protections": Feed(
        "PROTECT",
        "protect.*.position",
        events_pb2.ProtectedPositionSnapshot,
        protections.snapshot_rows,
    ),
    "threats": Feed("PROTECT", "protect.*.threat", events_pb2.SandwichThreat, threats.threat_rows),
    "tenants": Feed("TENANT", "tenant.>", events_pb2.TenantEvent, store.tenant_rows),
    "audit": Feed("AUDIT", "audit.*.record", events_pb2.AuditRecord, store.audit_rows),
    # A reorg publishes a second update for a height (or rewinds pools to a lower one): only
    # the stream's order says which is the chain's.
    "market": Feed("CHAIN", "chain.*.block", events_pb2.MarketUpdate, store.market_rows, ordered=True),
}


async def subscribe_all(
    bus: Bus,
    writer: BatchWriter,
    *,
    durable_prefix: str = "analytics",
    concurrency: int = 64,
    extra_rows: Mapping[str, Callable[[Any], Awaitable[list[Statement]]]] | None = None,
) -> list[Any]:
    """Start one durable consumer per feed; returns the subscriptions (stopped by the caller).
    `extra_rows[feed]` adds rows written in the same transaction as the feed's own (e.g. the
    valuation of an execution result, priced with the service's price state)."""
    extras = dict(extra_rows or {})
    subscriptions = []
    for name, feed in FEEDS.items():

        async def handle(message: Any, delivery: Delivery, feed: Feed = feed, name: str = name) -> None:
            try:
                rows = feed.rows(message)
                if name in extras:
                    rows += await extras[name](message)
            except MalformedEvent as refused:
                log.error(
                    "feed %s: refused %s (msg id %s, stream seq %d): %s",
                    name,
                    delivery.subject,
                    delivery.msg_id,
                    delivery.stream_sequence,
                    refused,
                    extra={"tenant_id": delivery.tenant_id, "msg_id": delivery.msg_id},
                )
                return
            await writer.write(rows)

        subscriptions.append(
            await bus.subscribe(
                feed.stream,
                f"{durable_prefix}-{name}",
                feed.filter_subject,
                feed.message_type,
                handle,
                concurrency=1 if feed.ordered else concurrency,
                batch=max(32, concurrency),
            )
        )
    return subscriptions
