"""The leverage-protection monitor across a restart, on strategy's real schema and the real bus: a
protected position below its trigger gets one deleverage; a new monitor instance on the same
database (a restart, or the replica taking the tenant over) started while that deleverage is in
flight publishes no second one, and settles the first as before: DELEVERAGE_FAILED after the
grace deadline (then triggers again), or DELEVERAGED from execution's result, which the first
instance received and kept before it stopped. Two instances triggering the same protection at once
publish one deleverage; a block whose claim the database refuses publishes none, and the next
block triggers it. A result another replica received (the results consumer is shared) reaches the
monitor evaluating the tenant through the database. The market is synthetic (an Aave position about HF 1.1 and a deep
WETH/USDC pool); everything else is what the strategy service runs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_chain.lending.math import RAY, WAD, Position, Reserve
from mevaas_chain.pool_index import Pool
from mevaas_core.bus import Bus
from mevaas_core.db import (
    ServiceDsns,
    create_pool,
    platform_transaction,
    provision_service_database,
    tenant_transaction,
)
from mevaas_core.migrations import apply_migrations
from mevaas_strategies.market import ChainMarket, LendingState
from mevaas_strategy.protection import store
from mevaas_strategy.protection.monitor import DEADLINE_BLOCKS, RESULT_GRACE_BLOCKS, ProtectionMonitor
from tests.fixtures.e2e import Collected, collect
from tests.fixtures.execution import wait_for
from tests.fixtures.platform import service_passwords

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

K = events_pb2
CHAIN_ID = 31337
WETH = "0x" + "11" * 20
USDC = "0x" + "22" * 20
ACCOUNT = "0x" + "33" * 20
NOW = 1_700_000_000
BLOCK_TIME_S = 12


def _config(ltv: int, threshold: int, bonus: int, decimals: int) -> int:
    return ltv | threshold << 16 | bonus << 32 | decimals << 48 | 1 << 56


RESERVES = {
    WETH: Reserve(
        WETH, 0, _config(8000, 8250, 10500, 18), RAY, 0, RAY, 0, NOW - 600, "0x" + "a1" * 20, "0x" + "d1" * 20
    ),
    USDC: Reserve(
        USDC, 1, _config(7700, 8000, 10450, 6), RAY, 0, RAY, 0, NOW - 600, "0x" + "a2" * 20, "0x" + "d2" * 20
    ),
}
PRICES = {WETH: 2_000 * 10**8, USDC: 10**8}
COLLATERAL = {WETH: 10 * WAD}
# 15,000 USDC against 10 WETH: HF 1.1 (under the trigger 1.2); 10,000: HF 1.65 (above the target).
UNDER, DELEVERAGED = {USDC: 15_000 * 10**6}, {USDC: 10_000 * 10**6}


def market(block: int, debt: dict[str, int]) -> ChainMarket:
    at = NOW + (block - 100) * BLOCK_TIME_S
    pool = Pool("0x" + "ab" * 20, "uni", WETH, USDC, 30, 5_000 * WAD, 10_000_000 * 10**6)
    return ChainMarket(
        chain_id=CHAIN_ID,
        block_number=block,
        block_hash="0x" + f"{block:064x}",
        base_fee=10 * 10**9,
        priority_fee=10**9,
        pools={pool.address: pool},
        wrapped_native=WETH,
        symbols={WETH: "WETH", USDC: "USDC"},
        decimals={WETH: 18, USDC: 6},
        block_time_s=BLOCK_TIME_S,
        lending=LendingState(
            protocol="aave-v3",
            pool="0x" + "99" * 20,
            block_timestamp=at,
            reserves=RESERVES,
            positions={ACCOUNT: Position(ACCOUNT, 1 << 1 | 1 << 2, COLLATERAL, debt)},
            prices=PRICES,
            flash_loan_premium=5,
        ),
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def dsns(postgres_server: str, postgres_database: str) -> ServiceDsns:
    """Strategy's schema, migrated, on a database of this module's own."""
    from mevaas_strategy.server import SERVICE

    provisioned = await provision_service_database(
        postgres_database, "strategy", *service_passwords(postgres_server, "strategy")
    )
    assert SERVICE.migrations is not None
    await apply_migrations(provisioned.owner_dsn, "strategy", SERVICE.migrations)
    return provisioned


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(dsns: ServiceDsns) -> AsyncIterator[asyncpg.Pool]:
    created = await create_pool(dsns.app_dsn, platform_dsn=dsns.platform_dsn, max_size=4)
    yield created
    await created.close()


async def protect(pool: asyncpg.Pool) -> tuple[str, str]:
    """A fresh tenant's active protection of ACCOUNT (trigger 1.2, target 1.4, emergency 1.05)."""
    tenant_id, protection_id = f"t{uuid.uuid4().hex[:12]}", str(uuid.uuid4())
    async with tenant_transaction(pool, tenant_id) as conn:
        await store.insert(
            conn,
            {
                "protection_id": protection_id,
                "tenant_id": tenant_id,
                "chain_id": CHAIN_ID,
                "account": ACCOUNT,
                "trigger_health_factor": 12 * WAD // 10,
                "target_health_factor": 14 * WAD // 10,
                "emergency_enabled": True,
                "emergency_health_factor": 105 * WAD // 100,
                "state": "active",
            },
        )
    return tenant_id, protection_id


