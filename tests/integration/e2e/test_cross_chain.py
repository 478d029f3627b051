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
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.execution.v1 import execution_pb2, execution_pb2_grpc
from mevaas.risk.v1 import risk_pb2, risk_pb2_grpc
from mevaas.strategy.v1 import strategy_pb2, strategy_pb2_grpc
from mevaas.tenancy.v1 import tenancy_pb2
from mevaas_chain import abi
from mevaas_chain.amm.v2 import SwapLeg, amounts_out
from mevaas_core.bus import Bus
from mevaas_local.devnet import Devnet, DevnetChain
from mevaas_local.devnet.deploy import mint_tokens
from mevaas_sdk import MevaasClient
from mevaas_strategy.events import LOOKUP_SUBJECT
from tests.fixtures.devnet import reserves, skew_pool
from tests.fixtures.execution import ExecutionHarness, block_production, fund, wait_for
from tests.fixtures.platform import BOOTSTRAP_ADMIN_KEY
from tests.fixtures.strategy import strategy_config
from tests.integration.execution.helpers import clients
from tests.integration.tenancy.helpers import create_tenant

pytestmark = pytest.mark.integration

S = common_pb2
# Whole tokens the wallet holds on each chain, well above what one trade moves (max_position is
# 5 WETH, the other leg's stablecoin amount is worth as much).
INVENTORY = {"WETH": 100, "USDC": 1_000_000, "USDT": 1_000_000, "DAI": 1_000_000}
FINAL = {
    S.EXECUTION_RESULT_STATUS_INCLUDED,
    S.EXECUTION_RESULT_STATUS_REVERTED,
    S.EXECUTION_RESULT_STATUS_DROPPED,
    S.EXECUTION_RESULT_STATUS_STALE,
    S.EXECUTION_RESULT_STATUS_FAILED,
}


@pytest_asyncio.fixture(loop_scope="session")
async def fleet_execution(execution_harness: ExecutionHarness) -> AsyncIterator[Any]:
    runtime = await execution_harness.start(strategy_lookup_subject=LOOKUP_SUBJECT)
    yield runtime
    await execution_harness.stop(runtime)


