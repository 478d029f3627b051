"""Acceptance (issue 9, prices): a tenant with realised devnet profit, made through the fleet
(tenancy, strategy, risk, execution and analytics, each its own runtime), gets an invoice whose
performance-fee line is its realised WETH profit priced at the pool mid price analytics recorded
with each execution (checked against the pool's reserves read from the chain at the recorded
block), and profit in a token with no price path is listed as unpriced, never as 0."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from mevaas.analytics.v1 import analytics_pb2, analytics_pb2_grpc
from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.tenancy.v1 import tenancy_pb2
from mevaas_analytics.domain.fees import round_fraction
from mevaas_chain import abi
from mevaas_core.bus import Bus
from mevaas_core.runtime import ServiceRuntime
from mevaas_local.devnet import Devnet
from mevaas_sdk import MevaasClient
from tests.fixtures.analytics import stamp
from tests.fixtures.e2e import start_fleet_execution
from tests.fixtures.execution import ExecutionHarness, wait_for
from tests.fixtures.platform import BOOTSTRAP_ADMIN_KEY, StartService
from tests.integration.e2e.test_hot_path import run_arbitrage
from tests.integration.execution.helpers import clients
from tests.integration.tenancy.helpers import TRADING_PHASE, create_tenant

pytestmark = pytest.mark.integration

S = common_pb2
ORPHAN = "0x" + "0d" * 20  # a token no configured pool prices


@pytest_asyncio.fixture(loop_scope="session")
async def fleet(
    execution_harness: ExecutionHarness,
    start_service: StartService,
    devnet: Devnet,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[dict[str, Any]]:
    """Execution wired to the real strategy lookup, and analytics pricing from the devnet's chains."""
    from mevaas_analytics.server import SERVICE, AnalyticsRuntime, AnalyticsSettings

    chains_file = tmp_path_factory.mktemp("analytics-prices") / "chains.json"
    devnet.registry.write(chains_file)
    analytics: ServiceRuntime[Any] = await start_service(
        SERVICE,
        AnalyticsRuntime,
        AnalyticsSettings,
        durable_prefix=f"analytics-prices-{uuid.uuid4().hex[:6]}",
        chains_file=str(chains_file),
        market_history_dir=str(tmp_path_factory.mktemp("market-history-prices")),
    )
    execution = await start_fleet_execution(execution_harness)
    yield {"analytics": analytics, "execution": execution}
    await execution_harness.stop(execution)


