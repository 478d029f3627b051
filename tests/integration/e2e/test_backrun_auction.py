"""The order-flow auction through the running fleet (tenancy, strategy, risk, execution over NATS
and gRPC, anvil with its relay): a searcher tenant runs a `backrun` strategy; a user's swap sent
to the Protect RPC opens an auction; the strategy service bids from the hint, risk approves, and
execution bundles the backrun right after the user's swap in the same block; the user receives
90% of the backrun's profit plus its gas, to the wei, and its status shows the refund."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from eth_account import Account

from mevaas.common.v1 import common_pb2
from mevaas.execution.v1 import execution_pb2, execution_pb2_grpc
from mevaas.strategy.v1 import strategy_pb2, strategy_pb2_grpc
from mevaas_chain import abi
from mevaas_chain.amm.v2 import get_amount_out
from mevaas_chain.executor import decode_backrun
from mevaas_local.devnet import Devnet, DevnetChain
from mevaas_local.devnet.deploy import MAX_UINT, NO_DEADLINE, mint_tokens
from mevaas_local.devnet.sandwich_bot import SWAP_EXACT_TOKENS
from mevaas_strategy.events import LOOKUP_SUBJECT
from mevaas_strategy.server import StrategyRuntime
from tests.fixtures.devnet import reserves
from tests.fixtures.execution import ExecutionHarness, block_production, fund, wait_for
from tests.fixtures.platform import BOOTSTRAP_ADMIN_KEY
from tests.fixtures.strategy import strategy_config
from tests.integration.execution.helpers import clients
from tests.integration.protection.helpers import call, signed
from tests.integration.tenancy.helpers import TRADING_PHASE, create_tenant

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(loop_scope="session")
async def fleet(
    execution_harness: ExecutionHarness, tenancy_service: Any, strategy_service: Any, risk_service: Any
) -> AsyncIterator[dict[str, Any]]:
    runtime = await execution_harness.start(
        strategy_lookup_subject=LOOKUP_SUBJECT,
        http_port=0,
        tenancy_address=f"127.0.0.1:{tenancy_service.grpc_port}",
    )
    make = clients(tenancy_service)
    async with make(BOOTSTRAP_ADMIN_KEY) as admin:
        searcher, user = await create_tenant(admin, phase=TRADING_PHASE), await create_tenant(admin)
    endpoints = {
        "strategy": f"127.0.0.1:{strategy_service.grpc_port}",
        "risk": f"127.0.0.1:{risk_service.grpc_port}",
        "execution": f"127.0.0.1:{runtime.grpc_port}",
    }
    async with make(searcher.owner_key, **endpoints) as client:
        yield {"runtime": runtime, "client": client, "user_key": user.owner_key, "searcher": searcher}
    await execution_harness.stop(runtime)


async def _balance(chain: DevnetChain, token: str, owner: str) -> int:
    return abi.decode_uint(await chain.client.call(token, abi.balance_of(owner)))


@pytest.mark.asyncio(loop_scope="session")
async def test_the_fleet_backruns_a_protected_swap_and_refunds_its_sender(
    fleet: dict[str, Any], devnet: Devnet, strategy_service: Any
) -> None:
    chain = devnet.main
    weth = chain.deployment.weth
    client = fleet["client"]
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
    for each in devnet.chains:
        await fund(each, wallet.address)
    config = strategy_config(
        chain.config,
        name=f"backrun-{uuid.uuid4().hex[:8]}",
        type_=common_pb2.STRATEGY_TYPE_BACKRUN,
        allocation=10 * 10**18,
        max_position=10 * 10**18,
    )
    strategy = (
        await strategies.CreateStrategy(
            strategy_pb2.CreateStrategyRequest(idempotency_key=str(uuid.uuid4()), config=config)
        )
    ).strategy
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
            assert status.session.state != common_pb2.EXECUTION_STATE_FAILED, status.last_error
            return status.session.state == common_pb2.EXECUTION_STATE_RUNNING

        await wait_for(running, timeout_s=60)
    assert isinstance(strategy_service, StrategyRuntime) and strategy_service.engine is not None
    engine = strategy_service.engine

    async def loaded() -> bool:
        return strategy.strategy_id in engine.running

    await wait_for(loaded)
    listed = await execution.ListWallets(execution_pb2.ListWalletsRequest())
    (executor,) = [
        e.address for w in listed.wallets for e in w.executors if e.chain_id == chain.spec.chain_id
    ]
    await mint_tokens(
        chain.client,
        chain.transact,
        chain.deployment,
        deployer=chain.deployer,
        to=executor,
        amounts={"WETH": 50 * 10**18},
    )

    # The user sells 1% of a WETH pool's token reserve on the first DEX through the Protect RPC.
    user = Account.create()
    await fund(chain, user.address)
    dex = chain.deployment.dexes[0]
    assert dex.router is not None
    pool = next(p for p in chain.deployment.pools if p.dex == dex.name and weth in (p.token0, p.token1))
    sold = pool.token1 if pool.token0 == weth else pool.token0
    symbol = next(t.symbol for t in chain.deployment.tokens if t.address == sold)
    r0, r1 = await reserves(chain, pool.address)
    reserve_in, reserve_out = (r0, r1) if pool.token0 == sold else (r1, r0)
    amount = reserve_in // 100
    await mint_tokens(
        chain.client,
        chain.transact,
        chain.deployment,
        deployer=chain.deployer,
        to=user.address,
        amounts={symbol: amount},
    )
    approve = await signed(
        chain, user, nonce=0, to=sold, data=abi.encode_call("approve(address,uint256)", dex.router, MAX_UINT)
    )
    chain.producer.submit_raw(bytes.fromhex(approve[2:]))
    await chain.mine()
    head = await chain.client.block_number()

    async def caught_up() -> bool:
        market = engine.view.chain(chain.spec.chain_id)
        return market is not None and market.block_number >= head

    await wait_for(caught_up)
    expected = get_amount_out(amount, reserve_in, reserve_out)
    data = abi.encode_call(
        SWAP_EXACT_TOKENS, amount, expected * 97 // 100, [sold, weth], user.address, NO_DEADLINE
    )
    raw = await signed(chain, user, nonce=1, to=dex.router, data=data, gas=300_000)
    url = (
        f"http://127.0.0.1:{fleet['runtime'].protect_rpc_port}/rpc/{chain.spec.chain_id}/{fleet['user_key']}"
    )
    tx_hash = (await call(url, "eth_sendRawTransaction", [raw]))["result"]

    async def bundled() -> execution_pb2.Execution | None:
        found = await execution.ListExecutions(execution_pb2.ListExecutionsRequest(session_id=session_id))
        return next(
            (e for e in found.executions if e.status == common_pb2.EXECUTION_RESULT_STATUS_SUBMITTED), None
        )

    try:
        submitted = await wait_for(bundled)
    except TimeoutError:
        found = await execution.ListExecutions(execution_pb2.ListExecutionsRequest(session_id=session_id))
        raise AssertionError(
            f"no backrun bundled; executions: {[(e.status, e.error) for e in found.executions]}"
        ) from None
    before = await _balance(chain, weth, user.address)
    (block,) = await chain.mine()
    (backrun_hash,) = submitted.tx_hashes
    assert block.transactions[:2] == [tx_hash, backrun_hash]
    user_receipt = await chain.client.get_receipt(tx_hash)
    receipt = await chain.client.get_receipt(backrun_hash)
    assert user_receipt is not None and receipt is not None
    event = decode_backrun(receipt, executor)
    assert event is not None and event.refund_to.lower() == user.address.lower()
    paid = int(user_receipt["gasUsed"], 16) * int(user_receipt["effectiveGasPrice"], 16)
    share = event.profit * 9_000 // 10_000
    assert event.gas_refund == paid and event.refund == share + paid
    assert await _balance(chain, weth, user.address) - before == expected + share + paid
    await chain.mine()  # a block on top of it books the backrun (the chain's confirmations)

    async def refunded() -> dict[str, Any] | None:
        result: dict[str, Any] = (await call(url, "mevaas_getTransactionStatus", [tx_hash]))["result"]
        return result if result.get("refund") else None

    status = await wait_for(refunded)
    assert (
        status["refund"]["amount"] == str(share + paid) and status["refund"]["backrunTxHash"] == backrun_hash
    )

    async def booked() -> execution_pb2.Execution | None:
        found = await execution.ListExecutions(execution_pb2.ListExecutionsRequest(session_id=session_id))
        return next(
            (e for e in found.executions if e.status == common_pb2.EXECUTION_RESULT_STATUS_INCLUDED), None
        )

    included = await wait_for(booked)
    # the searcher books what it kept, less its gas
    assert int(included.realized_profit) + int(included.gas_cost) == event.profit - event.refund
    await execution.StopExecution(execution_pb2.StopExecutionRequest(session_id=session_id))
