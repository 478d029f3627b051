"""Backtest vs live on the devnet: the fleet (tenancy, strategy, risk, execution, analytics) runs a
flash-arbitrage strategy while analytics records the market history; a test swap opens a gap and
the strategy executes it. A backtest of the same strategy version over the same blocks, run by
analytics through StrategyService.Backtest, reproduces every live execution: same detection block,
same route, same size, same expected profit (the live realised profit plus its gas, to the wei).
Assumptions: next-block inclusion at the detecting block's reserves, base fee + 1 gwei gas."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
import pytest_asyncio

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.execution.v1 import execution_pb2, execution_pb2_grpc
from mevaas.strategy.v1 import strategy_pb2, strategy_pb2_grpc
from mevaas.tenancy.v1 import tenancy_pb2
from mevaas_local.devnet import Devnet
from mevaas_sdk import MevaasClient
from mevaas_strategy.events import LOOKUP_SUBJECT
from tests.fixtures.devnet import reserves, skew_pool
from tests.fixtures.execution import ExecutionHarness, block_production, fund, wait_for
from tests.fixtures.mev_staging import pool_of
from tests.fixtures.platform import BOOTSTRAP_ADMIN_KEY
from tests.fixtures.strategy import strategy_config
from tests.integration.execution.helpers import clients
from tests.integration.tenancy.helpers import TRADING_PHASE, create_tenant, field_violations

pytestmark = pytest.mark.integration

S = common_pb2
INCLUDED = S.EXECUTION_RESULT_STATUS_INCLUDED


@pytest_asyncio.fixture(loop_scope="session")
async def fleet(
    execution_harness: ExecutionHarness,
    tenancy_service: Any,
    strategy_service: Any,
    risk_service: Any,
    analytics_service: Any,
    devnet: Devnet,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[MevaasClient, MevaasClient]]:
    """(owner client of a fresh tenant, owner client of another tenant); analytics reads the
    devnet's chain registry from MEVAAS_CHAINS_FILE."""
    chains = tmp_path / "chains.json"
    devnet.registry.write(chains)
    monkeypatch.delenv("MEVAAS_CHAINS", raising=False)
    monkeypatch.setenv("MEVAAS_CHAINS_FILE", str(chains))
    execution = await execution_harness.start(strategy_lookup_subject=LOOKUP_SUBJECT)
    make = clients(tenancy_service)
    async with make(BOOTSTRAP_ADMIN_KEY) as admin:
        tenant, other = await create_tenant(admin, phase=TRADING_PHASE), await create_tenant(admin)
    endpoints = {
        name: f"127.0.0.1:{runtime.grpc_port}"
        for name, runtime in (
            ("strategy", strategy_service),
            ("risk", risk_service),
            ("execution", execution),
        )
    }
    async with make(tenant.owner_key, **endpoints) as client, make(other.owner_key, **endpoints) as stranger:
        yield client, stranger
    await execution_harness.stop(execution)


