"""Uniswap V3 on the devnet, deployed from the npm artifacts: the Python swap math
(``mevaas_chain.amm.v3``) over the state the reader takes from the pools equals, to the wei,
QuoterV2 over 1,000 random swaps (both directions, exact input and output, with and without a price
limit, many crossing initialised ticks) and the Swap events of real swaps through SwapRouter, one
after another in one block."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace

import pytest
import pytest_asyncio

from mevaas_chain.amm import v3
from mevaas_chain.client import Call
from mevaas_chain.v3_pools import (
    decode_position_log,
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
from mevaas_local.devnet.deploy import NO_DEADLINE, Batch
from mevaas_local.devnet.uniswap_v3 import (
    DEFAULT_V3_POOLS,
    RANGES,
    V3Deployment,
    V3SwapCase,
    decrease_liquidity_call,
    mint_position_call,
    position_liquidity_call,
    random_swap,
)
from tests.fixtures.uniswap_v3 import deploy_funded_v3

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def uniswap_v3(devnet: Devnet) -> V3Deployment:
    return await deploy_funded_v3(devnet.main)


def quote_call(v3d: V3Deployment, case: V3SwapCase) -> Call:
    token_in, token_out = case.tokens
    encode = quote_exact_input_single if case.amount > 0 else quote_exact_output_single
    return Call(v3d.quoter, encode(token_in, token_out, case.pool.fee, abs(case.amount), case.limit or 0))


def router_swap(case: V3SwapCase, recipient: str) -> bytes:
    """SwapRouter calldata for ``case`` (exactInputSingle or exactOutputSingle)."""
    token_in, token_out = case.tokens
    encode = exact_input_single if case.amount > 0 else exact_output_single
    return encode(
        token_in,
        token_out,
        case.pool.fee,
        recipient,
        abs(case.amount),
        limit=case.limit or 0,
        deadline=NO_DEADLINE,
    )


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
    rng = random.Random(151)
    batch = Batch(chain.client)
    predicted: list[v3.V3SwapResult] = []
    for pool in rng.choices(uniswap_v3.pools, k=80):
        case = random_swap(rng, pool, states[pool.address])
        result = v3.swap(states[pool.address], case.zero_for_one, case.amount, case.limit)
        states[pool.address] = result.apply(states[pool.address])
        predicted.append(result)
        await batch.call(chain.deployer, uniswap_v3.router, router_swap(case, chain.deployer), gas=1_500_000)
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


async def test_state_follows_mints_burns_and_swaps(devnet: Devnet, uniswap_v3: V3Deployment) -> None:
    """New positions (new ticks), partial and full burns of the seeded ones (full burns of the
    one-sided ranges clear their ticks) and swaps, interleaved in one block: applying each event
    to the Python state predicts every event's amounts and, at the end, the pools' whole state."""
    chain = devnet.main
    states = {p.address: await read_pool_state(chain.client, p.address) for p in uniswap_v3.pools}
    before = {a: set(s.liquidity_net) for a, s in states.items()}
    # Position ids follow the deployment's mint order: len(RANGES) per pool; skip the full ranges.
    seeded = [
        (pool, 1 + i * len(RANGES) + r)
        for i, pool in enumerate(uniswap_v3.pools)
        for r in range(1, len(RANGES))
    ]
    liquidity = {
        token_id: int.from_bytes(reply[7 * 32 : 8 * 32], "big")
        for (_, token_id), reply in zip(
            seeded,
            await chain.client.batch_call(
                [Call(uniswap_v3.position_manager, position_liquidity_call(t)) for _, t in seeded]
            ),
            strict=True,
        )
        if reply is not None
    }
    prices = spec_prices(chain.spec)
    usd = {t.address: float(prices[t.symbol]) for t in chain.deployment.tokens}
    decimals = {t.address: t.decimals for t in chain.deployment.tokens}
    rng = random.Random(1516)
    burns = rng.sample(seeded, 12)
    batch = Batch(chain.client)
    swaps: list[V3SwapCase | None] = []
    for step in range(48):
        pool = rng.choice(uniswap_v3.pools)
        kind = step % 4
        if kind == 0 and burns:
            _, token_id = burns.pop()
            amount = liquidity[token_id] if rng.random() < 0.5 else liquidity[token_id] // 2
            await batch.call(
                chain.deployer,
                uniswap_v3.position_manager,
                decrease_liquidity_call(token_id, amount),
                gas=1_500_000,
            )
            swaps.append(None)
        elif kind == 1:
            tick, spacing = states[pool.address].tick, pool.tick_spacing
            lower = (tick + rng.randint(-9000, 6000)) // spacing * spacing
            upper = lower + spacing * rng.randint(1, 400)
            # $1k to $300k of each token; the position manager takes what the range needs.
            amount0, amount1 = (
                int(rng.uniform(1e3, 3e5) / usd[t] * 10 ** decimals[t]) for t in (pool.token0, pool.token1)
            )
            await batch.call(
                chain.deployer,
                uniswap_v3.position_manager,
                mint_position_call(pool, lower, upper, amount0, amount1, chain.deployer),
                gas=1_500_000,
            )
            swaps.append(None)
        else:
            # No limit: mints and burns before it move the price, so a limit could end on the wrong side.
            case = replace(random_swap(rng, pool, states[pool.address]), limit=None)
            await batch.call(
                chain.deployer, uniswap_v3.router, router_swap(case, chain.deployer), gas=1_500_000
            )
            swaps.append(case)
    receipts = await batch.flush(chain.transact)
    assert len({r["blockNumber"] for r in receipts}) == 1

    for receipt, step_case in zip(receipts, swaps, strict=True):
        if step_case is not None:
            case = step_case
            (event,) = [e for e in map(decode_swap_log, receipt["logs"]) if e is not None]
            result = v3.swap(states[event.pool], case.zero_for_one, case.amount, case.limit)
            assert (event.amount0, event.amount1, event.sqrt_price_x96, event.liquidity, event.tick) == (
                result.amount0,
                result.amount1,
                result.sqrt_price_x96,
                result.liquidity,
                result.tick,
            )
            states[event.pool] = result.apply(states[event.pool])
            continue
        (change,) = [e for e in map(decode_position_log, receipt["logs"]) if e is not None]
        predicted = v3.modify_position(
            states[change.pool], change.tick_lower, change.tick_upper, change.liquidity_delta
        )
        # Mint and Burn report amounts unsigned: owed to the pool, and owed to the owner.
        sign = 1 if change.liquidity_delta > 0 else -1
        assert (change.amount0, change.amount1) == (sign * predicted.amount0, sign * predicted.amount1)
        states[change.pool] = predicted.state

    added = removed = 0
    for pool in uniswap_v3.pools:
        after = await read_pool_state(chain.client, pool.address)
        assert after == states[pool.address]
        added += len(set(after.liquidity_net) - before[pool.address])
        removed += len(before[pool.address] - set(after.liquidity_net))
    assert added >= 10 and removed >= 2, (added, removed)
