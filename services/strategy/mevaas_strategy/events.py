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
* ``opp.<tenant_id>.<strategy_id>`` Opportunity, id = opportunity_id, a hash of tenant, strategy
  id and version, chain, block hash and route with sizing.

The deadline block of an opportunity is ``detected + 1 + ceil(execution_delay_ms / block time) +
retry_attempts``: the next block, plus the blocks the configured delay spans, plus one per retry.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from datetime import UTC, datetime

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.strategy.v1 import strategy_pb2
from mevaas_core.bus import Delivery, RequestContext, ServiceError
from mevaas_core.db import tenant_transaction
from mevaas_strategy import store
from mevaas_strategy.api import strategy_message
from mevaas_strategy.domain.market import ChainMarket
from mevaas_strategy.domain.model import StrategySpec
from mevaas_strategy.domain.plugins import Candidate

SESSION_DURABLE = "strategy-sessions"
TENANT_DURABLE = "strategy-tenants"


def timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


LOOKUP_SUBJECT = "strategy.rpc.get_strategy"


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
        return strategy_pb2.GetStrategyResponse(strategy=strategy_message(row))


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


def opportunity_id(spec: StrategySpec, chain_id: int, block_hash: str, candidate: Candidate) -> str:
    key = f"{spec.tenant_id}|{spec.strategy_id}|{spec.version}|{chain_id}|{block_hash}|{candidate.route_key}"
    return str(uuid.UUID(bytes=hashlib.sha256(key.encode()).digest()[:16]))


def deadline_blocks(spec: StrategySpec, block_time_s: float) -> int:
    delay_blocks = math.ceil(spec.execution_delay_ms / (block_time_s * 1000)) if block_time_s > 0 else 0
    return 1 + delay_blocks + spec.retry_attempts


def opportunity_message(
    spec: StrategySpec,
    candidate: Candidate,
    market: ChainMarket,
    *,
    block_seen_at: datetime,
    detected_at: datetime,
    chain_head: int | None = None,
) -> events_pb2.Opportunity:
    """``chain_head``: the head of the opportunity's own chain (``candidate.chain_id``) when the
    update came from another chain (cross-chain), so the deadline is in that chain's blocks."""
    opp_id = opportunity_id(spec, market.chain_id, market.block_hash, candidate)
    detected = timestamp(detected_at)
    return events_pb2.Opportunity(
        event_id=opp_id,
        tenant_id=spec.tenant_id,
        occurred_at=detected,
        opportunity_id=opp_id,
        strategy_id=spec.strategy_id,
        strategy_version=spec.version,
        type=spec.type,  # type: ignore[arg-type]
        chain_id=candidate.chain_id,
        chain_ids=candidate.chain_ids,
        hops=[
            events_pb2.RouteHop(
                chain_id=h.chain_id,
                pool=h.pool,
                token_in=h.token_in,
                token_out=h.token_out,
                dex=h.dex,
                amount_in=str(h.amount_in),
                amount_out=str(h.amount_out),
                fee_bps=h.fee_bps,
            )
            for h in candidate.hops
        ],
        amount_in=str(candidate.amount_in),
        expected_profit=str(candidate.expected_profit),
        profit_token=common_pb2.Token(
            chain_id=candidate.profit_token.chain_id,
            address=candidate.profit_token.address,
            symbol=market.symbols.get(candidate.profit_token.address, "")
            if candidate.profit_token.chain_id == market.chain_id
            else "",
            decimals=market.decimals.get(candidate.profit_token.address, 0)
            if candidate.profit_token.chain_id == market.chain_id
            else 0,
        ),
        gas_estimate=candidate.gas_estimate,
        gas_price=str(candidate.gas_price),
        expected_profit_net_of_gas=str(candidate.net_profit),
        detected_block=market.block_number,
        deadline_block=(market.block_number if chain_head is None else chain_head)
        + deadline_blocks(spec, market.block_time_s),
        detected_at=detected,
        block_seen_at=timestamp(block_seen_at),
        submission_mode=spec.submission_mode,  # type: ignore[arg-type]
    )
