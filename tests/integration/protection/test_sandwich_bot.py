"""The devnet's sandwich bot against a victim swap, on anvil with the relay: sent to the public
mempool it is sandwiched (front-run, victim, back-run at the top of one block) and the bot takes
exactly what the threat detector predicted from the pending feed; the same swap sent through the
Protect RPC never reaches the public pool and executes at the unattacked price."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from eth_account import Account
from eth_utils.crypto import keccak

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_chain import abi
from mevaas_chain.amm.v2 import get_amount_out
from mevaas_chain.client import ChainClient
from mevaas_chain.mempool import TxpoolPoller
from mevaas_chain.pool_index import Pool
from mevaas_core.bus import Bus, Delivery
from mevaas_core.runtime import ServiceRuntime
from mevaas_local.devnet import Devnet, DevnetChain
from mevaas_local.devnet.deploy import MAX_UINT, NO_DEADLINE, PoolInfo, mint_tokens
from mevaas_local.devnet.sandwich_bot import SWAP_EXACT_TOKENS, SandwichBot, start_bot
from mevaas_strategies.threats import PairBook, assess
from mevaas_strategy.server import StrategyRuntime
from tests.fixtures.devnet import reserves
from tests.fixtures.execution import ExecutionHarness, fund, wait_for
from tests.fixtures.platform import BOOTSTRAP_ADMIN_KEY
from tests.integration.execution.helpers import clients
from tests.integration.protection.helpers import call, signed
from tests.integration.tenancy.helpers import create_tenant

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def protect_url(
    execution_harness: ExecutionHarness, tenancy_service: Any, devnet: Devnet
) -> AsyncIterator[str]:
    runtime = await execution_harness.start(
        http_port=0, tenancy_address=f"127.0.0.1:{tenancy_service.grpc_port}", protect_max_blocks=25
    )
    async with clients(tenancy_service)(BOOTSTRAP_ADMIN_KEY) as admin:
        tenant = await create_tenant(admin)
    yield f"http://127.0.0.1:{runtime.protect_rpc_port}/rpc/{devnet.main.spec.chain_id}/{tenant.owner_key}"
    await execution_harness.stop(runtime)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bot(devnet: Devnet) -> AsyncIterator[SandwichBot]:
    bot = await start_bot(devnet.main)
    try:
        yield bot
    finally:
        await bot.stop()


async def _mint(chain: DevnetChain, to: str, usd_units: int) -> None:
    amounts = {t.symbol: usd_units * 10**t.decimals for t in chain.deployment.tokens if t.symbol != "WETH"}
    await mint_tokens(
        chain.client, chain.transact, chain.deployment, deployer=chain.deployer, to=to, amounts=amounts
    )


def _pool(chain: DevnetChain) -> tuple[PoolInfo, str, str]:
    """A pool of the first DEX between WETH and a minted token: (pool, token sold, token bought)."""
    weth = chain.deployment.weth
    dex = chain.deployment.dexes[0].name
    pool = next(p for p in chain.deployment.pools if p.dex == dex and weth in (p.token0, p.token1))
    sold = pool.token1 if pool.token0 == weth else pool.token0
    return pool, sold, weth


async def _victim(chain: DevnetChain) -> Any:
    user = Account.create()
    await fund(chain, user.address)
    await _mint(chain, user.address, 10**7)
    router = chain.deployment.dexes[0].router
    assert router is not None
    for i, token in enumerate(t.address for t in chain.deployment.tokens if t.symbol != "WETH"):
        raw = await signed(
            chain, user, nonce=i, to=token, data=abi.encode_call("approve(address,uint256)", router, MAX_UINT)
        )
        chain.producer.submit_raw(bytes.fromhex(raw[2:]))
    await chain.mine()
    return user


async def _swap(chain: DevnetChain, user: Any, nonce: int) -> tuple[str, int, int]:
    """A victim swap selling 1% of the pool's reserve of the token with 5% slippage:
    (raw transaction, expected output, amountOutMin)."""
    pool, sold, bought = _pool(chain)
    r0, r1 = await reserves(chain, pool.address)
    reserve_in, reserve_out = (r0, r1) if pool.token0 == sold else (r1, r0)
    amount = reserve_in // 100
    expected = get_amount_out(amount, reserve_in, reserve_out)
    minimum = expected * 95 // 100
    router = chain.deployment.dexes[0].router
    assert router is not None
    data = abi.encode_call(SWAP_EXACT_TOKENS, amount, minimum, [sold, bought], user.address, NO_DEADLINE)
    return await signed(chain, user, nonce=nonce, to=router, data=data, gas=300_000), expected, minimum


async def _balance(chain: DevnetChain, token: str, owner: str) -> int:
    return abi.decode_uint(await chain.client.call(token, abi.balance_of(owner)))


async def _book(chain: DevnetChain) -> PairBook:
    pools = []
    for p in chain.deployment.pools:
        r0, r1 = await reserves(chain, p.address)
        pools.append(Pool(p.address, p.dex, p.token0, p.token1, 30, r0, r1))
    return PairBook(pools)


@pytest.mark.asyncio(loop_scope="session")
async def test_a_public_swap_is_sandwiched_for_exactly_the_detected_amount(
    bot: SandwichBot, devnet: Devnet
) -> None:
    chain = devnet.main
    user = await _victim(chain)
    nonce = int(await chain.client.request("eth_getTransactionCount", [user.address, "latest"]), 16)
    raw, expected, minimum = await _swap(chain, user, nonce)
    _pool_info, sold, bought = _pool(chain)
    victim_hash = chain.producer.submit_raw(bytes.fromhex(raw[2:]))

    # The feed: the relay's public pool shows the decoded swap; the detector prices the threat.
    relay = ChainClient(chain.relay.url)
    try:
        seen = [
            tx for tx in await TxpoolPoller(relay, chain.spec.chain_id).poll() if tx.tx_hash == victim_hash
        ]
    finally:
        await relay.close()
    assert len(seen) == 1 and seen[0].swap is not None
    assert seen[0].swap.amount > 0 and seen[0].swap.bound == minimum
    routers = {d.router.lower(): d.name for d in chain.deployment.dexes if d.router}
    threat = assess(seen[0].swap, await _book(chain), routers)
    assert threat is not None and threat.token.lower() == sold.lower()

    before_bot = await _balance(chain, sold, bot.address)
    before_user = await _balance(chain, bought, user.address)
    (block,) = await chain.mine()
    (landed,) = [s for s in bot.landed if s.victim == victim_hash]
    # front-run, victim, back-run: the first three transactions of the block
    assert block.transactions[:3] == [landed.front_hash, victim_hash, landed.back_hash]
    took = await _balance(chain, sold, bot.address) - before_bot
    assert took == threat.attacker_profit == landed.expected_profit > 0
    assert landed.front_in == threat.front_run_amount
    got = await _balance(chain, bought, user.address) - before_user
    assert got == threat.attacked_amount and minimum <= got < expected
    assert expected - got == threat.exposure


@pytest.mark.asyncio(loop_scope="session")
async def test_the_same_swap_through_the_protect_rpc_is_not_sandwiched(
    bot: SandwichBot, protect_url: str, devnet: Devnet
) -> None:
    chain = devnet.main
    user = await _victim(chain)
    nonce = int(await chain.client.request("eth_getTransactionCount", [user.address, "latest"]), 16)
    raw, expected, _minimum = await _swap(chain, user, nonce)
    _pool_info, _sold, bought = _pool(chain)
    before_user = await _balance(chain, bought, user.address)
    landed_before = len(bot.landed)
    body = await call(protect_url, "eth_sendRawTransaction", [raw])
    tx_hash = body["result"]
    assert tx_hash == "0x" + keccak(hexstr=raw).hex()

    async def mined() -> dict[str, Any] | None:
        await chain.mine()
        return await chain.client.get_receipt(tx_hash)

    receipt = await wait_for(mined)
    assert int(receipt["status"], 16) == 1
    assert len(bot.landed) == landed_before
    block = await chain.client.get_block(int(receipt["blockNumber"], 16))
    assert block is not None
    senders = {
        (await chain.client.request("eth_getTransactionByHash", [h]))["from"].lower()
        for h in block["transactions"]
    }
    assert bot.address.lower() not in senders
    assert await _balance(chain, bought, user.address) - before_user == expected


@pytest.mark.asyncio(loop_scope="session")
async def test_the_fleet_detector_alerts_the_sender_s_tenant_with_the_bot_s_exact_take(
    bot: SandwichBot, strategy_service: ServiceRuntime[Any], devnet: Devnet, bus: Bus
) -> None:
    assert isinstance(strategy_service, StrategyRuntime)
    engine, watcher = strategy_service.engine, strategy_service.pending
    assert engine is not None and watcher is not None
    chain = devnet.main
    user = await _victim(chain)
    tenant_id = f"t-{uuid.uuid4().hex[:12]}"
    session = events_pb2.ExecutionSessionEvent(
        event_id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        session_id=f"s-{tenant_id}",
        strategy_id=f"st-{tenant_id}",
        state=common_pb2.EXECUTION_STATE_RUNNING,
        sequence=1,
        wallet_address=user.address,
    )
    session.occurred_at.GetCurrentTime()
    await bus.publish(
        f"exec.{tenant_id}.session", session, msg_id=f"{session.session_id}:1", tenant_id=tenant_id
    )

    async def known() -> bool:
        await watcher.reload_wallets()
        return watcher.wallets.get(user.address.lower()) == tenant_id

    await wait_for(known)
    head = await chain.client.block_number()

    async def caught_up() -> bool:
        market = engine.view.chain(chain.spec.chain_id)
        return market is not None and market.block_number >= head

    await wait_for(caught_up)

    threats: list[events_pb2.SandwichThreat] = []
    pending: list[events_pb2.PendingTransaction] = []

    async def on_threat(event: events_pb2.SandwichThreat, _delivery: Delivery) -> None:
        threats.append(event)

    async def on_pending(event: events_pb2.PendingTransaction, _delivery: Delivery) -> None:
        pending.append(event)

    threat_feed = await bus.subscribe(
        "PROTECT",
        f"test-threat-{tenant_id}",
        f"protect.{tenant_id}.threat",
        events_pb2.SandwichThreat,
        on_threat,
    )
    pending_feed = await bus.subscribe(
        "CHAIN",
        f"test-pending-{tenant_id}",
        f"chain.{chain.spec.chain_id}.pending",
        events_pb2.PendingTransaction,
        on_pending,
    )
    try:
        nonce = int(await chain.client.request("eth_getTransactionCount", [user.address, "latest"]), 16)
        raw, expected, minimum = await _swap(chain, user, nonce)
        _pool_info, sold, _bought = _pool(chain)
        victim_hash = chain.producer.submit_raw(bytes.fromhex(raw[2:]))

        async def alerted() -> bool:
            return any(t.tx_hash == victim_hash for t in threats) and any(
                p.tx_hash == victim_hash for p in pending
            )

        await wait_for(alerted)
        (threat,) = [t for t in threats if t.tx_hash == victim_hash]
        (seen,) = [p for p in pending if p.tx_hash == victim_hash]
        assert seen.swap.function == "swapExactTokensForTokens" and int(seen.swap.bound) == minimum
        assert threat.tenant_id == tenant_id and threat.sender.lower() == user.address.lower()
        assert threat.block_number == head and threat.token.lower() == sold.lower()
        assert int(threat.expected_amount) == expected
        # the advice: a bound above what this swap allowed, below the unattacked output (the
        # sandwich must stay worth its gas)
        assert threat.safe_slippage_bps < 500 and minimum < int(threat.safe_bound) < expected

        before_bot = await _balance(chain, sold, bot.address)
        await chain.mine()
        (landed,) = [s for s in bot.landed if s.victim == victim_hash]
        took = await _balance(chain, sold, bot.address) - before_bot
        assert took == int(threat.attacker_profit) == landed.expected_profit > 0
        assert int(threat.front_run_amount) == landed.front_in
    finally:
        await threat_feed.stop()
        await pending_feed.stop()