def included(
    tenant_id: str, protection_id: str, deleverage: K.Opportunity, *, block: int
) -> K.ExecutionResult:
    """Execution's result for a deleverage that landed in ``block``."""
    execution_id = str(uuid.uuid4())
    return K.ExecutionResult(
        event_id=execution_id,
        tenant_id=tenant_id,
        execution_id=execution_id,
        opportunity_id=deleverage.opportunity_id,
        strategy_id=protection_id,
        status=common_pb2.EXECUTION_RESULT_STATUS_INCLUDED,
        block_number=block,
        tx_hashes=["0x" + "ee" * 32],
    )


class Watch:
    """The tenant's opportunities and alerts as the bus delivers them. The monitors publish on the
    same connection as these subscriptions: once a flush has come back, the server has sent
    every message they published before it, and once the subscriptions' queues are empty each
    has been collected."""

    def __init__(self, bus: Bus, tenant_id: str, protection_id: str) -> None:
        self.bus, self.tenant_id, self.protection_id = bus, tenant_id, protection_id
        self.opportunities = Collected()
        self.alerts = Collected()
        self.seen = (0, 0)

    async def open(self) -> None:
        self.opportunities = await collect(
            self.bus,
            f"opp.{self.tenant_id}.{self.protection_id}",
            K.Opportunity,
            lambda o: str(o.opportunity_id),
        )
        self.alerts = await collect(
            self.bus, f"protect.{self.tenant_id}.leverage", K.ProtectionAlert, lambda a: str(a.alert_id)
        )

    async def close(self) -> None:
        await self.opportunities.close()
        await self.alerts.close()

    async def new(self) -> tuple[list[Any], list[Any]]:
        """Opportunities and alerts delivered since the last call (each id once)."""
        await self.bus.nc.flush()

        async def drained() -> bool:
            subscriptions = (self.opportunities.subscription, self.alerts.subscription)
            return all(s.pending_msgs == 0 for s in subscriptions)

        await wait_for(drained, timeout_s=30, interval_s=0.01)
        opportunities = list(self.opportunities.items.values())
        alerts = list(self.alerts.items.values())
        (o, a), self.seen = self.seen, (len(opportunities), len(alerts))
        return opportunities[o:], alerts[a:]


@pytest_asyncio.fixture(loop_scope="session")
async def protected(pool: asyncpg.Pool, bus: Bus) -> AsyncIterator[tuple[str, str, Watch]]:
    tenant_id, protection_id = await protect(pool)
    watch = Watch(bus, tenant_id, protection_id)
    await watch.open()
    yield tenant_id, protection_id, watch
    await watch.close()


