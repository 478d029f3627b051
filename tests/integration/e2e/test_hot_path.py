"""End to end through the running fleet on the devnet (tenancy, strategy, risk, execution, each
its own runtime talking only over NATS and gRPC): a tenant with a funded wallet starts a strategy,
a test swap opens a price gap, and within a few blocks an arbitrage lands on chain with realised
profit equal to the expected profit to the wei; risk releases the reservation; status counts it.
Flash (capital-free) and own-capital (executor holds inventory) variants."""

from __future__ import annotations

import uuid

import pytest

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas_chain import abi
from mevaas_chain.amm.v2 import SwapLeg, amounts_out
from mevaas_core.bus import Bus
from mevaas_local.devnet import Devnet, DevnetChain
from mevaas_local.devnet.deploy import mint_tokens
from mevaas_sdk import MevaasClient
from tests.fixtures.e2e import (
    blocks_pass,
    collect_opportunities,
    create_strategy,
    default_wallet,
    executor_of,
    reservations_released,
    session_executions,
    start_running,
    stop_session,
    tenant_of,
)
from tests.fixtures.execution import block_production, execution_stub, fund, open_gap, wait_for
from tests.fixtures.strategy import strategy_config

pytestmark = pytest.mark.integration

S = common_pb2
LANDED = {S.EXECUTION_RESULT_STATUS_INCLUDED}


def _oriented(hop: events_pb2.RouteHop, r0: int, r1: int) -> SwapLeg:
    token0 = min(hop.token_in.lower(), hop.token_out.lower())
    return SwapLeg(r0, r1, hop.fee_bps) if hop.token_in.lower() == token0 else SwapLeg(r1, r0, hop.fee_bps)


def _gross(opportunity: events_pb2.Opportunity, legs: list[SwapLeg]) -> int:
    amount_in = int(opportunity.swap_cycle.amount_in)
    return amounts_out(amount_in, legs)[-1] - amount_in


async def gross_profit_at(chain: DevnetChain, opportunity: events_pb2.Opportunity, block: int) -> int:
    """The cycle's gross profit for the opportunity's input on the pools as they were after `block`,
    with the contracts' integer math."""
    legs = []
    for hop in opportunity.swap_cycle.hops:
        r0, r1 = abi.decode_reserves(await chain.client.call(hop.pool, abi.GET_RESERVES, block))
        legs.append(_oriented(hop, r0, r1))
    return _gross(opportunity, legs)


async def gross_profit_on_met_state(
    chain: DevnetChain, opportunity: events_pb2.Opportunity, tx_hash: str
) -> int:
    """The same math on the reserves the transaction actually met, rebuilt from its own logs: each
    pool's Sync (reserves after the swap) minus what its Swap took in plus what it paid out."""
    receipt = await chain.client.get_receipt(tx_hash)
    assert receipt is not None
    synced: dict[str, tuple[int, int]] = {}
    swapped: dict[str, tuple[int, int, int, int]] = {}
    for entry in receipt["logs"]:
        pool, topic, data = entry["address"].lower(), entry["topics"][0], bytes.fromhex(entry["data"][2:])
        if topic == abi.SYNC_TOPIC:
            synced[pool] = abi.decode_sync(data)
        elif topic == abi.SWAP_TOPIC:
            a0_in, a1_in, a0_out, a1_out = (
                int.from_bytes(data[i : i + 32], "big") for i in range(0, 128, 32)
            )
            swapped[pool] = (a0_in, a1_in, a0_out, a1_out)
    legs = []
    for hop in opportunity.swap_cycle.hops:
        (post0, post1), (a0_in, a1_in, a0_out, a1_out) = synced[hop.pool.lower()], swapped[hop.pool.lower()]
        legs.append(_oriented(hop, post0 - a0_in + a0_out, post1 - a1_in + a1_out))
    return _gross(opportunity, legs)


