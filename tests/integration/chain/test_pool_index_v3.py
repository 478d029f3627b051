"""The pool index follows Uniswap V3 pools on the devnet: after blocks of random swaps, new positions
and partial or full burns, every pool's indexed state (price, tick, liquidity, bitmap, net and gross
liquidity per tick) equals ``read_pool_state`` at the index head; a reorg rewinds them, and a pool
created and seeded after the snapshot is picked up from its factory's logs."""

from __future__ import annotations

import random

import pytest
import pytest_asyncio

from mevaas_chain import abi
from mevaas_chain.client import Call
from mevaas_chain.pool_index import BlockUpdate, PoolIndex, Reorg
from mevaas_chain.registry import V3DexConfig
from mevaas_chain.v3_pools import exact_input_single, exact_output_single, read_pool_state
from mevaas_local.devnet import Devnet
from mevaas_local.devnet.core import spec_prices
from mevaas_local.devnet.deploy import NO_DEADLINE, Batch
from mevaas_local.devnet.uniswap_v3 import (
    RANGES,
    V3Deployment,
    V3Pool,
    decrease_liquidity_call,
    mint_position_call,
    pool_address,
    position_liquidity_call,
    random_swap,
    sqrt_price_x96,
)
from tests.fixtures.uniswap_v3 import deploy_funded_v3

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def uniswap_v3(devnet: Devnet) -> V3Deployment:
    return await deploy_funded_v3(devnet.main)


def _index(devnet: Devnet, v3d: V3Deployment, depth: int = 64) -> PoolIndex:
    chain = devnet.main
    return PoolIndex(
        chain.client,
        chain.deployment.dexes,
        v3_dexes=[V3DexConfig(name="uniswap_v3", factory=v3d.factory, router=v3d.router)],
        depth=depth,
    )


async def _assert_v3_matches_chain(index: PoolIndex, devnet: Devnet) -> None:
    number = index.head[0]
    assert await index.verify() == []
    for address, pool in index.v3_pools.items():
        assert pool.state == await read_pool_state(devnet.main.client, address, number), address


async def _random_ops(
    devnet: Devnet, v3d: V3Deployment, index: PoolIndex, rng: random.Random, count: int
) -> None:
    """``count`` swaps, mints of random ranges and burns of seeded positions, mined in one block."""
    chain = devnet.main
    prices = spec_prices(chain.spec)
    usd = {t.address: float(prices[t.symbol]) for t in chain.deployment.tokens}
    decimals = {t.address: t.decimals for t in chain.deployment.tokens}
    seeded = [1 + i * len(RANGES) + r for i in range(len(v3d.pools)) for r in range(1, len(RANGES))]
    replies = await chain.client.batch_call(
        [Call(v3d.position_manager, position_liquidity_call(t)) for t in seeded]
    )
    liquidity = {
        t: int.from_bytes(reply[7 * 32 : 8 * 32], "big")
        for t, reply in zip(seeded, replies, strict=True)
        if reply
    }
    burnable = [t for t in seeded if liquidity.get(t)]
    batch = Batch(chain.client)
    for step in range(count):
        pool = rng.choice(v3d.pools)
        state = index.v3_pools[pool.address].state
        kind = step % 4
        if kind == 0 and burnable:
            token_id = burnable.pop(rng.randrange(len(burnable)))
            amount = liquidity[token_id] if rng.random() < 0.5 else liquidity[token_id] // 2
            data = decrease_liquidity_call(token_id, amount)
            await batch.call(chain.deployer, v3d.position_manager, data, gas=1_500_000)
        elif kind == 1:
            lower = (state.tick + rng.randint(-9000, 6000)) // pool.tick_spacing * pool.tick_spacing
            upper = lower + pool.tick_spacing * rng.randint(1, 400)
            amount0, amount1 = (
                int(rng.uniform(1e3, 3e5) / usd[t] * 10 ** decimals[t]) for t in (pool.token0, pool.token1)
            )
            data = mint_position_call(pool, lower, upper, amount0, amount1, chain.deployer)
            await batch.call(chain.deployer, v3d.position_manager, data, gas=1_500_000)
        else:
            # No limit: earlier operations in the block move the price the swap was sized at.
            case = random_swap(rng, pool, state)
            token_in, token_out = case.tokens
            encode = exact_input_single if case.amount > 0 else exact_output_single
            data = encode(
                token_in, token_out, pool.fee, chain.deployer, abs(case.amount), deadline=NO_DEADLINE
            )
            await batch.call(chain.deployer, v3d.router, data, gas=1_500_000)
    # Some operations may revert (a swap draining a range): the index must follow whatever landed.
    await chain.transact(batch.txs)


