"""The leverage-protection line on a real invoice: snapshots of a protected position published on
protect.<tenant>.position (as strategy's monitor does) land in analytics over NATS, and January's
issued invoice bills the starter tier's 15% a year of their priced collateral value, pro-rated,
exact to the cent; the collateral in a token the price source cannot price is flagged on its
own line, never billed as 0."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mevaas.analytics.v1 import analytics_pb2, analytics_pb2_grpc
from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_core.auth import Role
from mevaas_core.bus import Bus
from mevaas_core.db import platform_transaction
from tests.fixtures.analytics import stamp, wait_until

pytestmark = pytest.mark.integration

CHAIN = 31337
# The analytics fixture's price table prices this token at 2000 USD; ODD has no price.
WETH = common_pb2.Token(chain_id=CHAIN, address="0x" + "ee" * 20, symbol="WETH", decimals=18)
ODD = common_pb2.Token(chain_id=CHAIN, address="0x" + "0d" * 20, symbol="ODD", decimals=6)
T0 = datetime(2026, 1, 10, tzinfo=UTC)
LEVERAGE = analytics_pb2.LINE_ITEM_KIND_LEVERAGE_PROTECTION_FEE


def snapshot(tenant: str, hours: int, weth: int, odd: int) -> events_pb2.ProtectedPositionSnapshot:
    out = events_pb2.ProtectedPositionSnapshot(
        event_id=f"protection-position:p1:{hours + 1}",
        tenant_id=tenant,
        occurred_at=stamp(T0 + timedelta(hours=hours)),
        protection_id="p1",
        chain_id=CHAIN,
        account="0x" + "ab" * 20,
        block_number=hours + 1,
        valid_seconds=3600,
        health_factor=str(14 * 10**17),
    )
    out.collateral.add(token=WETH, amount=str(weth))
    out.collateral.add(token=ODD, amount=str(odd))
    return out


async def test_january_bills_the_protected_positions_value_pro_rated(
    analytics_service: Any, analytics_channel: Any, nats_server: str
) -> None:
    tenant = f"lev-{uuid.uuid4().hex[:8]}"
    bus = await Bus.connect(nats_server, client_name="leverage-seed")
    await bus.ensure_streams()
    plan = common_pb2.Plan(
        name="starter", monthly_base_fee=common_pb2.Money(currency_code="USD", amount="100.00")
    )
    created = events_pb2.TenantEvent(
        event_id=str(uuid.uuid4()),
        tenant_id=tenant,
        occurred_at=stamp(T0 - timedelta(days=5)),
        kind=events_pb2.TENANT_EVENT_KIND_CREATED,
        tenant=events_pb2.TenantSnapshot(
            tenant_id=tenant, plan=plan, version=1, tier=common_pb2.TIER_STARTER
        ),
    )
    await bus.publish(f"tenant.{tenant}.created", created, msg_id=created.event_id, tenant_id=tenant)
    # 10 WETH (20,000 USD) and 3 ODD for 24 hourly snapshots, then 5 WETH for 24 more.
    events = [snapshot(tenant, h, 10 * 10**18, 3 * 10**6) for h in range(24)]
    events += [snapshot(tenant, h, 5 * 10**18, 3 * 10**6) for h in range(24, 48)]
    for event in events:
        await bus.publish(f"protect.{tenant}.position", event, msg_id=event.event_id, tenant_id=tenant)
    # A redelivered snapshot changes nothing.
    await bus.publish(
        f"protect.{tenant}.position", events[0], msg_id=f"again-{events[0].event_id}", tenant_id=tenant
    )
    await bus.close()

    async def landed() -> bool:
        async with platform_transaction(analytics_service.pool) as conn:
            rows = await conn.fetchval(
                "SELECT count(*) FROM analytics.protection_snapshots WHERE tenant_id = $1", tenant
            )
            plans = await conn.fetchval(
                "SELECT count(*) FROM analytics.tenant_versions WHERE tenant_id = $1", tenant
            )
            return bool(rows == 48 and plans == 1)

    await wait_until(landed)
    channel, md = analytics_channel(tenant, Role.OWNER)
    async with channel:
        stub = analytics_pb2_grpc.AnalyticsServiceStub(channel)
        listed = await stub.ListInvoices(analytics_pb2.ListInvoicesRequest(), metadata=md)
    (january,) = [
        i
        for i in listed.invoices
        if (i.period.start.ToDatetime().year, i.period.start.ToDatetime().month) == (2026, 1)
    ]
    lines = [li for li in january.line_items if li.kind == LEVERAGE]
    # USD-years: (20,000 * 24 h + 10,000 * 24 h) / 8760 h = 720,000 / 8760 = 82.1917... -> 82.19;
    # 15% of it = 12.3285 -> 12.33.
    priced, unpriced = lines
    assert (priced.quantity.value, priced.rate_percent.value, priced.amount.amount) == (
        "82.19",
        "15",
        "12.33",
    )
    assert not priced.unpriced
    # 3 ODD for 48 hours = 144 / 8760 token-years = 0.01643835... -> 0.01643836, not billed.
    assert unpriced.unpriced and not unpriced.HasField("amount")
    assert (unpriced.token.address, unpriced.token_amount, unpriced.quantity.value) == (
        ODD.address,
        str(3 * 10**6),
        "0.01643836",
    )
    assert january.total.amount == "112.33"
    assert january.has_unpriced_profit
    assert january.status == analytics_pb2.INVOICE_STATUS_ISSUED
    assert any(source for source in january.price_sources)
