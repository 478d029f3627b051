"""Uniswap V3 on the devnet, deployed from the npm artifacts: the Python swap math
(``mevaas_chain.amm.v3``) over the state the reader takes from the pools equals, to the wei,
QuoterV2 over 1,000 random swaps (both directions, exact input and output, with and without a price
limit, many crossing initialised ticks) and the Swap events of real swaps through SwapRouter, one
after another in one block."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import pytest_asyncio

from mevaas_chain.amm import v3
from mevaas_chain.client import Call
from mevaas_chain.v3_pools import (
    decode_quote,
    decode_swap_log,
    exact_input_single,
    exact_output_single,
    quote_exact_input_single,
    quote_exact_output_single,
    read_pool_state,
)
from mevaas_local.devnet import Devnet
from mevaas_local.devnet.core import spec_prices
from mevaas_local.devnet.deploy import NO_DEADLINE, Batch, mint_tokens
from mevaas_local.devnet.uniswap_v3 import (
    DEFAULT_V3_POOLS,
    RANGES,
    V3Deployment,
    V3SwapCase,
    deploy_uniswap_v3,
    random_swap,
)

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def uniswap_v3(devnet: Devnet) -> V3Deployment:
    chain = devnet.main
    prices = {symbol: float(p) for symbol, p in spec_prices(chain.spec).items()}
    return await deploy_uniswap_v3(
        chain.client, chain.transact, chain.deployment, deployer=chain.deployer, prices=prices
    )


def quote_call(v3d: V3Deployment, case: V3SwapCase) -> Call:
    token_in, token_out = case.tokens
    encode = quote_exact_input_single if case.amount > 0 else quote_exact_output_single
    return Call(v3d.quoter, encode(token_in, token_out, case.pool.fee, abs(case.amount), case.limit or 0))


def quoted_amount(case: V3SwapCase, result: v3.V3SwapResult) -> int:
    """What QuoterV2 reports: the amount out for exact input, the amount in for exact output."""
    paid_in, paid_out = (
        (result.amount0, result.amount1) if case.zero_for_one else (result.amount1, result.amount0)
    )
    return -paid_out if case.amount > 0 else paid_in


async def test_pools_hold_liquidity_in_every_range(devnet: Devnet, uniswap_v3: V3Deployment) -> None:
    client = devnet.main.client
    assert [(p.fee, p.tick_spacing) for p in uniswap_v3.pools] == [
        (s.fee, {500: 10, 3000: 60, 10000: 200}[s.fee]) for s in DEFAULT_V3_POOLS
    ]
    for pool in uniswap_v3.pools:
        state = await read_pool_state(client, pool.address)
        assert (state.fee, state.tick_spacing) == (pool.fee, pool.tick_spacing)
        assert len(state.liquidity_net) == 2 * len(RANGES)
        assert sum(state.liquidity_net.values()) == 0
        # The in-range liquidity is what the ticks at or below the price add up to.
        assert state.liquidity == sum(net for tick, net in state.liquidity_net.items() if tick <= state.tick)
        assert v3.get_tick_at_sqrt_ratio(state.sqrt_price_x96) == state.tick


async def test_python_quotes_equal_quoter_v2(devnet: Devnet, uniswap_v3: V3Deployment) -> None:
    client = devnet.main.client
    block = await client.block_number()
    states = {p.address: await read_pool_state(client, p.address, block) for p in uniswap_v3.pools}
    rng = random.Random(1515)
    cases = [random_swap(rng, pool, states[pool.address]) for pool in rng.choices(uniswap_v3.pools, k=1000)]
    ours = [v3.swap(states[c.pool.address], c.zero_for_one, c.amount, c.limit) for c in cases]
    replies = await client.batch_call([quote_call(uniswap_v3, c) for c in cases], block)

    kinds: Counter[tuple[bool, bool, bool]] = Counter()
    crossing = 0
    for case, result, reply in zip(cases, ours, replies, strict=True):
        assert reply is not None, case
        quote = decode_quote(reply)
        assert (quote.amount, quote.sqrt_price_x96_after) == (
            quoted_amount(case, result),
            result.sqrt_price_x96,
        ), case
        kinds[case.zero_for_one, case.amount > 0, case.limit is not None] += 1
        crossing += result.initialized_ticks_crossed > 0
    assert len(kinds) == 8, kinds  # both directions x exact in/out x with/without a limit
    assert crossing >= 300, crossing


async def test_real_swaps_emit_the_predicted_events(devnet: Devnet, uniswap_v3: V3Deployment) -> None:
    chain = devnet.main
    states = {p.address: await read_pool_state(chain.client, p.address) for p in uniswap_v3.pools}
    # The deployer trades: its tokens went into the positions, so it gets plenty more first.
    grant = {t.symbol: 10**7 * 10**t.decimals for t in chain.deployment.tokens}
    await mint_tokens(
        chain.client,
        chain.transact,
        chain.deployment,
        deployer=chain.deployer,
        to=chain.deployer,
        amounts=grant,
    )
    rng = random.Random(151)
    batch = Batch(chain.client)
    predicted: list[v3.V3SwapResult] = []
    for pool in rng.choices(uniswap_v3.pools, k=80):
        case = random_swap(rng, pool, states[pool.address])
        result = v3.swap(states[pool.address], case.zero_for_one, case.amount, case.limit)
        states[pool.address] = result.apply(states[pool.address])
        predicted.append(result)
        token_in, token_out = case.tokens
        encode = exact_input_single if case.amount > 0 else exact_output_single
        call = encode(
            token_in,
            token_out,
            pool.fee,
            chain.deployer,
            abs(case.amount),
            limit=case.limit or 0,
            deadline=NO_DEADLINE,
        )
        await batch.call(chain.deployer, uniswap_v3.router, call, gas=1_500_000)
    receipts = await batch.flush(chain.transact)
    assert len({r["blockNumber"] for r in receipts}) == 1

    crossed = 0
    for receipt, result in zip(receipts, predicted, strict=True):
        (event,) = [e for e in map(decode_swap_log, receipt["logs"]) if e is not None]
        assert (event.amount0, event.amount1, event.sqrt_price_x96, event.liquidity, event.tick) == (
            result.amount0,
            result.amount1,
            result.sqrt_price_x96,
            result.liquidity,
            result.tick,
        )
        crossed += result.initialized_ticks_crossed > 0
    assert crossed >= 20, crossed
    for pool in uniswap_v3.pools:
        after = await read_pool_state(chain.client, pool.address)
        assert after == states[pool.address]