async def started(pool: asyncpg.Pool, bus: Bus, tenant_id: str) -> ProtectionMonitor:
    """A monitor instance evaluating only this test's tenant (its own results consumer, so
    another monitor of the session does not take the results)."""
    monitor = ProtectionMonitor(
        bus,
        pool,
        lambda tenant: tenant == tenant_id,
        results_durable=f"test-protection-{uuid.uuid4().hex[:12]}",
    )
    await monitor.start()
    return monitor


async def in_flight(pool: asyncpg.Pool, tenant_id: str) -> list[asyncpg.Record]:
    async with platform_transaction(pool, readonly=True) as conn:
        return [r for r in await store.in_flight(conn) if r["tenant_id"] == tenant_id]


def kinds(alerts: list[Any]) -> list[int]:
    return [a.kind for a in alerts]


async def test_a_restarted_monitor_waits_for_the_deleverage_in_flight_until_its_grace_deadline(
    pool: asyncpg.Pool, bus: Bus, protected: tuple[str, str, Watch]
) -> None:
    tenant_id, protection_id, watch = protected
    first = await started(pool, bus, tenant_id)
    try:
        await first.on_block(market(100, UNDER), datetime.now(UTC))
        (published,), alerts = await watch.new()
        assert kinds(alerts) == [K.PROTECTION_ALERT_KIND_TRIGGERED]
        # Published again at the same block (a redelivered block), it is the same deleverage.
        await first.on_block(market(100, UNDER), datetime.now(UTC))
        assert await watch.new() == ([], [])
    finally:
        await first.stop()
    (row,) = await in_flight(pool, tenant_id)
    assert (row["protection_id"], row["opportunity_id"]) == (protection_id, published.opportunity_id)
    assert row["deadline_block"] == published.deadline_block == 100 + DEADLINE_BLOCKS
    assert row["result"] is None

    second = await started(pool, bus, tenant_id)
    try:
        last_waiting = published.deadline_block + RESULT_GRACE_BLOCKS
        for block in range(101, last_waiting + 1):
            await second.on_block(market(block, UNDER), datetime.now(UTC))
        # Still under the trigger at every block, but the first deleverage is in flight.
        assert await watch.new() == ([], [])
        assert [r["opportunity_id"] for r in await in_flight(pool, tenant_id)] == [published.opportunity_id]

        # Past the grace deadline with no result: failed, as before a restart, and triggered again.
        await second.on_block(market(last_waiting + 1, UNDER), datetime.now(UTC))
        (again,), alerts = await watch.new()
        assert kinds(alerts) == [K.PROTECTION_ALERT_KIND_DELEVERAGE_FAILED, K.PROTECTION_ALERT_KIND_TRIGGERED]
        assert alerts[0].opportunity_id == published.opportunity_id
        assert again.opportunity_id != published.opportunity_id
        assert [r["opportunity_id"] for r in await in_flight(pool, tenant_id)] == [again.opportunity_id]
    finally:
        await second.stop()


async def test_a_result_received_before_the_restart_settles_the_deleverage_after_it(
    pool: asyncpg.Pool, bus: Bus, protected: tuple[str, str, Watch]
) -> None:
    tenant_id, protection_id, watch = protected
    first = await started(pool, bus, tenant_id)
    try:
        await first.on_block(market(200, UNDER), datetime.now(UTC))
        (published,), _ = await watch.new()
        result = included(tenant_id, protection_id, published, block=201)
        await bus.publish(f"exec.{tenant_id}.result", result, msg_id=result.execution_id, tenant_id=tenant_id)

        async def kept() -> bool:
            rows = await in_flight(pool, tenant_id)
            return bool(rows) and rows[0]["result"] is not None

        await wait_for(kept, timeout_s=30)
    finally:
        await first.stop()  # before the block that would have settled it

    second = await started(pool, bus, tenant_id)
    try:
        # The index has applied the deleverage's block: the position is above its target now.
        await second.on_block(market(201, DELEVERAGED), datetime.now(UTC))
        opportunities, alerts = await watch.new()
        assert opportunities == []
        (settled,) = alerts
        assert settled.kind == K.PROTECTION_ALERT_KIND_DELEVERAGED
        assert (settled.opportunity_id, settled.execution_id) == (
            published.opportunity_id,
            result.execution_id,
        )
        assert settled.tx_hash == "0x" + "ee" * 32
        assert int(settled.health_factor) >= 14 * WAD // 10
        assert await in_flight(pool, tenant_id) == []
    finally:
        await second.stop()