async def run_arbitrage(client: MevaasClient, devnet: Devnet, bus: Bus, strategy_type: int) -> None:
    chain = devnet.main
    execution = execution_stub(client)
    wallet = await default_wallet(client)
    tenant_id = await tenant_of(client)
    for each in devnet.chains:
        await fund(each, wallet.address)
    config = strategy_config(
        chain.config,
        name=f"arb-{uuid.uuid4().hex[:8]}",
        type_=strategy_type,
        symbols=("WETH", "USDC", "USDT", "DAI"),
    )
    strategy = await create_strategy(client, config)
    opportunities = await collect_opportunities(bus, tenant_id, strategy.strategy_id)
    session_id = ""
    stopped = False
    try:
        async with block_production(*devnet.chains, block_time_s=0.3):
            session_id = await start_running(client, strategy.strategy_id)
            if strategy_type == S.STRATEGY_TYPE_DEX_ARBITRAGE:
                await mint_tokens(
                    chain.client,
                    chain.transact,
                    chain.deployment,
                    deployer=chain.deployer,
                    to=await executor_of(client, wallet.address, chain.spec.chain_id),
                    amounts={"WETH": 50 * 10**18},
                )
            # The strategy engine learns the session is RUNNING from exec.<tenant>.session; give
            # it a block to load it, then open the gap with a test swap.
            await blocks_pass(chain)
            await open_gap(chain, share=15)

            async def landed() -> execution_pb2.Execution | None:
                return next(
                    (e for e in await session_executions(client, session_id) if e.status in LANDED), None
                )

            try:
                included: execution_pb2.Execution = await wait_for(landed, timeout_s=60)
            except TimeoutError:
                # Say what became of the opportunities, to tell a slow pipeline from a closed gap.
                made = [
                    (S.ExecutionResultStatus.Name(e.status), e.error)
                    for e in await session_executions(client, session_id)
                ]
                raise AssertionError(
                    f"nothing landed: {len(opportunities.items)} opportunities, executions {made}"
                ) from None
            opportunity = opportunities.items[included.opportunity_id]
            if strategy_type == S.STRATEGY_TYPE_FLASH_ARBITRAGE:
                # The flash provider the strategy chose travels with the action: the first pair's
                # flash swap, whose fee beyond the cycle's own swap is nothing.
                cycle = opportunity.swap_cycle
                assert (cycle.flash_provider, cycle.flash_fee) == ("uniswap_v2", "0")
                assert cycle.financing == events_pb2.FINANCING_FLASH_SWAP
            realized = int(included.realized_profit)
            assert realized > 0
            # Gas is paid in ETH and the profit is WETH. The strategy's expected profit is exact on
            # the pools at detection; the realised gross profit is exact on the reserves the
            # transaction met. When nothing traded in between (the usual case) the two are the same
            # figure; otherwise their difference is exactly that state change.
            detected_gross = await gross_profit_at(chain, opportunity, opportunity.detected_block)
            assert detected_gross == int(opportunity.expected_profit)
            met_gross = await gross_profit_on_met_state(chain, opportunity, included.tx_hashes[0])
            assert realized + int(included.gas_cost) == met_gross
            receipt = await chain.client.get_receipt(included.tx_hashes[0])
            assert receipt is not None and int(receipt["status"], 16) == 1
            await stop_session(client, session_id)
            stopped = True
            # Every other opportunity of the wave ends too (dropped or failed): nothing stays reserved.
            await reservations_released(client, session_id)
    finally:
        await opportunities.close()
        if session_id and not stopped:
            # A failed run must not leave a session trading on the shared devnet for later tests.
            await stop_session(client, session_id)
    status = await execution.GetExecutionStatus(
        execution_pb2.GetExecutionStatusRequest(session_id=session_id)
    )
    assert status.counts.included >= 1 and status.counts.executed >= status.counts.included
    assert status.counts.opportunities_received >= 1
    assert int(status.realized_profit) >= realized


async def test_flash_arbitrage_end_to_end(fleet_client: MevaasClient, devnet: Devnet, bus: Bus) -> None:
    await run_arbitrage(fleet_client, devnet, bus, S.STRATEGY_TYPE_FLASH_ARBITRAGE)


async def test_dex_arbitrage_with_own_capital_end_to_end(
    fleet_client: MevaasClient, devnet: Devnet, bus: Bus
) -> None:
    await run_arbitrage(fleet_client, devnet, bus, S.STRATEGY_TYPE_DEX_ARBITRAGE)
