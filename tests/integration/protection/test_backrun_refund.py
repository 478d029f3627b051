"""The order-flow auction end to end on the devnet (anvil, relay), real NATS, PostgreSQL, tenancy
and execution: a swap sent through the Protect RPC opens an auction (an OrderFlowHint with the
decoded swap on protect.<tenant>.hint); the platform's `backrun` strategy sizes its bid on the
post-swap state from that hint; once approved, execution bundles the user's transaction and the
backrun, which land adjacent in one block, and the user's address receives exactly 90% of the
backrun's profit plus its own gas (gasless), to the wei."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
import pytest_asyncio
from eth_account import Account
from google.protobuf import field_mask_pb2

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas.tenancy.v1 import tenancy_pb2
from mevaas_chain import abi
from mevaas_chain.amm.v2 import get_amount_out
from mevaas_chain.executor import decode_backrun
from mevaas_chain.pool_index import Pool
from mevaas_core.bus import Bus, Delivery
from mevaas_core.db import platform_transaction
from mevaas_local.devnet import Devnet, DevnetChain
from mevaas_local.devnet.deploy import MAX_UINT, NO_DEADLINE, mint_tokens
from mevaas_local.devnet.sandwich_bot import SWAP_EXACT_TOKENS
from mevaas_strategies.backrun import BackrunStrategy, hint_from_proto
from mevaas_strategies.market import ChainMarket, MarketView
from mevaas_strategies.model import StrategySpec, TokenRef
from mevaas_strategies.opportunity import opportunity_message
from tests.fixtures.devnet import reserves
from tests.fixtures.execution import (
    ExecutionHarness,
    approved,
    execution_stub,
    fund,
    publish_decision,
    wait_for,
)
from tests.fixtures.platform import BOOTSTRAP_ADMIN_KEY
from tests.integration.execution.helpers import clients, start_running, tenant_with_wallet
from tests.integration.protection.helpers import call, signed
from tests.integration.tenancy.helpers import create_tenant, field_violations

pytestmark = pytest.mark.integration


def _with_share(plan: common_pb2.Plan, bps: int) -> common_pb2.Plan:
    out = common_pb2.Plan()
    out.CopyFrom(plan)
    out.backrun_refund_bps = bps
    return out


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fleet(
    execution_harness: ExecutionHarness, tenancy_service: Any, devnet: Devnet
) -> AsyncIterator[dict[str, Any]]:
    runtime = await execution_harness.start(
        http_port=0, tenancy_address=f"127.0.0.1:{tenancy_service.grpc_port}", protect_max_blocks=25
    )
    async with clients(tenancy_service)(BOOTSTRAP_ADMIN_KEY) as admin:
        # One tenant on the platform's default share (90%), one whose plan refunds 50%.
        default_tenant = await create_tenant(admin)
        half_tenant = await create_tenant(admin, plan=_with_share(default_tenant.tenant.plan, 5_000))
    assert not default_tenant.tenant.plan.HasField("backrun_refund_bps")
    assert half_tenant.tenant.plan.backrun_refund_bps == 5_000
    chain_id = devnet.main.spec.chain_id

    def user(tenant: Any, bps: int) -> dict[str, Any]:
        return {
            "url": f"http://127.0.0.1:{runtime.protect_rpc_port}/rpc/{chain_id}/{tenant.owner_key}",
            "tenant_id": tenant.tenant.tenant_id,
            "key": tenant.owner_key,
            "bps": bps,
        }

    yield {
        "runtime": runtime,
        "users": {"default": user(default_tenant, 9_000), "half": user(half_tenant, 5_000)},
    }
    await execution_harness.stop(runtime)


async def _balance(chain: DevnetChain, token: str, owner: str) -> int:
    return abi.decode_uint(await chain.client.call(token, abi.balance_of(owner)))


async def _market(chain: DevnetChain) -> MarketView:
    pools = {}
    for p in chain.deployment.pools:
        r0, r1 = await reserves(chain, p.address)
        pools[p.address] = Pool(p.address, p.dex, p.token0, p.token1, 30, r0, r1)
    block = await chain.client.get_block("latest")
    assert block is not None
    market = ChainMarket(
        chain_id=chain.spec.chain_id,
        block_number=int(block["number"], 16),
        block_hash=block["hash"],
        base_fee=int(block.get("baseFeePerGas", "0x0"), 16),
        priority_fee=10**9,
        pools=pools,
        wrapped_native=chain.deployment.weth,
        symbols={t.address: t.symbol for t in chain.deployment.tokens},
        decimals={t.address: t.decimals for t in chain.deployment.tokens},
        block_time_s=1.0,
    )
    return MarketView(chains={chain.spec.chain_id: market})


def _spec(chain: DevnetChain, tenant_id: str, strategy_id: str) -> StrategySpec:
    weth = TokenRef(chain.spec.chain_id, chain.deployment.weth)
    return StrategySpec(
        strategy_id=strategy_id,
        tenant_id=tenant_id,
        version=1,
        type=common_pb2.STRATEGY_TYPE_BACKRUN,
        chain_ids=(chain.spec.chain_id,),
        tokens=(weth,),
        dexes=frozenset(),
        base_token=weth,
        allocation=1_000 * 10**18,
        max_position=1_000 * 10**18,
        max_hops=2,
        min_profit=0,
        max_slippage_bps=0,
        max_gas_price_wei=0,
        execution_delay_ms=0,
        retry_attempts=1,
        submission_mode=common_pb2.SUBMISSION_MODE_PRIVATE_BUNDLE,
    )


@dataclass(frozen=True)
class Searcher:
    tenant_id: str
    strategy_id: str
    executor: str


async def _searcher(fleet: dict[str, Any], devnet: Devnet, tenancy_service: Any) -> Searcher:
    """A tenant with a running backrun session, its executor holding WETH."""
    chain = devnet.main
    runtime = fleet["runtime"]
    searcher = await tenant_with_wallet(clients(tenancy_service), runtime, chain)
    strategy_id = str(uuid.uuid4())
    async with searcher.client:
        await start_running(searcher, list(devnet.chains), strategy_id=strategy_id)
        listed = await searcher.stub.ListWallets(execution_pb2.ListWalletsRequest())
    (executor,) = [
        e.address for w in listed.wallets for e in w.executors if e.chain_id == chain.spec.chain_id
    ]
    await mint_tokens(
        chain.client,
        chain.transact,
        chain.deployment,
        deployer=chain.deployer,
        to=executor,
        amounts={"WETH": 500 * 10**18},
    )
    return Searcher(searcher.tenant_id, strategy_id, executor)


async def _backrun_refund(
    fleet: dict[str, Any],
    user_tenant: dict[str, Any],
    searcher: Searcher,
    devnet: Devnet,
    bus: Bus,
    tenancy_service: Any,
) -> None:
    """A backrunnable swap of a new user sent through ``user_tenant``'s Protect URL: the backrun
    lands right after it and the user receives exactly the tenant's share of the profit plus its
    gas, shown on its status and its record."""
    chain = devnet.main
    runtime = fleet["runtime"]
    weth = chain.deployment.weth
    bps = user_tenant["bps"]
    executor = searcher.executor
    # The user: sells 2% of a WETH pool's token reserve on the first DEX, 3% slippage.
    user = Account.create()
    await fund(chain, user.address)
    dex = chain.deployment.dexes[0]
    assert dex.router is not None
    pool = next(p for p in chain.deployment.pools if p.dex == dex.name and weth in (p.token0, p.token1))
    sold = pool.token1 if pool.token0 == weth else pool.token0
    symbol = next(t.symbol for t in chain.deployment.tokens if t.address == sold)
    r0, r1 = await reserves(chain, pool.address)
    reserve_in, reserve_out = (r0, r1) if pool.token0 == sold else (r1, r0)
    amount = reserve_in // 50
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
    expected = get_amount_out(amount, reserve_in, reserve_out)
    data = abi.encode_call(
        SWAP_EXACT_TOKENS, amount, expected * 97 // 100, [sold, weth], user.address, NO_DEADLINE
    )
    raw = await signed(chain, user, nonce=1, to=dex.router, data=data, gas=300_000)

    hints: list[events_pb2.OrderFlowHint] = []

    async def on_hint(event: events_pb2.OrderFlowHint, _delivery: Delivery) -> None:
        hints.append(event)

    feed = await bus.subscribe(
        "PROTECT",
        f"test-hint-{uuid.uuid4().hex[:8]}",
        f"protect.{user_tenant['tenant_id']}.hint",
        events_pb2.OrderFlowHint,
        on_hint,
    )
    try:
        view = await _market(chain)
        body = await call(user_tenant["url"], "eth_sendRawTransaction", [raw])
        tx_hash = body["result"]

        async def hinted() -> events_pb2.OrderFlowHint | None:
            return next((h for h in hints if h.tx_hash == tx_hash), None)

        hint = await wait_for(hinted)
    finally:
        await feed.stop()
    assert hint.level == "amounts" and hint.refund_bps == bps and int(hint.swap.amount) == amount
    assert [p.lower() for p in hint.pools] == [pool.address.lower()] and int(hint.gas_cost_wei) > 0

    # The platform's backrun strategy bids from the hint alone.
    spec = _spec(chain, searcher.tenant_id, searcher.strategy_id)
    routers = {d.router.lower(): d.name for d in chain.deployment.dexes if d.router}
    (bid,) = BackrunStrategy(spec).on_hint(view, hint_from_proto(hint), routers)
    market = view.chain(chain.spec.chain_id)
    assert market is not None
    now = datetime.now(UTC)
    opportunity = opportunity_message(spec, bid, market, view, block_seen_at=now, detected_at=now)
    cycle = opportunity.backrun.cycle
    predicted = int(cycle.hops[-1].amount_out) - int(cycle.amount_in)
    gas_refund = int(opportunity.backrun.gas_refund)
    assert predicted > 0 and gas_refund == int(hint.gas_cost_wei)  # WETH: 1:1 with wei
    await publish_decision(bus, approved(opportunity))

    async def bundled() -> Any:
        async with platform_transaction(runtime.pool, readonly=True) as conn:
            return await conn.fetchrow(
                "SELECT * FROM execution.executions WHERE opportunity_id = $1 AND status = 'submitted'",
                opportunity.opportunity_id,
            )

    execution = await wait_for(bundled)
    before = await _balance(chain, weth, user.address)
    (block,) = await chain.mine()
    backrun_hash = execution["tx_hash"]
    assert block.transactions[:2] == [tx_hash, backrun_hash]
    user_receipt = await chain.client.get_receipt(tx_hash)
    receipt = await chain.client.get_receipt(backrun_hash)
    assert user_receipt is not None and receipt is not None and int(receipt["status"], 16) == 1
    event = decode_backrun(receipt, executor)
    assert event is not None
    share = predicted * bps // 10_000
    # Gasless: what the user paid for gas came back, to the wei (the hint's estimate was close).
    paid = int(user_receipt["gasUsed"], 16) * int(user_receipt["effectiveGasPrice"], 16)
    assert event.profit == predicted and event.gas_refund == paid
    assert abs(gas_refund - paid) * 10 < paid
    assert event.refund == share + paid and event.refund_to.lower() == user.address.lower()
    received = await _balance(chain, weth, user.address) - before
    assert received == expected + share + paid

    await chain.mine()  # a block on top of it books the backrun (the chain's confirmations)

    # The refund is on the protected transaction's record and in its status.
    async def refunded() -> dict[str, Any] | None:
        body = await call(user_tenant["url"], "mevaas_getTransactionStatus", [tx_hash])
        result: dict[str, Any] = body["result"]
        return result if result.get("refund") else None

    status = await wait_for(refunded)
    assert status["refund"] == {
        "backrunTxHash": backrun_hash,
        "backrunProfit": str(predicted),
        "token": weth,
        "amount": str(share + paid),
        "gasRefund": str(paid),
        "shareBps": bps,
    }
    assert status["refundShareBps"] == bps
    # The same on its gRPC record (GetProtectedTransaction).
    user_client = clients(tenancy_service)(user_tenant["key"], execution=f"127.0.0.1:{runtime.grpc_port}")
    async with user_client:
        got = await execution_stub(user_client).GetProtectedTransaction(
            execution_pb2.GetProtectedTransactionRequest(tx_hash=tx_hash)
        )
    assert got.transaction.refund_share_bps == bps and got.transaction.refund.share_bps == bps
    assert int(got.transaction.refund.amount) == share + paid
    assert int(got.transaction.refund.backrun_profit) == predicted


@pytest.mark.asyncio(loop_scope="session")
async def test_each_tenant_is_refunded_its_own_share_of_the_backrun_to_the_wei(
    fleet: dict[str, Any], devnet: Devnet, bus: Bus, tenancy_service: Any
) -> None:
    """A tenant whose plan sets 50% gets exactly half of the backrun's profit (plus its gas); a
    tenant with no share in its plan keeps the platform's 90%, through the same auction."""
    searcher = await _searcher(fleet, devnet, tenancy_service)
    users = fleet["users"]
    await _backrun_refund(fleet, users["half"], searcher, devnet, bus, tenancy_service)
    await _backrun_refund(fleet, users["default"], searcher, devnet, bus, tenancy_service)


@pytest.mark.asyncio(loop_scope="session")
async def test_a_refund_share_above_100_percent_is_refused_naming_the_field(tenancy_service: Any) -> None:
    async with clients(tenancy_service)(BOOTSTRAP_ADMIN_KEY) as admin:
        tenant = await create_tenant(admin)
        plan = _with_share(tenant.tenant.plan, 10_001)
        with pytest.raises(grpc.aio.AioRpcError) as created:
            await create_tenant(admin, plan=plan)
        with pytest.raises(grpc.aio.AioRpcError) as updated:
            await admin.tenants.UpdateTenant(
                tenancy_pb2.UpdateTenantRequest(
                    tenant=tenancy_pb2.Tenant(tenant_id=tenant.tenant.tenant_id, plan=plan),
                    update_mask=field_mask_pb2.FieldMask(paths=["plan"]),
                )
            )
    for error, field in (
        (created.value, "plan.backrun_refund_bps"),
        (updated.value, "tenant.plan.backrun_refund_bps"),
    ):
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(error) == [field]
