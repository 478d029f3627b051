"""End to end through the running fleet on the devnet (tenancy, strategy, risk, execution, each
its own runtime talking only over NATS and gRPC): a tenant with a funded wallet starts a strategy,
a test swap opens a price gap, and within a few blocks an arbitrage lands on chain with realised
profit equal to the expected profit to the wei; risk releases the reservation; status counts it.
Flash (capital-free) and own-capital (executor holds inventory) variants."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
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
from tests.fixtures.execution import ExecutionHarness, block_production, fund, open_gap, wait_for
from tests.fixtures.platform import BOOTSTRAP_ADMIN_KEY
from tests.fixtures.strategy import strategy_config
from tests.integration.execution.helpers import clients
from tests.integration.tenancy.helpers import create_tenant

pytestmark = pytest.mark.integration

S = common_pb2
LANDED = {S.EXECUTION_RESULT_STATUS_INCLUDED}


@pytest_asyncio.fixture(loop_scope="session")
async def fleet_execution(execution_harness: ExecutionHarness) -> AsyncIterator[Any]:
    """Execution wired to the real strategy lookup, so sessions carry the strategy's settings."""
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


def _oriented(hop: events_pb2.RouteHop, r0: int, r1: int) -> SwapLeg:
    token0 = min(hop.token_in.lower(), hop.token_out.lower())
    return SwapLeg(r0, r1, hop.fee_bps) if hop.token_in.lower() == token0 else SwapLeg(r1, r0, hop.fee_bps)


def _gross(opportunity: events_pb2.Opportunity, legs: list[SwapLeg]) -> int:
    amount_in = int(opportunity.amount_in)
    return amounts_out(amount_in, legs)[-1] - amount_in


async def gross_profit_at(chain: DevnetChain, opportunity: events_pb2.Opportunity, block: int) -> int:
    """The cycle's gross profit for the opportunity's input on the pools as they were after `block`,
    with the contracts' integer math."""
    legs = []
    for hop in opportunity.hops:
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
    for hop in opportunity.hops:
        (post0, post1), (a0_in, a1_in, a0_out, a1_out) = synced[hop.pool.lower()], swapped[hop.pool.lower()]
        legs.append(_oriented(hop, post0 - a0_in + a0_out, post1 - a1_in + a1_out))
    return _gross(opportunity, legs)


async def run_arbitrage(
    client: MevaasClient, devnet: Devnet, bus: Bus, postgres_server: str, strategy_type: int
) -> None:
    chain = devnet.main
    execution: execution_pb2_grpc.ExecutionServiceAsyncStub = client.stub(
        "execution", execution_pb2_grpc.ExecutionServiceStub
    )
    strategies: strategy_pb2_grpc.StrategyServiceAsyncStub = client.stub(
        "strategy", strategy_pb2_grpc.StrategyServiceStub
    )
    risk: risk_pb2_grpc.RiskServiceAsyncStub = client.stub("risk", risk_pb2_grpc.RiskServiceStub)
    wallet = (
        await execution.CreateWallet(
            execution_pb2.CreateWalletRequest(idempotency_key=str(uuid.uuid4()), make_default=True)
        )
    ).wallet
    tenant_id = (await client.auth.WhoAmI(tenancy_pb2.WhoAmIRequest())).tenant_id
    for each in devnet.chains:
        await fund(each, wallet.address)
    config = strategy_config(
        chain.config,
        name=f"arb-{uuid.uuid4().hex[:8]}",
        type_=strategy_type,
        symbols=("WETH", "USDC", "USDT", "DAI"),
    )
    strategy = (
        await strategies.CreateStrategy(
            strategy_pb2.CreateStrategyRequest(idempotency_key=str(uuid.uuid4()), config=config)
        )
    ).strategy

    opportunities: dict[str, events_pb2.Opportunity] = {}

    async def collect(msg: Any) -> None:
        opp = events_pb2.Opportunity.FromString(msg.data)
        opportunities[opp.opportunity_id] = opp

    subscription = await bus.nc.subscribe(f"opp.{tenant_id}.{strategy.strategy_id}", cb=collect)
    session_id = ""
    stopped = False
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
            if strategy_type == S.STRATEGY_TYPE_DEX_ARBITRAGE:
                conn = await asyncpg.connect(postgres_server)
                try:
                    executor = await conn.fetchval(
                        "SELECT address FROM execution.executors WHERE tenant_id = $1 AND chain_id = $2",
                        tenant_id,
                        chain.spec.chain_id,
                    )
                finally:
                    await conn.close()
                await mint_tokens(
                    chain.client,
                    chain.transact,
                    chain.deployment,
                    deployer=chain.deployer,
                    to=executor,
                    amounts={"WETH": 50 * 10**18},
                )
            # The strategy engine learns the session is RUNNING from exec.<tenant>.session; give
            # it a block to load it, then open the gap with a test swap.
            loaded_from = await chain.client.block_number() + 2

            async def next_blocks() -> bool:
                return await chain.client.block_number() >= loaded_from

            await wait_for(next_blocks)
            await open_gap(chain, share=15)

            async def landed() -> execution_pb2.Execution | None:
                listed = await execution.ListExecutions(
                    execution_pb2.ListExecutionsRequest(session_id=session_id)
                )
                return next((e for e in listed.executions if e.status in LANDED), None)

            included: execution_pb2.Execution = await wait_for(landed, timeout_s=60)
            opportunity = opportunities[included.opportunity_id]
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
            await execution.StopExecution(execution_pb2.StopExecutionRequest(session_id=session_id))
            stopped = True

            # Every other opportunity of the wave ends too (dropped or failed): nothing stays reserved.
            async def released() -> bool:
                exposure = await risk.GetExposure(risk_pb2.GetExposureRequest())
                return exposure.concurrent_executions == 0 and all(
                    e.open_reservations == 0 for e in exposure.exposures
                )

            await wait_for(released, timeout_s=30)
    finally:
        await subscription.unsubscribe()
        if session_id and not stopped:
            # A failed run must not leave a session trading on the shared devnet for later tests.
            await execution.StopExecution(execution_pb2.StopExecutionRequest(session_id=session_id))
    status = await execution.GetExecutionStatus(
        execution_pb2.GetExecutionStatusRequest(session_id=session_id)
    )
    assert status.counts.included >= 1 and status.counts.executed >= status.counts.included
    assert status.counts.opportunities_received >= 1
    assert int(status.realized_profit) >= realized


async def test_flash_arbitrage_end_to_end(
    fleet_client: MevaasClient, devnet: Devnet, bus: Bus, postgres_server: str
) -> None:
    await run_arbitrage(fleet_client, devnet, bus, postgres_server, S.STRATEGY_TYPE_FLASH_ARBITRAGE)


async def test_dex_arbitrage_with_own_capital_end_to_end(
    fleet_client: MevaasClient, devnet: Devnet, bus: Bus, postgres_server: str
) -> None:
    await run_arbitrage(fleet_client, devnet, bus, postgres_server, S.STRATEGY_TYPE_DEX_ARBITRAGE)
