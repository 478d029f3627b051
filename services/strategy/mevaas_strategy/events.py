"""Strategy's NATS side: the consumers that keep the schema's view of sessions and plans current,
and the outgoing market updates and opportunities.

Incoming (durable pull consumers shared by all replicas, idempotent by business key):
* ``exec.*.session`` (ExecutionSessionEvent) -> ``strategy.sessions``: a newer session replaces an
  older one, within a session only a higher ``sequence`` applies; a NOTIFY tells every replica's
  engine to reload its running strategies.
* ``tenant.>`` (TenantEvent) -> ``strategy.tenant_plans``: only a higher snapshot version applies.

Outgoing, published directly after evaluation (the hot path; nothing is written to Postgres), with
the business key as ``Nats-Msg-Id`` so a re-evaluation or a second replica publishing the same
fact is stored once by JetStream:
* ``chain.<chain_id>.block`` MarketUpdate, id ``<chain_id>:<block_hash>``;
* ``opp.<tenant_id>.<strategy_id>`` Opportunity with its typed action, built by
  `mevaas_strategies.opportunity` (id, deadlines).
"""

from __future__ import annotations

from datetime import UTC

import asyncpg

from mevaas.events.v1 import events_pb2
from mevaas.strategy.v1 import strategy_pb2
from mevaas_core import subjects
from mevaas_core.bus import Delivery, RequestContext, ServiceError
from mevaas_core.db import tenant_transaction
from mevaas_strategy import convert, store

SESSION_DURABLE = "strategy-sessions"
TENANT_DURABLE = "strategy-tenants"


LOOKUP_SUBJECT = subjects.STRATEGY_GET


class StrategyLookup:
    """Answers `strategy.rpc.get_strategy` for other services (execution reads a strategy's chains
    and execution settings when a session starts). The tenant comes from the request's tenant-id
    header, and row-level security scopes the read to it, so a request never sees another
    tenant's strategy."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def answer(
        self, request: strategy_pb2.GetStrategyRequest, context: RequestContext
    ) -> strategy_pb2.GetStrategyResponse:
        if not context.tenant_id or not request.strategy_id:
            raise ServiceError(400, "a tenant-id header and strategy_id are required")
        async with tenant_transaction(self._pool, context.tenant_id, readonly=True) as conn:
            row = await store.get_strategy(conn, request.strategy_id, request.version)
        if row is None or row["status"] != "active":
            raise ServiceError(404, f"strategy {request.strategy_id} not found")
        return strategy_pb2.GetStrategyResponse(strategy=convert.strategy(row))


class StateConsumers:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def on_session(self, event: events_pb2.ExecutionSessionEvent, delivery: Delivery) -> None:
        if not event.tenant_id or not event.strategy_id or not event.session_id:
            return
        occurred = (
            event.occurred_at.ToDatetime(tzinfo=UTC)
            if event.HasField("occurred_at")
            else delivery.published_at
        )
        async with tenant_transaction(self._pool, event.tenant_id) as conn:
            await store.apply_session(
                conn,
                tenant_id=event.tenant_id,
                strategy_id=event.strategy_id,
                session_id=event.session_id,
                strategy_version=event.strategy_version,
                state=event.state,
                sequence=event.sequence,
                occurred_at=occurred,
                wallet_address=event.wallet_address,
            )

    async def on_tenant(self, event: events_pb2.TenantEvent, delivery: Delivery) -> None:
        snapshot = event.tenant
        tenant_id = snapshot.tenant_id or event.tenant_id
        if not tenant_id:
            return
        async with tenant_transaction(self._pool, tenant_id) as conn:
            await store.apply_tenant(
                conn,
                tenant_id=tenant_id,
                version=snapshot.version,
                tier=snapshot.tier,
                status=snapshot.status,
                plan=snapshot.plan.SerializeToString(deterministic=True),
            )