async def test_invoice_bills_priced_devnet_profit_and_lists_unpriced(
    fleet: dict[str, Any],
    tenancy_service: Any,
    strategy_service: Any,
    risk_service: Any,
    devnet: Devnet,
    bus: Bus,
    postgres_server: str,
) -> None:
    make = clients(tenancy_service)
    async with make(BOOTSTRAP_ADMIN_KEY) as admin:
        tenant = await create_tenant(admin, phase=TRADING_PHASE)  # professional tier: 15 % performance fee
    endpoints = {
        name: f"127.0.0.1:{runtime.grpc_port}"
        for name, runtime in (
            ("strategy", strategy_service),
            ("risk", risk_service),
            ("execution", fleet["execution"]),
            ("analytics", fleet["analytics"]),
        )
    }
    client: MevaasClient
    async with make(tenant.owner_key, **endpoints) as client:
        tenant_id = (await client.auth.WhoAmI(tenancy_pb2.WhoAmIRequest())).tenant_id
        await run_arbitrage(client, devnet, bus, S.STRATEGY_TYPE_FLASH_ARBITRAGE)

        # Profit in a token no pool prices, as execution reports it.
        now = datetime.now(UTC)
        orphan = events_pb2.ExecutionResult(
            event_id=str(uuid.uuid4()),
            tenant_id=tenant_id,
            occurred_at=stamp(now),
            execution_id=str(uuid.uuid4()),
            strategy_id="s-orphan",
            chain_id=devnet.main.spec.chain_id,
            status=S.EXECUTION_RESULT_STATUS_INCLUDED,
            tx_hashes=["0x" + "ab" * 32],
            # A block the market feed has passed (blocks stopped with the session).
            block_number=1,
            gas_cost="0",
            realized_profit=str(7 * 10**18),
            profit_token=S.Token(
                chain_id=devnet.main.spec.chain_id, address=ORPHAN, symbol="ORPH", decimals=18
            ),
            wallet_address="0x" + "77" * 20,
        )
        await bus.publish(f"exec.{tenant_id}.result", orphan, msg_id=orphan.event_id, tenant_id=tenant_id)

        analytics: analytics_pb2_grpc.AnalyticsServiceAsyncStub = client.stub(
            "analytics", analytics_pb2_grpc.AnalyticsServiceStub
        )
        conn = await asyncpg.connect(postgres_server)
        try:
            chain_id = devnet.main.spec.chain_id

            async def valued() -> list[asyncpg.Record] | None:
                rows = await conn.fetch(
                    "SELECT * FROM analytics.execution_valuations WHERE tenant_id = $1"
                    " AND component = 'realized_profit' ORDER BY execution_id, status",
                    tenant_id,
                )
                orphan_key = f"{chain_id}:{ORPHAN}"
                done = any(r["token"] == orphan_key for r in rows) and len(rows) > 1
                return rows if done and all(r["priced"] == (r["token"] != orphan_key) for r in rows) else None

            # An execution still in flight when the session stopped may land meanwhile: read the
            # valuations again after the invoice and retry until both saw the same executions.
            for _ in range(5):
                rows = await wait_for(valued, timeout_s=30)
                listed = await analytics.ListInvoices(analytics_pb2.ListInvoicesRequest())
                if await valued() == rows:
                    break
        finally:
            await conn.close()

    # Independent figure: each priced profit at the reserves of the recorded pool, read from the
    # chain at the recorded block (a stablecoin profit is worth its peg).
    chain = devnet.main
    expected = Fraction(0)
    for row in rows:
        if not row["priced"]:
            continue
        source = row["price_source"]
        if source.startswith("peg:"):
            price = Fraction(1)
        else:
            assert source.startswith(f"pool-mid:{chain.spec.chain_id}:WETH/")
            assert source.count("@") == 1  # one hop: WETH's deepest pool is straight to a stablecoin
            pool = source.rsplit("@", 1)[1]
            stable = chain.config.token(source.split("/")[1].split("@")[0])
            weth = chain.config.token("WETH")
            r0, r1 = abi.decode_reserves(await chain.client.call(pool, abi.GET_RESERVES, row["price_block"]))
            weth_reserve, stable_reserve = (
                (r1, r0) if stable.address.lower() < weth.address.lower() else (r0, r1)
            )
            price = Fraction(stable_reserve, 10**stable.decimals) / Fraction(weth_reserve, 10**18)
        assert abs(Fraction(row["usd_price"]) - price) <= Fraction(1, 2 * 10**18)
        expected += Fraction(int(row["amount"]), 10 ** row["decimals"]) * price
    assert expected > 0

    draft = next(i for i in listed.invoices if i.status == analytics_pb2.INVOICE_STATUS_DRAFT)
    by_kind = {li.kind: li for li in draft.line_items}
    performance = by_kind[analytics_pb2.LINE_ITEM_KIND_PERFORMANCE_FEE]
    profit_base = round_fraction(expected, "USD")
    assert Decimal(performance.quantity.value) == profit_base
    assert Decimal(performance.rate_percent.value) == 15
    assert Decimal(performance.amount.amount) == (profit_base * 15 / 100).quantize(Decimal("0.01"))
    unpriced = by_kind[analytics_pb2.LINE_ITEM_KIND_UNPRICED_PROFIT]
    assert unpriced.unpriced and unpriced.token.address == ORPHAN and unpriced.token_amount == str(7 * 10**18)
    assert unpriced.quantity.value == "7" and not unpriced.HasField("amount")
    assert draft.has_unpriced_profit
    assert any(s.startswith("pool-mid:") for s in draft.price_sources)