async def _rows(postgres_server: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(postgres_server)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def test_backtest_reproduces_the_live_run(
    fleet: tuple[MevaasClient, MevaasClient], devnet: Devnet, postgres_server: str
) -> None:
    client, stranger = fleet
    chain = devnet.main
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
    for each in devnet.chains:
        await fund(each, wallet.address)
    # Two tokens, two DEXes: the only route is the MKR/WETH cycle through both pools, so the
    # backtest's one-execution-per-pool rule picks what live executes. MKR trades only against
    # WETH, so what is left of the gap is invisible to the other tests' WETH/stablecoin strategies.
    config = strategy_config(
        chain.config,
        name=f"bt-{uuid.uuid4().hex[:8]}",
        type_=S.STRATEGY_TYPE_FLASH_ARBITRAGE,
        symbols=("WETH", "MKR"),
    )
    strategy = (
        await strategies.CreateStrategy(
            strategy_pb2.CreateStrategyRequest(idempotency_key=str(uuid.uuid4()), config=config)
        )
    ).strategy
    skewed = pool_of(chain, "uniswap", "WETH", "MKR")

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
        # The engine loads the running strategy within a block or two and evaluates everything
        # once; the backtest starts after that, where live is incremental too.
        from_block = await chain.client.block_number() + 3
        await wait_for(lambda: _at_least(devnet, from_block))
        r0, r1 = await reserves(chain, skewed.address)
        weth_reserve = r0 if skewed.token0 == chain.deployment.token("WETH").address else r1
        await skew_pool(chain, skewed.address, "WETH", weth_reserve // 15)

        async def landed() -> list[execution_pb2.Execution]:
            listed = await execution.ListExecutions(
                execution_pb2.ListExecutionsRequest(session_id=session_id)
            )
            return [e for e in listed.executions if e.status == INCLUDED]

        included = await wait_for(landed, timeout_s=60)
        await execution.StopExecution(execution_pb2.StopExecutionRequest(session_id=session_id))
        to_block = await chain.client.block_number()

    # Analytics has ingested the run: every block of the range and every live result.
    async def ingested() -> bool:
        blocks = await _rows(
            postgres_server,
            "SELECT DISTINCT block_number FROM analytics.market_blocks WHERE chain_id = $1"
            " AND block_number BETWEEN $2 AND $3",
            chain.spec.chain_id,
            from_block,
            to_block,
        )
        results = await _rows(
            postgres_server,
            "SELECT 1 FROM analytics.execution_results e JOIN analytics.opportunities o"
            " ON o.tenant_id = e.tenant_id AND o.opportunity_id = e.opportunity_id"
            " WHERE e.tenant_id = $1 AND e.status = $2",
            tenant_id,
            INCLUDED,
        )
        return len(blocks) == to_block - from_block + 1 and len(results) >= len(included)

    await wait_for(ingested, timeout_s=30)
    live = await _rows(
        postgres_server,
        "SELECT o.payload, e.realized_profit, e.gas_cost FROM analytics.execution_results e"
        " JOIN analytics.opportunities o ON o.tenant_id = e.tenant_id AND o.opportunity_id = e.opportunity_id"
        " WHERE e.tenant_id = $1 AND e.status = $2",
        tenant_id,
        INCLUDED,
    )
    live_opportunities = [events_pb2.Opportunity.FromString(bytes(r["payload"])) for r in live]
    assert live_opportunities and all(from_block <= o.detected_block <= to_block for o in live_opportunities)

    request = strategy_pb2.BacktestRequest(
        idempotency_key=str(uuid.uuid4()),
        strategy_id=strategy.strategy_id,
        block_range=S.BlockRange(chain_id=chain.spec.chain_id, from_block=from_block, to_block=to_block),
    )
    backtest = (await strategies.Backtest(request)).backtest
    assert backtest.status == strategy_pb2.BACKTEST_STATUS_SUCCEEDED, backtest.error
    assert backtest.strategy_version == strategy.version
    assert backtest.blocks_replayed == to_block - from_block + 1
    simulated = {
        (t.block_number - 1, tuple(p.lower() for p in t.pools), t.amount_in): t for t in backtest.trades
    }
    for opp, row in zip(live_opportunities, live, strict=True):
        key = (
            opp.detected_block,
            tuple(h.pool.lower() for h in opp.swap_cycle.hops),
            opp.swap_cycle.amount_in,
        )
        assert key in simulated, f"live execution {key} not reproduced; backtest found {list(simulated)}"
        trade = simulated[key]
        assert trade.expected_profit == opp.expected_profit
        assert trade.net_profit == opp.expected_profit_net_of_gas
        # Flash WETH profit, gas paid in ETH: realised + gas == expected, to the wei.
        assert int(row["realized_profit"]) + int(row["gas_cost"]) == int(trade.expected_profit)
    assert int(backtest.metrics.total_pnl) == sum(int(t.net_profit) for t in backtest.trades)

    # Idempotent, readable, tenant-scoped.
    again = (await strategies.Backtest(request)).backtest
    assert again == backtest
    fetched = await strategies.GetBacktest(strategy_pb2.GetBacktestRequest(backtest_id=backtest.backtest_id))
    assert fetched.backtest == backtest
    foreign: strategy_pb2_grpc.StrategyServiceAsyncStub = stranger.stub(
        "strategy", strategy_pb2_grpc.StrategyServiceStub
    )
    with pytest.raises(grpc.aio.AioRpcError) as hidden:
        await foreign.GetBacktest(strategy_pb2.GetBacktestRequest(backtest_id=backtest.backtest_id))
    assert hidden.value.code() == grpc.StatusCode.NOT_FOUND

    compared = await strategies.CompareBacktestToLive(
        strategy_pb2.CompareBacktestToLiveRequest(backtest_id=backtest.backtest_id)
    )
    live_pnl = sum(int(r["realized_profit"]) for r in live)
    assert compared.strategy_id == strategy.strategy_id
    assert compared.live_metrics.trade_count == len(live)
    assert int(compared.live_metrics.total_pnl) == live_pnl
    assert int(compared.pnl_difference) == live_pnl - int(backtest.metrics.total_pnl)
    assert compared.capture_ratio == len(live) / len(backtest.trades)
    assert sum(int(d.live_pnl) for d in compared.daily) == live_pnl


async def _at_least(devnet: Devnet, block: int) -> bool:
    return await devnet.main.client.block_number() >= block


async def test_backtest_requests_are_validated(
    fleet: tuple[MevaasClient, MevaasClient], devnet: Devnet
) -> None:
    client, _ = fleet
    strategies: strategy_pb2_grpc.StrategyServiceAsyncStub = client.stub(
        "strategy", strategy_pb2_grpc.StrategyServiceStub
    )
    with pytest.raises(grpc.aio.AioRpcError) as empty:
        await strategies.Backtest(strategy_pb2.BacktestRequest())
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {"idempotency_key", "strategy_id", "block_range"} <= set(field_violations(empty.value))

    with pytest.raises(grpc.aio.AioRpcError) as bad_range:
        await strategies.Backtest(
            strategy_pb2.BacktestRequest(
                idempotency_key="k",
                strategy_id="s",
                block_range=S.BlockRange(chain_id=devnet.main.spec.chain_id, from_block=10, to_block=5),
                assumptions=strategy_pb2.BacktestAssumptions(
                    inclusion_probability_percent=S.Decimal(value="150"), latency_blocks=11
                ),
            )
        )
    assert set(field_violations(bad_range.value)) >= {
        "block_range.to_block",
        "assumptions.inclusion_probability_percent",
        "assumptions.latency_blocks",
    }

    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await strategies.Backtest(
            strategy_pb2.BacktestRequest(
                idempotency_key="k",
                strategy_id=str(uuid.uuid4()),
                block_range=S.BlockRange(chain_id=devnet.main.spec.chain_id, from_block=1, to_block=2),
            )
        )
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND

    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await strategies.GetBacktest(strategy_pb2.GetBacktestRequest(backtest_id=str(uuid.uuid4())))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