@pytest_asyncio.fixture(loop_scope="session")
async def fleet_client(
    tenancy_service: Any, strategy_service: Any, risk_service: Any, fleet_execution: Any
) -> AsyncIterator[MevaasClient]:
    make = clients(tenancy_service)
    async with make(BOOTSTRAP_ADMIN_KEY) as admin:
        tenant = await create_tenant(admin)
    endpoints = {
        name: f"127.0.0.1:{runtime.grpc_port}"
        for name, runtime in (
            ("strategy", strategy_service),
            ("risk", risk_service),
            ("execution", fleet_execution),
        )
    }
    async with make(tenant.owner_key, **endpoints) as client:
        yield client


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
    execution: execution_pb2_grpc.ExecutionServiceAsyncStub = client.stub(
        "execution", execution_pb2_grpc.ExecutionServiceStub
    )
    strategies: strategy_pb2_grpc.StrategyServiceAsyncStub = client.stub(
        "strategy", strategy_pb2_grpc.StrategyServiceStub
    )
    wallet = (
        await execution.CreateWallet(
            execution_pb2.CreateWalletRequest(idempotency_key=str(uuid.uuid4()), make_default=True)
        )
    ).wallet
    tenant_id = (await client.auth.WhoAmI(tenancy_pb2.WhoAmIRequest())).tenant_id
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
    strategy = (
        await strategies.CreateStrategy(
            strategy_pb2.CreateStrategyRequest(idempotency_key=str(uuid.uuid4()), config=config)
        )
    ).strategy

    opportunities: dict[str, events_pb2.Opportunity] = {}
    decisions: dict[str, events_pb2.RiskDecision] = {}

    async def collect_opportunity(msg: Any) -> None:
        opp = events_pb2.Opportunity.FromString(msg.data)
        opportunities[opp.opportunity_id] = opp

    async def collect_decision(msg: Any) -> None:
        decision = events_pb2.RiskDecision.FromString(msg.data)
        decisions[decision.opportunity_id] = decision

    subscriptions = [
        await bus.nc.subscribe(f"opp.{tenant_id}.{strategy.strategy_id}", cb=collect_opportunity),
        await bus.nc.subscribe(f"risk.{tenant_id}.decision", cb=collect_decision),
    ]
    session_id = ""
    try:
        async with block_production(*devnet.chains, block_time_s=0.3):
            started = await execution.StartExecution(
                execution_pb2.StartExecutionRequest(
                    idempotency_key=str(uuid.uuid4()), strategy_id=strategy.strategy_id
                )
            )
            session_id = started.session.session_id

            async def running() -> bool:
                status = await execution.GetExecutionStatus(
                    execution_pb2.GetExecutionStatusRequest(session_id=session_id)
                )
                assert status.session.state != S.EXECUTION_STATE_FAILED, status.last_error
                return status.session.state == S.EXECUTION_STATE_RUNNING

            await wait_for(running, timeout_s=60)
            loaded_from = await first.client.block_number() + 2

            async def next_blocks() -> bool:
                return await first.client.block_number() >= loaded_from

            await wait_for(next_blocks)
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
        for subscription in subscriptions:
            await subscription.unsubscribe()
        if session_id:
            # Nothing may keep trading on the shared devnet for later tests.
            await execution.StopExecution(execution_pb2.StopExecutionRequest(session_id=session_id))
    opportunity = opportunities[done.opportunity_id]
    # The expected profit is exact on both chains' pools as the gap left them.
    buy, sell = opportunity.hops
    bought = await leg_output(by_chain[buy.chain_id], buy, int(opportunity.amount_in), state_at[buy.chain_id])
    sold = await leg_output(by_chain[sell.chain_id], sell, bought, state_at[sell.chain_id])
    assert int(buy.amount_out) == bought == int(sell.amount_in)
    assert int(sell.amount_out) == sold
    assert int(opportunity.expected_profit) == sold - int(opportunity.amount_in) > 0
    return CrossChainRun(opportunity, decisions[done.opportunity_id], done)


async def test_cross_chain_opportunity_found_across_both_chains_and_risk_checked(
    fleet_client: MevaasClient, devnet: Devnet, bus: Bus
) -> None:
    run = await run_cross_chain(fleet_client, devnet, bus)
    opportunity = run.opportunity
    chain_ids = {c.spec.chain_id for c in devnet.chains}
    assert set(opportunity.chain_ids) == chain_ids
    assert {hop.chain_id for hop in opportunity.hops} == chain_ids
    assert opportunity.type == S.STRATEGY_TYPE_CROSS_CHAIN_ARBITRAGE
    # Each leg swaps one token of the pair for the other, and the trade ends in the token it
    # started with (by symbol: WETH on each chain).
    buy, sell = opportunity.hops
    assert buy.token_out != buy.token_in and sell.token_in != sell.token_out
    assert run.decision.outcome == events_pb2.RISK_DECISION_OUTCOME_APPROVED, run.decision.reason
    assert run.decision.reserved_amount == opportunity.amount_in

    # Whatever execution made of it, the reservation does not outlive the execution.
    risk: risk_pb2_grpc.RiskServiceAsyncStub = fleet_client.stub("risk", risk_pb2_grpc.RiskServiceStub)

    async def released() -> bool:
        exposure = await risk.GetExposure(risk_pb2.GetExposureRequest())
        return exposure.concurrent_executions == 0 and all(
            e.open_reservations == 0 for e in exposure.exposures
        )

    await wait_for(released, timeout_s=30)


async def test_cross_chain_arbitrage_lands_on_both_chains(
    fleet_client: MevaasClient, devnet: Devnet, bus: Bus
) -> None:
    run = await run_cross_chain(fleet_client, devnet, bus)
    assert run.execution.status == S.EXECUTION_RESULT_STATUS_INCLUDED, run.execution.error
    assert len(run.execution.tx_hashes) == 2
    assert int(run.execution.realized_profit) > 0