async def test_two_instances_triggering_the_same_protection_publish_one_deleverage(
    pool: asyncpg.Pool, bus: Bus, protected: tuple[str, str, Watch]
) -> None:
    tenant_id, _, watch = protected
    one, other = await started(pool, bus, tenant_id), await started(pool, bus, tenant_id)
    try:
        await one.on_block(market(300, UNDER), datetime.now(UTC))
        # The other instance saw the position at a later block (another opportunity id).
        await other.on_block(market(301, UNDER), datetime.now(UTC))
        (published,), alerts = await watch.new()
        assert published.detected_block == 300
        assert kinds(alerts) == [K.PROTECTION_ALERT_KIND_TRIGGERED]
        # The other instance now waits for the deleverage the first one published.
        for block in range(302, 300 + DEADLINE_BLOCKS + RESULT_GRACE_BLOCKS + 1):
            await other.on_block(market(block, UNDER), datetime.now(UTC))
        assert await watch.new() == ([], [])
    finally:
        await one.stop()
        await other.stop()


async def test_a_deleverage_whose_claim_cannot_be_written_is_not_published_and_is_tried_again(
    pool: asyncpg.Pool, dsns: ServiceDsns, bus: Bus, protected: tuple[str, str, Watch]
) -> None:
    tenant_id, protection_id, watch = protected
    monitor = await started(pool, bus, tenant_id)
    owner = await asyncpg.connect(dsns.owner_dsn)
    try:
        # The platform role may not claim for a moment (the database refuses the write).
        await owner.execute("REVOKE INSERT ON strategy.protection_deleverages FROM strategy_platform")
        try:
            await monitor.on_block(market(400, UNDER), datetime.now(UTC))
        finally:
            await owner.execute("GRANT INSERT ON strategy.protection_deleverages TO strategy_platform")
        # Nothing of that block was published, and nothing is left waiting for it.
        assert await watch.new() == ([], [])
        assert protection_id not in monitor.pending
        assert await in_flight(pool, tenant_id) == []

        await monitor.on_block(market(401, UNDER), datetime.now(UTC))
        (published,), alerts = await watch.new()
        assert published.detected_block == 401
        assert kinds(alerts) == [K.PROTECTION_ALERT_KIND_TRIGGERED]
        assert [r["opportunity_id"] for r in await in_flight(pool, tenant_id)] == [published.opportunity_id]
    finally:
        await owner.close()
        await monitor.stop()


async def test_a_result_another_replica_received_reaches_the_monitor_evaluating_the_tenant(
    pool: asyncpg.Pool, bus: Bus, protected: tuple[str, str, Watch]
) -> None:
    tenant_id, protection_id, watch = protected
    monitor = await started(pool, bus, tenant_id)
    try:
        await monitor.on_block(market(500, UNDER), datetime.now(UTC))
        (published,), _ = await watch.new()
        result = included(tenant_id, protection_id, published, block=501)
        # What a replica not evaluating the tenant does with a result the shared consumer gave it.
        async with platform_transaction(pool) as conn:
            await store.record_result(conn, published.opportunity_id, result.SerializeToString())

        async def arrived() -> bool:
            pending = monitor.pending.get(protection_id)
            return pending is not None and pending.result is not None

        await wait_for(arrived, timeout_s=30)
        await monitor.on_block(market(501, DELEVERAGED), datetime.now(UTC))
        opportunities, alerts = await watch.new()
        assert opportunities == []
        assert [(a.kind, a.execution_id) for a in alerts] == [
            (K.PROTECTION_ALERT_KIND_DELEVERAGED, result.execution_id)
        ]
        assert await in_flight(pool, tenant_id) == []
    finally:
        await monitor.stop()
