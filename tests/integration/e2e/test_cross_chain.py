"""cross_chain_arbitrage end to end through the running fleet on the two devnet chains (31337 and
31338): a tenant with a wallet funded on both chains (gas and token inventory) starts the
strategy (executors deployed on both), a test swap makes WETH cheaper on one chain than on the other, and:

* the strategy engine publishes a two-leg opportunity, one swap per chain, whose legs chain (the
  sell leg spends exactly what the buy leg yields) and whose expected profit is exact, to the wei,
  on both chains' pools;
* risk approves it and reserves the buy leg's input, and releases the reservation once execution
  has finished with it;
* execution trades it from the wallet's inventory on both chains (one router swap per chain, signed
  and recorded together, sent together): included on both chains with realised profit > 0.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

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
from tests.fixtures.devnet import reserves, skew_pool
from tests.fixtures.e2e import (
    FINAL,
    blocks_pass,
    collect_decisions,
    collect_opportunities,
    create_strategy,
    default_wallet,
    reservations_released,
    start_running,
    stop_session,
    tenant_of,
)
from tests.fixtures.execution import block_production, execution_stub, fund, wait_for
from tests.fixtures.strategy import strategy_config

pytestmark = pytest.mark.integration

S = common_pb2
# Whole tokens the wallet holds on each chain, well above what one trade moves (max_position is
# 5 WETH, the other leg's stablecoin amount is worth as much).
INVENTORY = {"WETH": 100, "USDC": 1_000_000, "USDT": 1_000_000, "DAI": 1_000_000}


@dataclass
class CrossChainRun:
    opportunity: events_pb2.Opportunity
    decision: events_pb2.RiskDecision
    execution: execution_pb2.Execution


async def leg_output(chain: DevnetChain, hop: events_pb2.RouteHop, amount_in: int, block: int) -> int:
    """What the hop's pool pays for `amount_in` as it was after `block`, with the contracts' math."""
    r0, r1 = abi.decode_reserves(await chain.client.call(hop.pool, abi.GET_RESERVES, block))
    token0 = min(hop.token_in.lower(), hop.token_out.lower())
    leg = SwapLeg(r0, r1, hop.fee_bps) if hop.token_in.lower() == token0 else SwapLeg(r1, r0, hop.fee_bps)
    return amounts_out(amount_in, [leg])[-1]


async def run_cross_chain(client: MevaasClient, devnet: Devnet, bus: Bus) -> CrossChainRun:
    """Start a cross-chain strategy, open a gap between the chains, and return the first
    opportunity that reached execution with its risk decision and its execution (final)."""
    first, second = devnet.chains[0], devnet.chains[1]
    by_chain = {c.spec.chain_id: c for c in devnet.chains}
    execution = execution_stub(client)
    wallet = await default_wallet(client)
    tenant_id = await tenant_of(client)
    for chain in devnet.chains:
        await fund(chain, wallet.address)
        # Inventory on both chains: each leg is paid from what the wallet holds on its chain.
        await mint_tokens(
            chain.client,
            chain.transact,
            chain.deployment,
            deployer=chain.deployer,
            to=wallet.address,
            amounts={
                token.symbol: INVENTORY[token.symbol] * 10**token.decimals
                for token in chain.deployment.tokens
                if token.symbol in INVENTORY
            },
        )
    config = strategy_config(
        first.config,
        name=f"xchain-{uuid.uuid4().hex[:8]}",
        type_=S.STRATEGY_TYPE_CROSS_CHAIN_ARBITRAGE,
        symbols=("WETH", "USDC", "USDT", "DAI"),
        extra_chains=(second.config,),
    )
    strategy = await create_strategy(client, config)
    collected = await collect_opportunities(bus, tenant_id, strategy.strategy_id)
    collected_decisions = await collect_decisions(bus, tenant_id)
    opportunities: dict[str, events_pb2.Opportunity] = collected.items
    decisions: dict[str, events_pb2.RiskDecision] = collected_decisions.items
    session_id = ""
    try:
        async with block_production(*devnet.chains, block_time_s=0.3):
            session_id = await start_running(client, strategy.strategy_id)
            await blocks_pass(first)
            # Differences earlier tests left between the chains are traded first; the gap opens
            # once nothing is in flight and no new execution appeared for a few blocks.
            quiet = {"count": -1, "since": 0}

            async def quiet_market() -> bool:
                listed = await execution.ListExecutions(
                    execution_pb2.ListExecutionsRequest(session_id=session_id)
                )
                head = await first.client.block_number()
                if len(listed.executions) != quiet["count"] or any(
                    e.status not in FINAL for e in listed.executions
                ):
                    quiet.update(count=len(listed.executions), since=head)
                    return False
                return head >= quiet["since"] + 3

            await wait_for(quiet_market, timeout_s=60)
            # Only the second chain moves: the same pair is now priced differently on the two chains.
            # (Earlier tests may have left differences too, found when the strategy first ran; only
            # what the gap opened counts here.) Not the first chain: nothing closes this gap, and
            # the single-chain tests trade there with exact-profit checks.
            gap_from = datetime.now(UTC)
            weth = second.deployment.token("WETH").address
            pool = next(p for p in second.deployment.pools if weth in (p.token0, p.token1))
            r0, r1 = await reserves(second, pool.address)
            await skew_pool(second, pool.address, "WETH", (r0 if pool.token0 == weth else r1) // 15)
            # Nothing changes either chain's pools from here until something lands.
            state_at = {c.spec.chain_id: await c.client.block_number() for c in devnet.chains}

            def from_gap(opportunity_id: str) -> bool:
                opp = opportunities.get(opportunity_id)
                return opp is not None and opp.detected_at.ToDatetime(UTC) >= gap_from

            async def finished() -> execution_pb2.Execution | None:
                # Every execution of the session final (none may be left in flight once blocks
                # stop); of the gap's, the first recorded: its legs went first on both chains
                # (lowest nonces), later ones find the gap closed.
                listed = await execution.ListExecutions(
                    execution_pb2.ListExecutionsRequest(session_id=session_id)
                )
                if any(e.status not in FINAL for e in listed.executions):
                    return None
                gap = [
                    e
                    for e in listed.executions
                    if e.opportunity_id in decisions and from_gap(e.opportunity_id)
                ]
                return min(gap, key=lambda e: e.created_at.ToNanoseconds(), default=None)

            done: execution_pb2.Execution = await wait_for(finished, timeout_s=60)
    finally:
        for each in (collected, collected_decisions):
            await each.close()
        if session_id:
            # Nothing may keep trading on the shared devnet for later tests.
            await stop_session(client, session_id)
    opportunity = opportunities[done.opportunity_id]
    # The expected profit is exact on both chains' pools as the gap left them.
    leg_a, leg_b = opportunity.cross_chain.legs
    (buy,), (sell,) = leg_a.hops, leg_b.hops
    assert (buy.chain_id, sell.chain_id) == (leg_a.chain_id, leg_b.chain_id)
    assert leg_a.deadline_block and leg_b.deadline_block
    bought = await leg_output(by_chain[buy.chain_id], buy, int(leg_a.amount_in), state_at[buy.chain_id])
    sold = await leg_output(by_chain[sell.chain_id], sell, bought, state_at[sell.chain_id])
    assert int(buy.amount_out) == bought == int(sell.amount_in) == int(leg_b.amount_in)
    assert int(sell.amount_out) == sold
    assert int(opportunity.expected_profit) == sold - int(leg_a.amount_in) > 0
    return CrossChainRun(opportunity, decisions[done.opportunity_id], done)


async def test_cross_chain_opportunity_found_across_both_chains_and_risk_checked(
    fleet_client: MevaasClient, devnet: Devnet, bus: Bus
) -> None:
    run = await run_cross_chain(fleet_client, devnet, bus)
    opportunity = run.opportunity
    chain_ids = {c.spec.chain_id for c in devnet.chains}
    assert set(opportunity.chain_ids) == chain_ids
    legs = opportunity.cross_chain.legs
    assert {leg.chain_id for leg in legs} == chain_ids
    assert opportunity.type == S.STRATEGY_TYPE_CROSS_CHAIN_ARBITRAGE
    # Each leg swaps one token of the pair for the other, and the trade ends in the token it
    # started with (by symbol: WETH on each chain).
    (buy,), (sell,) = legs[0].hops, legs[1].hops
    assert buy.token_out != buy.token_in and sell.token_in != sell.token_out
    assert run.decision.outcome == events_pb2.RISK_DECISION_OUTCOME_APPROVED, run.decision.reason
    assert run.decision.reserved_amount == legs[0].amount_in

    # Whatever execution made of it, the reservation does not outlive the execution. A leg still
    # in flight when the session stopped settles only as blocks keep coming, as they do on a real
    # chain (the shared devnet otherwise mines on demand).
    async with block_production(*devnet.chains, block_time_s=0.3):
        await reservations_released(fleet_client, run.execution.session_id, timeout_s=60)


async def test_cross_chain_arbitrage_lands_on_both_chains(
    fleet_client: MevaasClient, devnet: Devnet, bus: Bus
) -> None:
    run = await run_cross_chain(fleet_client, devnet, bus)
    assert run.execution.status == S.EXECUTION_RESULT_STATUS_INCLUDED, run.execution.error
    assert len(run.execution.tx_hashes) == 2
    assert int(run.execution.realized_profit) > 0
