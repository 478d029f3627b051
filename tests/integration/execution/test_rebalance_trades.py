"""Rebalance trades (issue 9, item 8): the ``rebalance_trade`` executor runs each trade as a
Router02 swap from the tenant's wallet, paid from its inventory, for the rebalance that owns it
(test_rebalances.py runs whole rebalances; here each trade's decision is published by hand). Two trades land on chain with
the wallet's balances moving by exactly the executed amounts (to the wei, gas included); a trade
larger than the wallet holds is refused FAILED naming the shortfall and moves nothing."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas_core.bus import Bus
from mevaas_core.db import tenant_transaction
from mevaas_execution.rebalancing import store
from mevaas_execution.rebalancing.domain.trades import trade_opportunity_id
from mevaas_local.devnet import Devnet, DevnetChain
from mevaas_local.devnet.deploy import mint_tokens
from tests.fixtures.e2e import FINAL
from tests.fixtures.execution import ExecutionHarness, approved, block_production, publish_decision, wait_for
from tests.integration.execution.cross_chain import holdings, pool_quote
from tests.integration.execution.helpers import TenantSession, clients, tenant_with_wallet

pytestmark = pytest.mark.integration

S = common_pb2
ETHER = 10**18


async def trade(
    chain: DevnetChain,
    tenant: TenantSession,
    rebalance_id: str,
    index: int,
    amount_in: int,
    token_in: str,
    token_out: str,
    min_out: int,
) -> events_pb2.Opportunity:
    pool, quoted = await pool_quote(chain, token_in, token_out, amount_in)
    head = await chain.client.block_number()
    now = Timestamp()
    now.GetCurrentTime()
    weth = chain.deployment.token("WETH").address
    return events_pb2.Opportunity(
        event_id=str(uuid.uuid4()),
        tenant_id=tenant.tenant_id,
        opportunity_id=trade_opportunity_id(rebalance_id, index),
        strategy_id="",
        chain_id=chain.spec.chain_id,
        chain_ids=[chain.spec.chain_id],
        rebalance_trade=events_pb2.RebalanceTradeAction(
            rebalance_id=rebalance_id,
            trade_index=index,
            hops=[
                events_pb2.RouteHop(
                    chain_id=chain.spec.chain_id,
                    pool=pool.address,
                    dex=pool.dex,
                    token_in=token_in,
                    token_out=token_out,
                    amount_in=str(amount_in),
                    amount_out=str(quoted),
                    fee_bps=30,
                )
            ],
            amount_in=str(amount_in),
            min_amount_out=str(min_out or quoted),
        ),
        expected_profit="0",
        expected_profit_net_of_gas="0",
        profit_token=S.Token(chain_id=chain.spec.chain_id, address=weth, symbol="WETH", decimals=18),
        gas_estimate=300_000,
        gas_price=str(10**9),
        detected_block=head,
        occurred_at=now,
        detected_at=now,
        deadline_block=head + 20,
        submission_mode=S.SUBMISSION_MODE_PUBLIC_MEMPOOL,
    )


async def own(runtime: Any, tenant: TenantSession, action: events_pb2.RebalanceTradeAction) -> None:
    """The trade's owner: its rebalance, executing this very trade (as the runner leaves it)."""
    command = events_pb2.RebalanceCommand(rebalance_id=action.rebalance_id, tenant_id=tenant.tenant_id)
    async with tenant_transaction(runtime.pool, tenant.tenant_id) as conn:
        row = await store.get_rebalance(conn, tenant.tenant_id, action.rebalance_id)
        if row is None:
            row = await store.insert_rebalance(
                conn, tenant.tenant_id, action.rebalance_id, tenant.wallet, command.SerializeToString()
            )
        assert row is not None
        changes = {"state": "executing", "current_trade": action.trade_index, "trade_deadline": 10**12}
        assert await store.update_rebalance(
            conn, tenant.tenant_id, action.rebalance_id, row["sequence"], changes
        )


