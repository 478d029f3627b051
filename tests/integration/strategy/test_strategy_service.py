"""StrategyService and the engine against real NATS, PostgreSQL and the anvil devnet."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.strategy.v1 import strategy_pb2, strategy_pb2_grpc
from mevaas.tenancy.v1 import tenancy_pb2
from mevaas_chain import abi
from mevaas_chain.amm.arbitrage import optimize
from mevaas_chain.amm.v2 import SwapLeg, amounts_out
from mevaas_core.bus import Bus, Delivery, RemoteError
from mevaas_core.runtime import ServiceRuntime
from mevaas_local.devnet import Devnet
from mevaas_sdk import MevaasClient
from mevaas_strategy.events import LOOKUP_SUBJECT
from mevaas_strategy.server import StrategyRuntime
from tests.fixtures.devnet import skew_pool
from tests.fixtures.strategy import strategy_config
from tests.integration.tenancy.helpers import create_tenant, field_violations

pytestmark = pytest.mark.integration


async def _client(
    admin_client: MevaasClient, client_for: Callable[..., MevaasClient], service: ServiceRuntime[Any]
) -> tuple[str, Any, MevaasClient]:
    tenant = await create_tenant(admin_client)
    client = client_for(tenant.owner_key, strategy=f"127.0.0.1:{service.grpc_port}")
    return tenant.tenant.tenant_id, client.stub("strategy", strategy_pb2_grpc.StrategyServiceStub), client


async def _eventually(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


def _create(
    config: strategy_pb2.StrategyConfig, key: str | None = None
) -> strategy_pb2.CreateStrategyRequest:
    return strategy_pb2.CreateStrategyRequest(idempotency_key=key or str(uuid.uuid4()), config=config)


async def test_crud_with_versions_and_idempotency(
    strategy_service: ServiceRuntime[Any], devnet: Devnet, admin_client: MevaasClient, client_for: Any
) -> None:
    _, stub, client = await _client(admin_client, client_for, strategy_service)
    async with client:
        config = strategy_config(devnet.main.config, name="alpha")
        request = _create(config)
        created = (await stub.CreateStrategy(request)).strategy
        assert created.version == 1 and created.status == strategy_pb2.STRATEGY_STATUS_ACTIVE
        assert (await stub.CreateStrategy(request)).strategy == created  # idempotent replay
        with pytest.raises(grpc.aio.AioRpcError) as reused:
            await stub.CreateStrategy(
                _create(strategy_config(devnet.main.config, name="other"), request.idempotency_key)
            )
        assert reused.value.code() == grpc.StatusCode.ALREADY_EXISTS
        with pytest.raises(grpc.aio.AioRpcError) as taken:
            await stub.CreateStrategy(_create(config))
        assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS

        changed = strategy_config(devnet.main.config, name="alpha", max_position=2 * 10**18)
        update = strategy_pb2.UpdateStrategyRequest(
            idempotency_key=str(uuid.uuid4()),
            strategy_id=created.strategy_id,
            config=changed,
            expected_version=1,
        )
        updated = (await stub.UpdateStrategy(update)).strategy
        assert updated.version == 2 and updated.config.parameters.max_position == str(2 * 10**18)
        stale = strategy_pb2.UpdateStrategyRequest(
            idempotency_key=str(uuid.uuid4()),
            strategy_id=created.strategy_id,
            config=changed,
            expected_version=1,
        )
        with pytest.raises(grpc.aio.AioRpcError) as conflict:
            await stub.UpdateStrategy(stale)
        assert conflict.value.code() == grpc.StatusCode.FAILED_PRECONDITION

        first = await stub.GetStrategy(
            strategy_pb2.GetStrategyRequest(strategy_id=created.strategy_id, version=1)
        )
        assert first.strategy.config == config
        versions = await stub.ListStrategyVersions(
            strategy_pb2.ListStrategyVersionsRequest(
                strategy_id=created.strategy_id, page=common_pb2.PageRequest(page_size=1)
            )
        )
        assert [v.version for v in versions.versions] == [2]
        rest = await stub.ListStrategyVersions(
            strategy_pb2.ListStrategyVersionsRequest(
                strategy_id=created.strategy_id,
                page=common_pb2.PageRequest(page_token=versions.page.next_page_token),
            )
        )
        assert [v.version for v in rest.versions] == [1] and not rest.page.next_page_token

        second = (
            await stub.CreateStrategy(_create(strategy_config(devnet.main.config, name="beta")))
        ).strategy
        page = await stub.ListStrategies(
            strategy_pb2.ListStrategiesRequest(page=common_pb2.PageRequest(page_size=1))
        )
        page2 = await stub.ListStrategies(
            strategy_pb2.ListStrategiesRequest(
                page=common_pb2.PageRequest(page_token=page.page.next_page_token)
            )
        )
        assert [s.strategy_id for s in [*page.strategies, *page2.strategies]] == [
            created.strategy_id,
            second.strategy_id,
        ]

        await stub.DeleteStrategy(strategy_pb2.DeleteStrategyRequest(strategy_id=second.strategy_id))
        await stub.DeleteStrategy(strategy_pb2.DeleteStrategyRequest(strategy_id=second.strategy_id))
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await stub.GetStrategy(strategy_pb2.GetStrategyRequest(strategy_id=second.strategy_id))
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND
        listed = await stub.ListStrategies(strategy_pb2.ListStrategiesRequest())
        assert [s.strategy_id for s in listed.strategies] == [created.strategy_id]

        # Analytics runs backtests: an unknown one is NOT_FOUND, UNAVAILABLE when analytics is not up.
        with pytest.raises(grpc.aio.AioRpcError) as backtest:
            await stub.GetBacktest(strategy_pb2.GetBacktestRequest(backtest_id="x"))
        assert backtest.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE)


async def test_invalid_configs_name_their_fields(
    strategy_service: ServiceRuntime[Any], devnet: Devnet, admin_client: MevaasClient, client_for: Any
) -> None:
    _, stub, client = await _client(admin_client, client_for, strategy_service)
    chain = devnet.main.config
    async with client:
        config = strategy_config(chain)
        config.parameters.chain_ids.append(424242)
        config.parameters.tokens.add(chain_id=chain.chain_id, address="0x" + "12" * 20)
        config.parameters.execution_settings.max_slippage_bps = 20_000
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.CreateStrategy(_create(config))
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert set(field_violations(bad.value)) == {
            "config.parameters.chain_ids[1]",
            f"config.parameters.tokens[{len(config.parameters.tokens) - 1}].address",
            "config.parameters.execution_settings.max_slippage_bps",
        }
        # 100000 WETH is far above the professional plan's 25M USD.
        huge = strategy_config(chain, allocation=100_000 * 10**18)
        with pytest.raises(grpc.aio.AioRpcError) as above:
            await stub.CreateStrategy(_create(huge))
        assert field_violations(above.value) == ["config.allocation.amount"]
        validated = await stub.ValidateStrategy(strategy_pb2.ValidateStrategyRequest(config=huge))
        assert not validated.valid
        assert [(v.field, v.reason) for v in validated.violations] == [("allocation.amount", "EXCEEDS_PLAN")]
        assert (
            await stub.ValidateStrategy(strategy_pb2.ValidateStrategyRequest(config=strategy_config(chain)))
        ).valid


async def test_roles_and_tenant_isolation(
    strategy_service: ServiceRuntime[Any], devnet: Devnet, admin_client: MevaasClient, client_for: Any
) -> None:
    tenant_id, stub, client = await _client(admin_client, client_for, strategy_service)
    _, other_stub, other = await _client(admin_client, client_for, strategy_service)
    viewer_key = await admin_client.tenants.CreateApiKey(
        tenancy_pb2.CreateApiKeyRequest(
            idempotency_key=str(uuid.uuid4()),
            tenant_id=tenant_id,
            name="viewer",
            roles=[common_pb2.ROLE_VIEWER],
        )
    )
    viewer = client_for(viewer_key.secret, strategy=f"127.0.0.1:{strategy_service.grpc_port}")
    viewer_stub = viewer.stub("strategy", strategy_pb2_grpc.StrategyServiceStub)
    async with client, other, viewer:
        created = (await stub.CreateStrategy(_create(strategy_config(devnet.main.config)))).strategy
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await viewer_stub.CreateStrategy(_create(strategy_config(devnet.main.config, name="v")))
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        seen = await viewer_stub.GetStrategy(strategy_pb2.GetStrategyRequest(strategy_id=created.strategy_id))
        assert seen.strategy.strategy_id == created.strategy_id
        with pytest.raises(grpc.aio.AioRpcError) as hidden:
            await other_stub.GetStrategy(strategy_pb2.GetStrategyRequest(strategy_id=created.strategy_id))
        assert hidden.value.code() == grpc.StatusCode.NOT_FOUND
        assert not (await other_stub.ListStrategies(strategy_pb2.ListStrategiesRequest())).strategies
        with pytest.raises(grpc.aio.AioRpcError) as not_theirs:
            await other_stub.DeleteStrategy(
                strategy_pb2.DeleteStrategyRequest(strategy_id=created.strategy_id)
            )
        assert not_theirs.value.code() == grpc.StatusCode.NOT_FOUND


async def _session(bus: Bus, tenant_id: str, strategy_id: str, state: int, sequence: int) -> None:
    event = events_pb2.ExecutionSessionEvent(
        event_id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        session_id=f"session-{strategy_id}",
        strategy_id=strategy_id,
        state=state,  # type: ignore[arg-type]
        sequence=sequence,
    )
    event.occurred_at.GetCurrentTime()
    await bus.publish(
        f"exec.{tenant_id}.session", event, msg_id=f"{event.session_id}:{sequence}", tenant_id=tenant_id
    )


async def _reserves_at(devnet: Devnet, pool: str, block: int) -> tuple[int, int]:
    return abi.decode_reserves(await devnet.main.client.call(pool, abi.GET_RESERVES, block))


async def test_engine_publishes_exact_opportunities_for_running_strategies_only(
    strategy_service: ServiceRuntime[Any],
    devnet: Devnet,
    admin_client: MevaasClient,
    client_for: Any,
    bus: Bus,
) -> None:
    tenant_id, stub, client = await _client(admin_client, client_for, strategy_service)
    chain = devnet.main
    async with client:
        strategy = (
            await stub.CreateStrategy(
                _create(
                    strategy_config(
                        chain.config,
                        type_=common_pb2.STRATEGY_TYPE_DEX_ARBITRAGE,
                        allocation=100 * 10**18,
                        max_position=50 * 10**18,
                    )
                )
            )
        ).strategy
    received: list[events_pb2.Opportunity] = []

    async def collect(opp: events_pb2.Opportunity, delivery: Delivery) -> None:
        received.append(opp)

    subscription = await bus.subscribe(
        "OPP",
        f"test-{strategy.strategy_id}",
        f"opp.{tenant_id}.{strategy.strategy_id}",
        events_pb2.Opportunity,
        collect,
    )
    assert isinstance(strategy_service, StrategyRuntime) and strategy_service.engine is not None
    engine = strategy_service.engine
    try:
        await _session(bus, tenant_id, strategy.strategy_id, common_pb2.EXECUTION_STATE_RUNNING, 1)
        await _eventually(lambda: strategy.strategy_id in engine.running)

        weth, usdc = chain.deployment.weth, chain.deployment.token("USDC").address
        target = next(
            p.address
            for p in chain.deployment.pools
            if p.dex == "uniswap" and {p.token0, p.token1} == {weth, usdc}
        )
        await skew_pool(chain, target, "USDC", 2_000_000 * 10**6)  # WETH suddenly dear on uniswap
        await _eventually(lambda: any(target in [h.pool for h in o.swap_cycle.hops] for o in received))

        for opp in received:
            assert opp.tenant_id == tenant_id and opp.strategy_version == 1
            assert opp.deadline_block == opp.detected_block + 2  # next block + 1 retry
            legs = []
            for hop in opp.swap_cycle.hops:
                r0, r1 = await _reserves_at(devnet, hop.pool, opp.detected_block)
                token0 = hop.token_in if hop.token_in.lower() < hop.token_out.lower() else hop.token_out
                legs.append(
                    SwapLeg(r0, r1, hop.fee_bps) if hop.token_in == token0 else SwapLeg(r1, r0, hop.fee_bps)
                )
            best = optimize(legs)
            assert best is not None
            amount_in = min(best.amount_in, 50 * 10**18)
            amounts = amounts_out(amount_in, legs)
            assert int(opp.swap_cycle.amount_in) == amount_in
            assert int(opp.expected_profit) == amounts[-1] - amount_in
            assert [int(h.amount_out) for h in opp.swap_cycle.hops] == amounts[1:]
            gas_cost = int(opp.expected_profit) - int(opp.expected_profit_net_of_gas)
            assert gas_cost == opp.gas_estimate * int(opp.gas_price)  # profit in WETH: 1:1 with gas
            assert int(opp.expected_profit_net_of_gas) > 0

        # Paused: no evaluation, however large the gap.
        await _session(bus, tenant_id, strategy.strategy_id, common_pb2.EXECUTION_STATE_PAUSED, 2)
        await _eventually(lambda: strategy.strategy_id not in engine.running)
        count = len(received)
        await skew_pool(chain, target, "USDC", 2_000_000 * 10**6)
        head = await chain.client.block_number()
        await _eventually(lambda: engine.view.chains[chain.spec.chain_id].block_number >= head)
        await asyncio.sleep(0.5)
        assert len(received) == count
    finally:
        await subscription.stop()


async def test_other_services_read_a_strategy_over_nats_within_its_tenant(
    strategy_service: ServiceRuntime[Any],
    devnet: Devnet,
    admin_client: MevaasClient,
    client_for: Any,
    bus: Bus,
) -> None:
    tenant_id, stub, client = await _client(admin_client, client_for, strategy_service)
    other_tenant, _, other = await _client(admin_client, client_for, strategy_service)
    async with client, other:
        config = strategy_config(devnet.main.config, name="looked-up")
        config.parameters.execution_settings.retry_attempts = 4
        created = (await stub.CreateStrategy(_create(config))).strategy
    request = strategy_pb2.GetStrategyRequest(strategy_id=created.strategy_id)
    reply = await bus.request(LOOKUP_SUBJECT, request, strategy_pb2.GetStrategyResponse, tenant_id=tenant_id)
    assert reply.strategy.strategy_id == created.strategy_id
    assert reply.strategy.config.parameters.execution_settings.retry_attempts == 4
    # Another tenant's header cannot read it; a request without a tenant is refused.
    with pytest.raises(RemoteError) as hidden:
        await bus.request(LOOKUP_SUBJECT, request, strategy_pb2.GetStrategyResponse, tenant_id=other_tenant)
    assert hidden.value.code == 404
    with pytest.raises(RemoteError) as anonymous:
        await bus.request(LOOKUP_SUBJECT, request, strategy_pb2.GetStrategyResponse)
    assert anonymous.value.code == 400
