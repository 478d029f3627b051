"""End to end through the fleet with Uniswap V3 on the devnet: a swap on a V3 pool opens a gap
against the V2 pools of the same pair, and the strategy engine (following the V3 factory from its
chain registry) finds the mixed V2/V3 cycle. Risk, execution and the relay land it, and the
realised profit plus gas equals the predicted profit, to the wei."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from eth_utils.crypto import keccak

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas_chain import abi
from mevaas_chain.registry import ChainRegistry, V3DexConfig
from mevaas_chain.v3_pools import exact_input_single
from mevaas_core.bus import Bus
from mevaas_local.devnet import Devnet
from mevaas_local.devnet.deploy import NO_DEADLINE, Batch, mint_tokens
from mevaas_local.devnet.uniswap_v3 import DEFAULT_V3_POOLS, V3Deployment
from tests.fixtures.e2e import (
    blocks_pass,
    collect_opportunities,
    create_strategy,
    default_wallet,
    executor_of,
    new_tenant,
    reservations_released,
    session_executions,
    start_running,
    stop_session,
    tenant_client,
    tenant_of,
)
from tests.fixtures.execution import block_production, fund, wait_for
from tests.fixtures.strategy import strategy_config
from tests.fixtures.uniswap_v3 import deploy_funded_v3

pytestmark = pytest.mark.integration

S = common_pb2


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def uniswap_v3(devnet: Devnet) -> V3Deployment:
    # One V3 pool (WETH/USDC 0.05%), so the only route through it comes back through V2 pools.
    return await deploy_funded_v3(devnet.main, pools=DEFAULT_V3_POOLS[:1])


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def v3_strategy_service(
    start_service: Callable[..., Awaitable[Any]],
    devnet: Devnet,
    uniswap_v3: V3Deployment,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Any]:
    """A strategy service whose registry names the V3 factory on the main chain."""
    from mevaas_strategy.server import SERVICE, StrategyRuntime, StrategySettings

    v3_dex = V3DexConfig(name="uniswap_v3", factory=uniswap_v3.factory, router=uniswap_v3.router)
    main = devnet.main.config.model_copy(update={"v3_dexes": [v3_dex]})
    chains_file = Path(tmp_path_factory.mktemp("strategy-v3")) / "chains.json"
    ChainRegistry(chains=[main, *(c.config for c in devnet.chains[1:])]).write(chains_file)
    runtime = await start_service(
        SERVICE, StrategyRuntime, StrategySettings, chains_file=str(chains_file), block_poll_interval_s=0.01
    )
    yield runtime
    # Stopped with its module: left running, it serves later tests' strategy sessions from the
    # same NATS subjects and hands them V3 hops they do not expect.
    await runtime.stop()


async def allow_v3_factory(devnet: Devnet, executor: str, factory: str) -> None:
    client = devnet.main.client
    slot = keccak(bytes(12) + bytes.fromhex(factory[2:]) + (2).to_bytes(32, "big"))
    await client.request(
        "anvil_setStorageAt", [executor, "0x" + slot.hex(), "0x" + (1).to_bytes(32, "big").hex()]
    )
    allowed = await client.call(executor, abi.encode_call("allowedV3Factory(address)", factory))
    assert abi.decode_uint(allowed) == 1


async def test_v2_v3_gap_is_captured_with_the_predicted_profit(
    devnet: Devnet,
    bus: Bus,
    uniswap_v3: V3Deployment,
    tenancy_service: Any,
    v3_strategy_service: Any,
    risk_service: Any,
    fleet_execution: Any,
) -> None:
    chain = devnet.main
    tenant = await new_tenant(tenancy_service)
    async with tenant_client(
        tenancy_service,
        tenant.owner_key,
        strategy=v3_strategy_service,
        risk=risk_service,
        execution=fleet_execution,
    ) as client:
        wallet = await default_wallet(client)
        tenant_id = await tenant_of(client)
        for each in devnet.chains:
            await fund(each, wallet.address)
        config = strategy_config(chain.config, name=f"v3-{uuid.uuid4().hex[:8]}", symbols=("WETH", "USDC"))
        strategy = await create_strategy(client, config)
        opportunities = await collect_opportunities(bus, tenant_id, strategy.strategy_id)
        session_id = ""
        try:
            async with block_production(*devnet.chains, block_time_s=0.3):
                session_id = await start_running(client, strategy.strategy_id)
                executor = await executor_of(client, wallet.address, chain.spec.chain_id)
                await mint_tokens(
                    chain.client,
                    chain.transact,
                    chain.deployment,
                    deployer=chain.deployer,
                    to=executor,
                    amounts={"WETH": 50 * 10**18},
                )
                # The tenant's executor trades only the V3 pools its owner allows, and execution's
                # deployment allows none yet: set Executor.allowedV3Factory[factory] (storage slot 2)
                # directly, so the tenant wallet's nonce stays execution's own.
                await allow_v3_factory(devnet, executor, uniswap_v3.factory)
                await blocks_pass(chain)
                # Sell WETH into the V3 WETH/USDC 0.05% pool: WETH is now cheap there against V2.
                pool = uniswap_v3.pools[0]
                weth = chain.deployment.weth
                usdc = pool.token1 if pool.token0 == weth else pool.token0
                gap = Batch(chain.client)
                swap = exact_input_single(
                    weth, usdc, pool.fee, chain.deployer, 200 * 10**18, deadline=NO_DEADLINE
                )
                await gap.call(chain.deployer, uniswap_v3.router, swap, gas=1_500_000)
                await gap.flush(chain.transact)

                async def landed() -> execution_pb2.Execution | None:
                    return next(
                        (
                            e
                            for e in await session_executions(client, session_id)
                            if e.status == S.EXECUTION_RESULT_STATUS_INCLUDED
                        ),
                        None,
                    )

                try:
                    included: execution_pb2.Execution = await wait_for(landed, timeout_s=60)
                except TimeoutError:
                    made = [
                        (S.ExecutionResultStatus.Name(e.status), e.error)
                        for e in await session_executions(client, session_id)
                    ]
                    raise AssertionError(
                        f"nothing landed: {len(opportunities.items)} opportunities, executions {made}"
                    ) from None
                opportunity = opportunities.items[included.opportunity_id]
                kinds = {h.pool_kind for h in opportunity.swap_cycle.hops}
                assert kinds == {events_pb2.POOL_KIND_UNISWAP_V2, events_pb2.POOL_KIND_UNISWAP_V3}
                assert any(h.pool.lower() == pool.address.lower() for h in opportunity.swap_cycle.hops)
                # Nothing else trades on the test devnet: the pools the transaction met are the
                # ones the opportunity was sized on.
                assert int(included.realized_profit) + int(included.gas_cost) == int(
                    opportunity.expected_profit
                )
                assert int(included.realized_profit) > 0
                await stop_session(client, session_id)
                session_id = ""
                await reservations_released(client)
        finally:
            await opportunities.close()
            if session_id:
                await stop_session(client, session_id)
