"""Open-position alert (issue 9, item 7): a cross-chain trade whose second leg is forced to fail
leaves the first leg landed alone; with no loss tolerated the reverse swap cannot land (a round
trip always pays the pools' fees), so what the first leg bought stays on its chain. The execution
settles FAILED naming the open position, and exactly one OpenPosition alert on
``exec.<tenant>.position`` names the execution, the leg, the chain, the token and the amount,
which equals what the wallet still holds of it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mevaas.common.v1 import common_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas_core.bus import Bus
from mevaas_local.devnet import Devnet
from tests.fixtures.execution import ExecutionHarness, approved, block_production, publish_decision, wait_for
from tests.integration.execution.cross_chain import final_execution, holdings, stranded_trade
from tests.integration.execution.helpers import clients, start_running, tenant_with_wallet

pytestmark = pytest.mark.integration

S = common_pb2


async def test_an_unwind_that_cannot_land_raises_an_open_position_alert(
    execution_harness: ExecutionHarness, tenancy_service: Any, devnet: Devnet, bus: Bus
) -> None:
    first, second = devnet.chains[0], devnet.chains[1]
    runtime = await execution_harness.start(unwind_max_loss_bps=0, unwind_window_blocks=3)
    tenant = await tenant_with_wallet(clients(tenancy_service), runtime, first)
    alerts: list[execution_pb2.OpenPosition] = []

    async def collect(msg: Any) -> None:
        alerts.append(execution_pb2.OpenPosition.FromString(msg.data))

    subscription = await bus.nc.subscribe(f"exec.{tenant.tenant_id}.position", cb=collect)
    try:
        session = await start_running(tenant, devnet.chains)
        trade = await stranded_trade(tenant, session, first, second)
        opportunity, bought = trade.opportunity, trade.bought
        before = await holdings(first, tenant.wallet)
        await publish_decision(bus, approved(opportunity, S.RiskLimits(max_slippage_bps=1)))

        async with block_production(first, second, block_time_s=0.3):
            done: execution_pb2.Execution = await wait_for(
                lambda: final_execution(tenant, session.session_id, opportunity.opportunity_id), timeout_s=90
            )
        assert done.status == S.EXECUTION_RESULT_STATUS_FAILED
        assert "open position: leg 0's" in done.error, done.error

        async def alerted() -> list[execution_pb2.OpenPosition] | None:
            return alerts or None

        (alert,) = await wait_for(alerted, timeout_s=20)
        after = await holdings(first, tenant.wallet)
        # What leg 0 bought is still held: the alert names exactly that.
        assert after["USDC"] - before["USDC"] == bought
        assert (alert.execution_id, alert.session_id, alert.strategy_id) == (
            done.execution_id,
            session.session_id,
            session.strategy_id,
        )
        assert (alert.leg_index, alert.chain_id, alert.amount) == (0, first.spec.chain_id, str(bought))
        assert alert.token_address.lower() == trade.usdc_first.lower()
        assert alert.wallet_address.lower() == tenant.wallet.lower()
        assert alert.reason.startswith("unwind "), alert.reason
        # Published once, with the settlement: nothing more arrives.
        await asyncio.sleep(1)
        assert len(alerts) == 1
        await tenant.stub.StopExecution(execution_pb2.StopExecutionRequest(session_id=session.session_id))
    finally:
        await subscription.unsubscribe()
        await tenant.client.close()
        await execution_harness.stop(runtime)