async def test_index_follows_v3_swaps_mints_and_burns(devnet: Devnet, uniswap_v3: V3Deployment) -> None:
    index = _index(devnet, uniswap_v3)
    await index.load()
    assert set(index.v3_pools) == {p.address for p in uniswap_v3.pools}
    await _assert_v3_matches_chain(index, devnet)
    rng = random.Random(4242)
    touched: set[str] = set()
    for _ in range(4):
        await _random_ops(devnet, uniswap_v3, index, rng, 24)
        for event in await index.sync():
            assert isinstance(event, BlockUpdate)
            touched |= event.changed
    assert {p.address for p in uniswap_v3.pools} <= touched
    await _assert_v3_matches_chain(index, devnet)


async def test_reorg_rewinds_v3_pools(devnet: Devnet, uniswap_v3: V3Deployment) -> None:
    chain = devnet.main
    index = _index(devnet, uniswap_v3, depth=16)
    await index.load()
    before = dict(index.v3_pools)
    snapshot = await chain.client.request("evm_snapshot")
    rng = random.Random(77)
    await _random_ops(devnet, uniswap_v3, index, rng, 16)
    await index.sync()
    assert any(index.v3_pools[a] != before[a] for a in before)

    await chain.client.request("evm_revert", [snapshot])
    await _random_ops(devnet, uniswap_v3, index, rng, 12)
    await chain.mine()
    events = await index.sync()
    assert isinstance(events[0], Reorg)
    assert {p.address for p in uniswap_v3.pools} & events[0].rewound
    await _assert_v3_matches_chain(index, devnet)


async def test_index_picks_up_new_v3_pools(devnet: Devnet, uniswap_v3: V3Deployment) -> None:
    chain = devnet.main
    index = _index(devnet, uniswap_v3)
    await index.load()
    wbtc, usdc = chain.deployment.token("WBTC"), chain.deployment.token("USDC")
    (t0, d0, p0), (t1, d1, p1) = sorted(
        [(wbtc.address, wbtc.decimals, 60_000.0), (usdc.address, usdc.decimals, 1.0)],
        key=lambda t: abi.sort_tokens(wbtc.address, usdc.address).index(t[0]),
    )
    fee, spacing = 500, 10
    pool = V3Pool(pool_address(uniswap_v3.factory, t0, t1, fee), t0, t1, fee, spacing)
    start = sqrt_price_x96(p0, d0, p1, d1)
    batch = Batch(chain.client)
    create = "createAndInitializePoolIfNecessary(address,address,uint24,uint160)"
    await batch.call(
        chain.deployer,
        uniswap_v3.position_manager,
        abi.encode_call(create, t0, t1, fee, start),
        gas=6_000_000,
    )
    await batch.call(
        chain.deployer,
        uniswap_v3.position_manager,
        mint_position_call(pool, -887270, 887270, 10**7, 10**9, chain.deployer),
        gas=1_500_000,
    )
    await batch.flush(chain.transact)
    (update,) = await index.sync()
    assert isinstance(update, BlockUpdate)
    assert update.new_pools == {pool.address}
    assert index.v3_pools[pool.address].dex == "uniswap_v3"
    assert index.v3_pools[pool.address].state.liquidity > 0
    await _assert_v3_matches_chain(index, devnet)
