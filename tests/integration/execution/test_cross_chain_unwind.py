"""Cross-chain legs (issue 9, item 7): a two-leg trade whose second leg is forced to fail (its
minimum output cannot be met, so the router reverts it) leaves the first leg landed alone; the
execution unwinds it with a reverse swap on the first chain bounded by the maximum loss, and
settles FAILED naming the unwind, with a realised PnL equal to the chain deltas of the wallet
(every token on both chains, gas included); the session's, the portfolio's and the analytics
execution report's PnL for the strategy all equal it."""

from __future__ import annotations

from typing import Any

import pytest

from mevaas.analytics.v1 import analytics_pb2, analytics_pb2_grpc
from mevaas.common.v1 import common_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from mevaas_core.auth import Role
from mevaas_core.bus import Bus
from mevaas_local.devnet import Devnet
from tests.fixtures.execution import ExecutionHarness, approved, block_production, publish_decision, wait_for
from tests.integration.execution.cross_chain import final_execution, holdings, stranded_trade
from tests.integration.execution.helpers import clients, start_running, tenant_with_wallet

pytestmark = pytest.mark.integration

S = common_pb2


async def analytics_pnl(channel_for: Any, tenant_id: str, strategy_id: str, expected: int) -> tuple[int, int]:
    """(portfolio total PnL, analytics execution report realised profit) for the strategy, once
    analytics has recorded the final result."""
    channel, md = channel_for(tenant_id, Role.VIEWER)
    timeframe = S.Timeframe(preset=S.TIMEFRAME_PRESET_LAST_1_HOUR)
    async with channel:
        portfolio = portfolio_pb2_grpc.PortfolioServiceStub(channel)
        analytics = analytics_pb2_grpc.AnalyticsServiceStub(channel)

        async def both() -> tuple[int, int] | None:
            perf = await portfolio.GetPerformance(
                portfolio_pb2.GetPerformanceRequest(timeframe=timeframe, strategy_id=strategy_id), metadata=md
            )
            report = await analytics.GetExecutionReport(
                analytics_pb2.GetExecutionReportRequest(timeframe=timeframe, strategy_id=strategy_id),
                metadata=md,
            )
            if not perf.metrics or not report.report.profit:
                return None
            pnl = (int(perf.metrics[0].total_pnl), int(report.report.profit[0].realized_profit))
            return pnl if pnl == (expected, expected) else None

        try:
            found: tuple[int, int] = await wait_for(both, timeout_s=20)
        except TimeoutError:
            perf = await portfolio.GetPerformance(
                portfolio_pb2.GetPerformanceRequest(timeframe=timeframe, strategy_id=strategy_id), metadata=md
            )
            report = await analytics.GetExecutionReport(
                analytics_pb2.GetExecutionReportRequest(timeframe=timeframe, strategy_id=strategy_id),
                metadata=md,
            )
            raise AssertionError(
                f"portfolio {perf.metrics} / analytics {report.report.profit} != {expected}"
            ) from None
    return found


async def test_a_leg_landed_alone_is_unwound_and_pnl_equals_the_chain_deltas(
    execution_harness: ExecutionHarness,
    tenancy_service: Any,
    devnet: Devnet,
    bus: Bus,
    analytics_channel: Any,
) -> None:
    first, second = devnet.chains[0], devnet.chains[1]
    runtime = await execution_harness.start(unwind_max_loss_bps=300)
    tenant = await tenant_with_wallet(clients(tenancy_service), runtime, first)
    try:
        session = await start_running(tenant, devnet.chains)
        trade = await stranded_trade(tenant, session, first, second)
        opportunity, amount_in = trade.opportunity, trade.amount_in
        chain_a, chain_b = first.spec.chain_id, second.spec.chain_id
        before = {
            chain_a: await holdings(first, tenant.wallet),
            chain_b: await holdings(second, tenant.wallet),
        }
        # Published as the strategy would (analytics records it), then decided.
        await bus.publish(
            f"opp.{tenant.tenant_id}.{session.strategy_id}",
            opportunity,
            msg_id=opportunity.opportunity_id,
            tenant_id=tenant.tenant_id,
        )
        await publish_decision(bus, approved(opportunity, S.RiskLimits(max_slippage_bps=1)))

        async with block_production(first, second, block_time_s=0.3):
            done: execution_pb2.Execution = await wait_for(
                lambda: final_execution(tenant, session.session_id, opportunity.opportunity_id), timeout_s=90
            )
        after = {
            chain_a: await holdings(first, tenant.wallet),
            chain_b: await holdings(second, tenant.wallet),
        }
        assert done.status == S.EXECUTION_RESULT_STATUS_FAILED
        assert "leg 1 on chain" in done.error and "reverted" in done.error
        assert "leg 0 unwound on chain" in done.error, done.error
        assert len(done.tx_hashes) == 3  # both legs and the unwind
        deltas = {c: {k: after[c][k] - before[c][k] for k in before[c]} for c in before}
        # The unwind spent exactly what leg 0 bought: no USDC left over on either chain.
        assert deltas[chain_a]["USDC"] == 0 and deltas[chain_b]["USDC"] == 0 and deltas[chain_b]["WETH"] == 0
        # The round trip lost at most the configured bound.
        assert -amount_in * 300 // 10_000 <= deltas[chain_a]["WETH"] < 0
        # WETH is each chain's wrapped native token: gas counts 1:1 against it.
        chain_pnl = deltas[chain_a]["WETH"] + deltas[chain_a]["native"] + deltas[chain_b]["native"]
        assert int(done.realized_profit) == chain_pnl
        assert int(done.gas_cost) == -(deltas[chain_a]["native"] + deltas[chain_b]["native"])
        status = await tenant.stub.GetExecutionStatus(
            execution_pb2.GetExecutionStatusRequest(session_id=session.session_id)
        )
        assert int(status.realized_profit) == chain_pnl
        # One source of truth: portfolio performance and the analytics execution report agree.
        assert await analytics_pnl(analytics_channel, tenant.tenant_id, session.strategy_id, chain_pnl) == (
            chain_pnl,
            chain_pnl,
        )
        await tenant.stub.StopExecution(execution_pb2.StopExecutionRequest(session_id=session.session_id))
    finally:
        await tenant.client.close()
        await execution_harness.stop(runtime)
