"""Reports on a seeded history published onto NATS, against hand-computed values; tenant
isolation; roles; validation; redelivery."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest

from mevaas.analytics.v1 import analytics_pb2, analytics_pb2_grpc
from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from mevaas_core.auth import Role
from mevaas_core.bus import PLATFORM_TENANT, Bus
from mevaas_core.db import platform_transaction
from tests.fixtures.analytics import stamp, wait_until

pytestmark = pytest.mark.integration

CHAIN = 31337
TOKEN = common_pb2.Token(chain_id=CHAIN, address="0x" + "ee" * 20, symbol="WETH", decimals=18)
SANCTIONED = "0x" + "5a" * 20
T0 = datetime(2026, 1, 10, 10, 0, tzinfo=UTC)
E18 = 10**18
JANUARY = common_pb2.Timeframe(
    range=common_pb2.TimeRange(
        start=stamp(datetime(2026, 1, 1, tzinfo=UTC)), end=stamp(datetime(2026, 2, 1, tzinfo=UTC))
    )
)


def opportunity(
    tenant: str, at: datetime, expected: int, pool: str = "0x" + "aa" * 20
) -> events_pb2.Opportunity:
    opp_id = str(uuid.uuid4())
    return events_pb2.Opportunity(
        event_id=opp_id,
        tenant_id=tenant,
        occurred_at=stamp(at),
        opportunity_id=opp_id,
        strategy_id="s1",
        strategy_version=1,
        type=common_pb2.STRATEGY_TYPE_DEX_ARBITRAGE,
        chain_id=CHAIN,
        chain_ids=[CHAIN],
        swap_cycle=events_pb2.SwapCycleAction(
            hops=[
                events_pb2.RouteHop(
                    chain_id=CHAIN,
                    pool=pool,
                    token_in=TOKEN.address,
                    token_out=TOKEN.address,
                    dex="uniswap_v2",
                )
            ],
            amount_in=str(E18),
            financing=events_pb2.FINANCING_INVENTORY,
        ),
        expected_profit=str(expected),
        expected_profit_net_of_gas=str(expected),
        profit_token=TOKEN,
        detected_block=100,
        deadline_block=102,
        detected_at=stamp(at),
        block_seen_at=stamp(at - timedelta(milliseconds=10)),
    )


def decision(opp: events_pb2.Opportunity, approved: bool, code: int) -> events_pb2.RiskDecision:
    return events_pb2.RiskDecision(
        event_id=str(uuid.uuid4()),
        tenant_id=opp.tenant_id,
        occurred_at=stamp(opp.detected_at.ToDatetime(tzinfo=UTC) + timedelta(milliseconds=5)),
        opportunity_id=opp.opportunity_id,
        strategy_id=opp.strategy_id,
        outcome=events_pb2.RISK_DECISION_OUTCOME_APPROVED
        if approved
        else events_pb2.RISK_DECISION_OUTCOME_REJECTED,
        reason_code=code,  # type: ignore[arg-type]
        opportunity=opp,
    )


def result(
    opp: events_pb2.Opportunity,
    execution_id: str,
    status: int,
    *,
    realized: int = 0,
    gas: int = 0,
    cost: int = 0,
    submit_ms: int = 30,
) -> events_pb2.ExecutionResult:
    seen = opp.block_seen_at.ToDatetime(tzinfo=UTC)
    detected = opp.detected_at.ToDatetime(tzinfo=UTC)
    final = status != common_pb2.EXECUTION_RESULT_STATUS_SUBMITTED
    timestamps = events_pb2.HopTimestamps(
        block_seen_at=stamp(seen),
        opportunity_detected_at=stamp(detected),
        risk_decided_at=stamp(detected + timedelta(milliseconds=5)),
        submitted_at=stamp(detected + timedelta(milliseconds=submit_ms)),
    )
    if status == common_pb2.EXECUTION_RESULT_STATUS_INCLUDED:
        timestamps.included_at.CopyFrom(stamp(detected + timedelta(seconds=12)))
    return events_pb2.ExecutionResult(
        event_id=str(uuid.uuid4()),
        tenant_id=opp.tenant_id,
        occurred_at=stamp(detected + timedelta(seconds=12 if final else 0)),
        execution_id=execution_id,
        opportunity_id=opp.opportunity_id,
        strategy_id=opp.strategy_id,
        chain_id=CHAIN,
        status=status,  # type: ignore[arg-type]
        tx_hashes=["0x" + uuid.uuid4().hex * 2],
        block_number=101 if final else 0,
        gas_used=gas,
        gas_cost=str(cost),
        realized_profit=str(realized) if final else "",
        expected_profit=opp.expected_profit_net_of_gas,
        profit_token=TOKEN,
        submission_mode=common_pb2.SUBMISSION_MODE_PRIVATE_BUNDLE,
        timestamps=timestamps,
        wallet_address="0x" + "77" * 20,
    )


async def publish(bus: Bus, subject: str, message: Any) -> None:
    await bus.publish(
        subject, message, msg_id=message.event_id, tenant_id=message.tenant_id or PLATFORM_TENANT
    )


async def seed(bus: Bus, tenant: str) -> dict[str, events_pb2.Opportunity]:
    """Tenant history of January 2026 (hand-computed figures in the tests)."""
    plan = common_pb2.Plan(
        name="starter-standard",
        monthly_base_fee=common_pb2.Money(currency_code="USD", amount="25000.00"),
        performance_fee_percent=common_pb2.Decimal(value="20"),
        protection_fee_per_transaction=common_pb2.Money(currency_code="USD", amount="5.00"),
    )
    await publish(
        bus,
        f"tenant.{tenant}.created",
        events_pb2.TenantEvent(
            event_id=str(uuid.uuid4()),
            tenant_id=tenant,
            occurred_at=stamp(T0 - timedelta(days=9)),
            kind=events_pb2.TENANT_EVENT_KIND_CREATED,
            tenant=events_pb2.TenantSnapshot(
                tenant_id=tenant, plan=plan, version=1, tier=common_pb2.TIER_STARTER
            ),
        ),
    )
    won = opportunity(tenant, T0, 6 * E18 // 10)
    lost = opportunity(tenant, T0 + timedelta(days=1), 2 * E18 // 10)
    low = opportunity(tenant, T0 + timedelta(days=1, hours=1), 1)
    sanctioned = opportunity(tenant, T0 + timedelta(days=1, hours=2), 5 * E18, pool=SANCTIONED)
    pending = opportunity(tenant, T0 + timedelta(days=2), 3)
    for opp in (won, lost, low, sanctioned, pending):
        await publish(bus, f"opp.{tenant}.s1", opp)
    await publish(
        bus, f"risk.{tenant}.decision", decision(won, True, events_pb2.RISK_REASON_CODE_WITHIN_LIMITS)
    )
    await publish(
        bus, f"risk.{tenant}.decision", decision(lost, True, events_pb2.RISK_REASON_CODE_WITHIN_LIMITS)
    )
    await publish(
        bus, f"risk.{tenant}.decision", decision(low, False, events_pb2.RISK_REASON_CODE_MIN_PROFIT)
    )
    await publish(
        bus,
        f"risk.{tenant}.decision",
        decision(sanctioned, False, events_pb2.RISK_REASON_CODE_SANCTIONED_COUNTERPARTY),
    )
    S = common_pb2
    for message in (
        result(won, "x-won", S.EXECUTION_RESULT_STATUS_SUBMITTED, submit_ms=30),
        result(
            won,
            "x-won",
            S.EXECUTION_RESULT_STATUS_INCLUDED,
            realized=5 * E18 // 10,
            gas=100_000,
            cost=10**15,
            submit_ms=30,
        ),
        result(lost, "x-lost", S.EXECUTION_RESULT_STATUS_SUBMITTED, submit_ms=50),
        result(
            lost,
            "x-lost",
            S.EXECUTION_RESULT_STATUS_REVERTED,
            realized=-(10**16),
            gas=50_000,
            cost=10**16,
            submit_ms=50,
        ),
    ):
        await publish(bus, f"exec.{tenant}.result", message)
    await publish(
        bus,
        f"risk.{tenant}.breach",
        events_pb2.RiskBreach(
            event_id=str(uuid.uuid4()),
            tenant_id=tenant,
            occurred_at=stamp(T0 + timedelta(days=1, minutes=1)),
            breach_id=str(uuid.uuid4()),
            kind=events_pb2.BREACH_KIND_DAILY_LOSS_LIMIT,
            limit_value="1",
            observed_value=str(10**16),
        ),
    )
    await publish(
        bus,
        f"audit.{tenant}.record",
        events_pb2.AuditRecord(
            event_id=str(uuid.uuid4()),
            tenant_id=tenant,
            occurred_at=stamp(T0 - timedelta(days=1)),
            action="/mevaas.risk.v1.RiskService/UpdateLimits",
            resource=f"tenants/{tenant}/limits",
            outcome=events_pb2.AUDIT_OUTCOME_SUCCEEDED,
            service="risk",
        ),
    )
    # The tenant's clients' protected transactions: a private one (received, then included, then
    # refunded), a fair-ordering one, and one refused at ingress (sanctioned sender): two billed.
    for event in protected_events(tenant):
        await publish(bus, f"exec.{tenant}.protected", event)
    return {"won": won, "lost": lost, "low": low, "sanctioned": sanctioned, "pending": pending}


PROTECTED_HASHES = ["0x" + c * 64 for c in "abc"]


def protected_events(tenant: str) -> list[events_pb2.ProtectedTransactionEvent]:
    def event(index: int, status: str, **fields: Any) -> events_pb2.ProtectedTransactionEvent:
        return events_pb2.ProtectedTransactionEvent(
            event_id=str(uuid.uuid4()),
            tenant_id=tenant,
            occurred_at=stamp(T0 + timedelta(days=3, minutes=index)),
            protected_transaction_id=f"p{index}",
            chain_id=CHAIN,
            tx_hash=PROTECTED_HASHES[index],
            sender="0x" + "12" * 20,
            status=status,
            source="rpc",
            received_at=stamp(T0 + timedelta(days=3)),
            **fields,
        )

    return [
        event(0, "received"),
        event(0, "included", block_number=900),
        event(
            0,
            "included",
            block_number=900,
            refund_token=TOKEN.address,
            refund_amount=str(10**16),
            gas_refund_wei=str(10**15),
            backrun_tx_hash="0x" + "dd" * 32,
        ),
        event(0, "received"),  # a late redelivery changes nothing
        # Accepted under the tenant's earlier plan (3.00, fair-ordering 1.50): execution recorded
        # that fee then; the plan changed (5.00, the tier's 2.00) before the invoice. The late
        # events carrying no fee (or another figure) do not reprice it.
        event(
            1,
            "received",
            fair_ordering=True,
            protection_fee=common_pb2.Money(currency_code="USD", amount="4.50"),
            fair_ordering_fee=common_pb2.Money(currency_code="USD", amount="1.50"),
        ),
        event(1, "submitted", fair_ordering=True),
        event(
            1,
            "submitted",
            fair_ordering=True,
            protection_fee=common_pb2.Money(currency_code="USD", amount="9.00"),
            fair_ordering_fee=common_pb2.Money(currency_code="USD", amount="2.00"),
        ),
        event(
            2,
            "failed",
            error="sanctioned counterparty (RISK_REASON_CODE_SANCTIONED_COUNTERPARTY): ...",
            reason_code=events_pb2.RISK_REASON_CODE_SANCTIONED_COUNTERPARTY,
            sanctioned=[events_pb2.SanctionedParty(address=SANCTIONED, list_name="TEST-LIST", entity="Demo")],
        ),
    ]


@pytest.fixture(scope="module")
async def seeded(
    analytics_service: Any, nats_server: str
) -> tuple[str, str, dict[str, events_pb2.Opportunity]]:
    bus = await Bus.connect(nats_server, client_name="analytics-seed")
    await bus.ensure_streams()
    tenant_a, tenant_b = f"ta-{uuid.uuid4().hex[:8]}", f"tb-{uuid.uuid4().hex[:8]}"
    opps = await seed(bus, tenant_a)
    other = opportunity(tenant_b, T0, 9 * E18)
    await publish(bus, f"opp.{tenant_b}.s1", other)
    await publish(
        bus,
        f"exec.{tenant_b}.result",
        result(other, "x-b", common_pb2.EXECUTION_RESULT_STATUS_INCLUDED, realized=E18),
    )
    await bus.close()

    async def landed() -> bool:
        async with platform_transaction(analytics_service.pool) as conn:
            results = await conn.fetchval(
                "SELECT count(*) FROM analytics.execution_results WHERE tenant_id = ANY($1)",
                [tenant_a, tenant_b],
            )
            others = await conn.fetchval(
                "SELECT (SELECT count(*) FROM analytics.decisions WHERE tenant_id = $1)"
                " + (SELECT count(*) FROM analytics.audit_records WHERE tenant_id = $1)"
                " + (SELECT count(*) FROM analytics.breaches WHERE tenant_id = $1)"
                " + (SELECT count(*) FROM analytics.tenant_versions WHERE tenant_id = $1)"
                " + (SELECT count(*) FROM analytics.opportunities WHERE tenant_id = $1)",
                tenant_a,
            )
            refunded = await conn.fetchval(
                "SELECT count(*) FROM analytics.protected_transactions WHERE tenant_id = $1 "
                "AND (refunded_at IS NOT NULL OR protected_transaction_id <> 'p0')",
                tenant_a,
            )
            return bool(results == 5 and others == 4 + 1 + 1 + 1 + 5 and refunded == 3)

    await wait_until(landed)
    return tenant_a, tenant_b, opps


async def test_execution_report_matches_hand_computed_figures(seeded: Any, analytics_channel: Any) -> None:
    tenant, _, _ = seeded
    channel, md = analytics_channel(tenant, Role.VIEWER)
    async with channel:
        stub = analytics_pb2_grpc.AnalyticsServiceStub(channel)
        response = await stub.GetExecutionReport(
            analytics_pb2.GetExecutionReportRequest(timeframe=JANUARY), metadata=md
        )
    report = response.report
    assert (report.opportunities, report.approved, report.rejected) == (5, 0, 2)
    assert (report.submitted, report.included, report.reverted) == (0, 1, 1)
    assert report.inclusion_rate == 0.5
    assert [(p.token.address, p.expected_profit, p.realized_profit) for p in report.profit] == [
        (TOKEN.address, str(8 * E18 // 10), str(49 * E18 // 100))
    ]
    assert report.gas_used == 150_000
    assert report.gas_cost_wei == str(11 * 10**15)
    assert dict(report.rejections_by_reason) == {
        "RISK_REASON_CODE_MIN_PROFIT": 1,
        "RISK_REASON_CODE_SANCTIONED_COUNTERPARTY": 1,
    }
    latency = {entry.hop: entry for entry in report.latency}
    # block seen 10 ms before detection; submissions 30 and 50 ms after detection.
    assert (latency["block_to_submission"].count, latency["block_to_submission"].p50_ms) == (2, 40.0)
    assert latency["block_to_submission"].max_ms == 60.0
    assert latency["submission_to_inclusion"].p50_ms == 12_000 - 30
    assert set(response.by_strategy) == {"s1"}


async def test_opportunities_are_tenant_isolated_filtered_and_paginated(
    seeded: Any, analytics_channel: Any
) -> None:
    tenant_a, tenant_b, opps = seeded
    channel, md = analytics_channel(tenant_a, Role.TRADER)
    async with channel:
        stub = analytics_pb2_grpc.AnalyticsServiceStub(channel)
        first = await stub.ListOpportunities(
            analytics_pb2.ListOpportunitiesRequest(page=common_pb2.PageRequest(page_size=3)), metadata=md
        )
        second = await stub.ListOpportunities(
            analytics_pb2.ListOpportunitiesRequest(
                page=common_pb2.PageRequest(page_size=3, page_token=first.page.next_page_token)
            ),
            metadata=md,
        )
        included = await stub.ListOpportunities(
            analytics_pb2.ListOpportunitiesRequest(status=analytics_pb2.OPPORTUNITY_STATUS_INCLUDED),
            metadata=md,
        )
        rich = await stub.ListOpportunities(
            analytics_pb2.ListOpportunitiesRequest(min_expected_profit=str(E18)), metadata=md
        )
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.ListOpportunities(
                analytics_pb2.ListOpportunitiesRequest(
                    page=common_pb2.PageRequest(page_size=5000), min_expected_profit="x"
                ),
                metadata=md,
            )
    ids = [r.opportunity.opportunity_id for r in [*first.opportunities, *second.opportunities]]
    expected_order = [opps[k].opportunity_id for k in ("pending", "sanctioned", "low", "lost", "won")]
    assert ids == expected_order  # newest first, nothing of tenant B
    assert not second.page.next_page_token
    assert [
        (r.opportunity.opportunity_id, r.realized_profit, r.execution_id) for r in included.opportunities
    ] == [(opps["won"].opportunity_id, str(E18 // 2), "x-won")]
    assert [r.opportunity.opportunity_id for r in rich.opportunities] == [opps["sanctioned"].opportunity_id]
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page.page_size" in (bad.value.details() or "") and "min_expected_profit" in (
        bad.value.details() or ""
    )

    channel_b, md_b = analytics_channel(tenant_b, Role.VIEWER)
    async with channel_b:
        stub_b = analytics_pb2_grpc.AnalyticsServiceStub(channel_b)
        listed = await stub_b.ListOpportunities(analytics_pb2.ListOpportunitiesRequest(), metadata=md_b)
        report = await stub_b.GetExecutionReport(
            analytics_pb2.GetExecutionReportRequest(timeframe=JANUARY), metadata=md_b
        )
    assert len(listed.opportunities) == 1 and listed.opportunities[0].opportunity.tenant_id == tenant_b
    assert (report.report.opportunities, report.report.included) == (1, 1)


async def test_compliance_report_and_roles(seeded: Any, analytics_channel: Any) -> None:
    tenant, _, opps = seeded
    channel, md = analytics_channel(tenant, Role.COMPLIANCE)
    async with channel:
        stub = analytics_pb2_grpc.AnalyticsServiceStub(channel)
        response = await stub.GetComplianceReport(
            analytics_pb2.GetComplianceReportRequest(timeframe=JANUARY), metadata=md
        )
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.GetComplianceReport(analytics_pb2.GetComplianceReportRequest(), metadata=md)
    report = response.report
    assert [r.action for r in report.audit_trail] == ["/mevaas.risk.v1.RiskService/UpdateLimits"]
    assert (report.risk_decisions.approved, report.risk_decisions.rejected) == (2, 2)
    assert [d.opportunity_id for d in report.rejected_decisions] == [
        opps["sanctioned"].opportunity_id,
        opps["low"].opportunity_id,
    ]
    assert [b.kind for b in report.breaches] == [events_pb2.BREACH_KIND_DAILY_LOSS_LIMIT]
    assert [
        (h.address, h.list_name, h.opportunity_id, h.action) for h in report.sanctioned_counterparty_hits
    ] == [
        (SANCTIONED, "TEST-LIST", opps["sanctioned"].opportunity_id, "rejected"),
        # Refused at the Protect RPC's ingress (a client's transaction, not an opportunity).
        (SANCTIONED, "TEST-LIST", "", "refused at protected-transaction ingress"),
    ]
    assert report.sanctioned_counterparty_hits[1].tx_hash == PROTECTED_HASHES[2]
    assert report.retention_policy.audit_retention_days == 2555
    assert missing.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    viewer, vmd = analytics_channel(tenant, Role.VIEWER)
    async with viewer:
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await analytics_pb2_grpc.AnalyticsServiceStub(viewer).GetComplianceReport(
                analytics_pb2.GetComplianceReportRequest(timeframe=JANUARY), metadata=vmd
            )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_invoice_of_january_from_plan_and_valued_profit(seeded: Any, analytics_channel: Any) -> None:
    tenant, _, _ = seeded
    channel, md = analytics_channel(tenant, Role.OWNER)
    async with channel:
        stub = analytics_pb2_grpc.AnalyticsServiceStub(channel)
        listed = await stub.ListInvoices(analytics_pb2.ListInvoicesRequest(), metadata=md)
        january = next(
            i
            for i in listed.invoices
            if i.period.start.ToDatetime().month == 1 and i.period.start.ToDatetime().year == 2026
        )
        again = await stub.GetInvoice(
            analytics_pb2.GetInvoiceRequest(invoice_id=january.invoice_id), metadata=md
        )
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.GetInvoice(analytics_pb2.GetInvoiceRequest(invoice_id="nope"), metadata=md)
    # 0.49 WETH at the configured 2000 USD = 980.00; 20 % = 196.00; the clients' 2 accepted
    # protected transactions (the strategy's own private bundles are not billed as such, the one
    # refused at ingress is not billed): p0, with no fee recorded at acceptance, at the plan's
    # 5.00 now; p1 at the 3.00 + fair-ordering 1.50 execution recorded when it accepted it under
    # the earlier plan (not the plan's 5.00 and the starter tier's 2.00 at invoice time).
    assert [
        (li.kind, li.quantity.value, li.unit_price.amount, li.amount.amount) for li in january.line_items
    ] == [
        (analytics_pb2.LINE_ITEM_KIND_BASE_FEE, "1", "25000.00", "25000.00"),
        (analytics_pb2.LINE_ITEM_KIND_PERFORMANCE_FEE, "980.00", "", "196.00"),
        (analytics_pb2.LINE_ITEM_KIND_PROTECTION_FEE, "1", "5.00", "5.00"),
        (analytics_pb2.LINE_ITEM_KIND_PROTECTION_FEE, "1", "3.00", "3.00"),
        (analytics_pb2.LINE_ITEM_KIND_FAIR_ORDERING_FEE, "1", "1.50", "1.50"),
    ]
    assert january.total.amount == "25205.50"
    # The refund paid to the private one's sender: 0.01 of a token whose decimals this analytics
    # does not know (no chain registry entry), so it is listed unpriced, never as 0 USD.
    (refund,) = january.refunds_paid
    assert (refund.token, refund.count, refund.amount, refund.gas_refund) == (
        TOKEN.address,
        1,
        str(10**16),
        str(10**15),
    )
    assert refund.unpriced and "decimals" in refund.unpriced_reason and not refund.HasField("value")
    assert january.status == analytics_pb2.INVOICE_STATUS_ISSUED
    assert again.invoice == january  # issued once, frozen
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_performance_positions_and_exports(seeded: Any, analytics_channel: Any) -> None:
    tenant, _, _ = seeded
    channel, md = analytics_channel(tenant, Role.VIEWER)
    async with channel:
        portfolio = portfolio_pb2_grpc.PortfolioServiceStub(channel)
        perf = await portfolio.GetPerformance(
            portfolio_pb2.GetPerformanceRequest(timeframe=JANUARY), metadata=md
        )
        analytics = analytics_pb2_grpc.AnalyticsServiceStub(channel)
        csv_export = await analytics.ExportReport(
            analytics_pb2.ExportReportRequest(
                format=analytics_pb2.EXPORT_FORMAT_CSV,
                custom=analytics_pb2.ReportTemplate(
                    metrics=[
                        analytics_pb2.REPORT_METRIC_OPPORTUNITIES,
                        analytics_pb2.REPORT_METRIC_REALIZED_PROFIT,
                    ],
                    group_by=[analytics_pb2.REPORT_DIMENSION_DAY],
                    timeframe=JANUARY,
                ),
            ),
            metadata=md,
        )
        json_export = await analytics.ExportReport(
            analytics_pb2.ExportReportRequest(
                format=analytics_pb2.EXPORT_FORMAT_JSON,
                execution=analytics_pb2.GetExecutionReportRequest(timeframe=JANUARY),
            ),
            metadata=md,
        )
    metrics = perf.metrics[0]
    assert (metrics.total_pnl, metrics.gross_profit, metrics.gross_loss) == (
        str(49 * E18 // 100),
        str(E18 // 2),
        str(10**16),
    )
    assert (metrics.trade_count, metrics.winning_trades, metrics.losing_trades, metrics.win_rate) == (
        2,
        1,
        1,
        0.5,
    )
    assert metrics.max_drawdown == str(10**16)
    # January has 31 days: one +0.5, one -0.01, 29 zero days.
    points = perf.daily_pnl[0].points
    assert (
        len(points) == 31
        and points[9].pnl == str(E18 // 2)
        and points[10].cumulative_pnl == str(49 * E18 // 100)
    )
    lines = csv_export.content.decode().splitlines()
    token = f"{CHAIN}:{TOKEN.address}"
    assert lines == [
        "REPORT_DIMENSION_DAY,REPORT_DIMENSION_TOKEN,REPORT_METRIC_OPPORTUNITIES,REPORT_METRIC_REALIZED_PROFIT",
        f"2026-01-10,{token},1,{E18 // 2}",
        f"2026-01-11,{token},3,{-(10**16)}",
        f"2026-01-12,{token},1,0",
    ]
    document = json.loads(json_export.content)
    assert document["report"]["included"] == "1"
    assert json_export.content_type == "application/json"


async def test_rebalance_is_idempotent_and_commands_execution(
    seeded: Any, analytics_channel: Any, nats_server: str
) -> None:
    tenant, _, _ = seeded
    received: list[events_pb2.RebalanceCommand] = []
    bus = await Bus.connect(nats_server, client_name="rebalance-watch")

    async def on_command(message: events_pb2.RebalanceCommand, _: Any) -> None:
        received.append(message)

    subscription = await bus.subscribe(
        "EXEC",
        f"watch-{uuid.uuid4().hex[:6]}",
        f"exec.{tenant}.rebalance",
        events_pb2.RebalanceCommand,
        on_command,
    )
    request = portfolio_pb2.RebalanceRequest(
        idempotency_key="rb-1",
        targets=[common_pb2.RebalanceTarget(token=TOKEN, target_amount=str(E18))],
        max_slippage_bps=50,
    )
    channel, md = analytics_channel(tenant, Role.TRADER)
    viewer, vmd = analytics_channel(tenant, Role.VIEWER)
    async with channel, viewer:
        stub = portfolio_pb2_grpc.PortfolioServiceStub(channel)
        first = await stub.Rebalance(request, metadata=md)
        replay = await stub.Rebalance(request, metadata=md)
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.Rebalance(portfolio_pb2.RebalanceRequest(idempotency_key="rb-2"), metadata=md)
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await portfolio_pb2_grpc.PortfolioServiceStub(viewer).Rebalance(request, metadata=vmd)
        fetched = await stub.GetRebalance(
            portfolio_pb2.GetRebalanceRequest(rebalance_id=first.result.rebalance_id), metadata=md
        )

    async def delivered() -> bool:
        return len(received) >= 1

    await wait_until(delivered)
    await subscription.stop()
    await bus.close()
    assert replay.result == first.result and fetched.result == first.result
    assert first.result.status == portfolio_pb2.REBALANCE_STATUS_SUBMITTED
    assert [c.rebalance_id for c in received] == [first.result.rebalance_id]
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {"targets", "max_slippage_bps"} <= {
        f.split("[")[0] for f in (bad.value.details() or "").replace(";", ":").split(": ") if f
    }
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
