"""Sizing cycles through Uniswap V3 pools (`amm.mixed`): on small pools with liquidity in several
tick ranges, the search's input is locally certified against the realised integer profit, its
profit is within one wei per hop of the brute-force optimum, and V2-only routes keep the closed
form."""

from __future__ import annotations

import random

import pytest

from mevaas_chain.amm import v3
from mevaas_chain.amm.arbitrage import ConcentratedPool, Hop, Pool, optimize, optimize_cycle, optimize_route
from mevaas_chain.amm.mixed import V3Leg, route_amounts, search_optimum
from mevaas_chain.amm.v2 import SwapLeg


def small_v3_pool(
    rng: random.Random, tick: int, spacing: int = 60, fee: int = 3000, liquidity: int = 10**6
) -> v3.V3PoolState:
    """A pool at ``tick`` with four overlapping narrow positions, so swaps cross initialised ticks."""
    state = v3.V3PoolState(
        fee=fee, tick_spacing=spacing, sqrt_price_x96=v3.get_sqrt_ratio_at_tick(tick), tick=tick, liquidity=0
    )
    base = tick // spacing * spacing
    for _ in range(4):
        lower, upper = base - spacing * rng.randint(1, 6), base + spacing * rng.randint(1, 6)
        state = v3.modify_position(state, lower, upper, rng.randint(liquidity // 10, liquidity)).state
    return state


def gapped_route(seed: int) -> list[SwapLeg | V3Leg]:
    """A V3 hop and a V2 hop back, the V2 pool priced 1-6% off the V3 pool, in a random order."""
    rng = random.Random(seed)
    state = small_v3_pool(rng, rng.randint(-50, 50))
    zero_for_one = rng.random() < 0.5
    price = state.sqrt_price_x96**2 / 2**192
    rate = price if zero_for_one else 1 / price
    reserve = rng.randint(10**5, 10**6)
    back = int(reserve * (1 + rng.uniform(0.01, 0.06)) / rate)
    if rng.random() < 0.5:
        return [V3Leg("0xv3", state, zero_for_one), SwapLeg(reserve, back, 30)]
    return [SwapLeg(back, reserve, 30), V3Leg("0xv3", state, not zero_for_one)]


def profit(x: int, legs: list[SwapLeg | V3Leg]) -> int | None:
    amounts = route_amounts(x, legs)
    return None if amounts is None else amounts[-1] - x


def brute_force(legs: list[SwapLeg | V3Leg], limit: int) -> int:
    best = 0
    for x in range(1, limit):
        p = profit(x, legs)
        if p is None:
            break
        best = max(best, p)
    return best


@pytest.mark.parametrize("seed", range(12))
def test_search_is_certified_and_within_rounding_of_brute_force(seed: int) -> None:
    legs = gapped_route(seed)
    found = search_optimum(legs)
    # Profit is concave up to rounding: nothing beyond a few times the optimum can beat it.
    expected = brute_force(legs, 20_000 if found is None else 3 * found.amounts[0])
    if found is None:
        # Nothing profits beyond a wei of rounding per hop.
        assert expected <= len(legs)
        return
    x = found.amounts[0]
    assert found.certified
    assert list(found.amounts) == route_amounts(x, legs)
    left, right = profit(x - 1, legs), profit(x + 1, legs)
    assert left is not None and right is not None
    assert found.profit >= max(left, right)
    assert expected - len(legs) <= found.profit <= expected


def test_no_gap_no_opportunity() -> None:
    rng = random.Random(5)
    state = small_v3_pool(rng, 0)
    # A V2 pool at the V3 pool's own price: both fees make every round trip lose.
    legs: list[SwapLeg | V3Leg] = [V3Leg("0xv3", state, True), SwapLeg(10**6, 10**6, 30)]
    assert search_optimum(legs) is None
    assert brute_force(legs, 20_000) == 0


def test_route_through_two_v3_pools_crosses_ticks() -> None:
    rng = random.Random(9)
    cheap = small_v3_pool(rng, -900, liquidity=10**5)
    dear = small_v3_pool(rng, 900, fee=500, spacing=10, liquidity=10**5)
    legs: list[SwapLeg | V3Leg] = [V3Leg("0xa", cheap, False), V3Leg("0xb", dear, True)]
    found = search_optimum(legs)
    assert found is not None and found.certified
    crossed = [
        v3.swap(cheap, False, found.amounts[0]).initialized_ticks_crossed,
        v3.swap(dear, True, found.amounts[1]).initialized_ticks_crossed,
    ]
    assert sum(crossed) > 0, crossed
    assert found.profit >= brute_force(legs, 4 * found.amounts[0]) - len(legs)


def test_v2_routes_keep_the_closed_form() -> None:
    legs = [SwapLeg(10**21, 3 * 10**24, 30), SwapLeg(3 * 10**24, 1_02 * 10**19, 25)]
    assert optimize_route(legs) == optimize(legs)


def test_cycles_mix_v2_and_v3_pools() -> None:
    rng = random.Random(3)
    state = small_v3_pool(rng, 0)
    v3_pool = ConcentratedPool("0xv3", "0xa", "0xb", state)
    v2_pool = Pool("0xv2", "0xa", "0xb", 10**6, 1_05 * 10**4, 30)
    result = optimize_cycle([Hop.from_token_in(v3_pool, "0xb"), Hop.from_token_in(v2_pool, "0xa")])
    assert result is not None and result.proven_optimal
    assert list(result.amounts) == route_amounts(result.amount_in, [v3_pool.leg(False), v2_pool.leg(True)])
    assert optimize_cycle([Hop.from_token_in(v2_pool, "0xb"), Hop.from_token_in(v3_pool, "0xa")]) is None