async def run(
    bus: Bus, chain: DevnetChain, tenant: TenantSession, runtime: Any, opportunity: events_pb2.Opportunity
) -> execution_pb2.Execution:
    await own(runtime, tenant, opportunity.rebalance_trade)
    await publish_decision(bus, approved(opportunity, S.RiskLimits(max_slippage_bps=1)))

    async def final() -> execution_pb2.Execution | None:
        listed = await tenant.stub.ListExecutions(execution_pb2.ListExecutionsRequest())
        found = [e for e in listed.executions if e.opportunity_id == opportunity.opportunity_id]
        return found[0] if found and found[0].status in FINAL else None

    async with block_production(chain, block_time_s=0.3):
        done: execution_pb2.Execution = await wait_for(final, timeout_s=60)
    return done


async def test_two_rebalance_trades_land_and_an_over_balance_trade_moves_nothing(
    execution_harness: ExecutionHarness, tenancy_service: Any, devnet: Devnet, bus: Bus
) -> None:
    chain = devnet.chains[0]
    # The trades' rebalance is set up by hand (own): the runner, which would plan and move it on
    # by itself, looks at rebalances once at start and then only when a command arrives.
    runtime = await execution_harness.start(rebalance_poll_seconds=3600)
    tenant = await tenant_with_wallet(clients(tenancy_service), runtime, chain)
    try:
        await mint_tokens(
            chain.client,
            chain.transact,
            chain.deployment,
            deployer=chain.deployer,
            to=tenant.wallet,
            amounts={"WETH": 10 * ETHER, "USDC": 100_000 * 10**6},
        )
        weth, usdc = chain.deployment.token("WETH").address, chain.deployment.token("USDC").address
        rebalance_id = str(uuid.uuid4())
        executed: list[execution_pb2.Execution] = []
        before = await holdings(chain, tenant.wallet)
        # Sequential, so each quote is exactly what the pool pays (nothing else trades on it).
        sell = await trade(chain, tenant, rebalance_id, 0, ETHER // 10, weth, usdc, 0)
        sold_for = int(sell.rebalance_trade.min_amount_out)
        executed.append(await run(bus, chain, tenant, runtime, sell))
        buy = await trade(chain, tenant, rebalance_id, 1, 500 * 10**6, usdc, weth, 0)
        bought = int(buy.rebalance_trade.min_amount_out)
        executed.append(await run(bus, chain, tenant, runtime, buy))
        after = await holdings(chain, tenant.wallet)
        for done in executed:
            assert done.status == S.EXECUTION_RESULT_STATUS_INCLUDED, done.error
            assert done.tx_hashes, done
            # Not a trade for profit: it costs its gas (WETH is the wrapped native, 1:1).
            assert int(done.realized_profit) == -int(done.gas_cost) < 0
        assert after["WETH"] - before["WETH"] == bought - ETHER // 10
        assert after["USDC"] - before["USDC"] == sold_for - 500 * 10**6
        assert after["native"] - before["native"] == -sum(int(done.gas_cost) for done in executed)
        for done in executed:
            receipt = await chain.client.request("eth_getTransactionReceipt", [done.tx_hashes[-1]])
            assert int(receipt["status"], 16) == 1

        # More than the wallet holds: refused before anything is signed.
        held = after["WETH"]
        too_much = await trade(chain, tenant, rebalance_id, 2, held + 1, weth, usdc, 1)
        refused = await run(bus, chain, tenant, runtime, too_much)
        assert refused.status == S.EXECUTION_RESULT_STATUS_FAILED
        assert f"inventory short: the wallet holds {held} of {weth}" in refused.error, refused.error
        assert f"the trade needs {held + 1}" in refused.error
        assert not refused.tx_hashes
        assert await holdings(chain, tenant.wallet) == after
    finally:
        await tenant.client.close()
        await execution_harness.stop(runtime)
