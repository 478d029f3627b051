"""Uniswap V3 math against the vectors of v3-core's own tests (TickMath, SqrtPriceMath, SwapMath
specs, values the Solidity produced) and the invariants TickMath documents; the swap loop on a
hand-built pool. Equality with the deployed contracts is tests/integration/chain/test_uniswap_v3.py."""

from __future__ import annotations

import random
from math import isqrt

import pytest

from mevaas_chain.amm import v3
from mevaas_chain.amm.v3 import (
    MAX_SQRT_RATIO,
    MAX_TICK,
    MAX_UINT128,
    MAX_UINT160,
    MAX_UINT256,
    MIN_SQRT_RATIO,
    MIN_TICK,
    Q96,
    SwapStep,
    V3MathError,
    compute_swap_step,
    get_sqrt_ratio_at_tick,
    get_tick_at_sqrt_ratio,
)

# getSqrtRatioAtTick(+tick), getSqrtRatioAtTick(-tick), from v3-core's TickMath.spec.ts.
SQRT_RATIO_VECTORS = {
    50: (79426470787362580746886972461, 79030349367926598376800521322),
    100: (79625275426524748796330556128, 78833030112140176575862854579),
    250: (80224679980005306637834519095, 78244023372248365697264290337),
    500: (81233731461783161732293370115, 77272108795590369356373805297),
    1000: (83290069058676223003182343270, 75364347830767020784054125655),
    2500: (89776708723587163891445672585, 69919044979842180277688105136),
    3000: (92049301871182272007977902845, 68192822843687888778582228483),
    4000: (96768528593268422080558758223, 64867181785621769311890333195),
    5000: (101729702841318637793976746270, 61703726247759831737814779831),
    50000: (965075977353221155028623082916, 6504256538020985011912221507),
    150000: (143194173941309278083010301478497, 43836292794701720435367485),
    250000: (21246587762933397357449903968194344, 295440463448801648376846),
    500000: (5697689776495288729098254600827762987878, 1101692437043807371),
    738203: (847134979253254120489401328389043031315994541, 7409801140451),
}

TICK_VECTORS = [
    (MIN_SQRT_RATIO, MIN_TICK),
    (4295343490, MIN_TICK + 1),
    (79228162514264337593543, -276325),
    (79228162514264337593543950, -138163),
    (9903520314283042199192993792, -41591),
    (28011385487393069959365969113, -20796),
    (56022770974786139918731938227, -6932),
    (Q96, 0),
    (112045541949572279837463876454, 6931),
    (224091083899144559674927752909, 20795),
    (633825300114114700748351602688, 41590),
    (79228162514264337593543950336000, 138162),
    (79228162514264337593543950336000000, 276324),
    (1461373636630004318706518188784493106690254656249, MAX_TICK - 1),
    (MAX_SQRT_RATIO - 1, MAX_TICK - 1),
]


def _encode_price_sqrt(reserve1: int, reserve0: int) -> int:
    return isqrt(reserve1 * 2**192 // reserve0)


def test_sqrt_ratio_at_the_tick_bounds() -> None:
    assert get_sqrt_ratio_at_tick(MIN_TICK) == MIN_SQRT_RATIO
    assert get_sqrt_ratio_at_tick(MIN_TICK + 1) == 4295343490
    assert get_sqrt_ratio_at_tick(MAX_TICK - 1) == 1461373636630004318706518188784493106690254656249
    assert get_sqrt_ratio_at_tick(MAX_TICK) == MAX_SQRT_RATIO
    assert get_sqrt_ratio_at_tick(0) == Q96
    for tick in (MIN_TICK - 1, MAX_TICK + 1):
        with pytest.raises(V3MathError, match="T"):
            get_sqrt_ratio_at_tick(tick)


@pytest.mark.parametrize("tick", sorted(SQRT_RATIO_VECTORS))
def test_sqrt_ratio_matches_the_contract(tick: int) -> None:
    positive, negative = SQRT_RATIO_VECTORS[tick]
    assert get_sqrt_ratio_at_tick(tick) == positive
    assert get_sqrt_ratio_at_tick(-tick) == negative


@pytest.mark.parametrize(("sqrt_price", "tick"), TICK_VECTORS)
def test_tick_at_sqrt_ratio_matches_the_contract(sqrt_price: int, tick: int) -> None:
    assert get_tick_at_sqrt_ratio(sqrt_price) == tick


def test_tick_at_sqrt_ratio_rejects_prices_outside_the_range() -> None:
    for price in (MIN_SQRT_RATIO - 1, MAX_SQRT_RATIO, 0):
        with pytest.raises(V3MathError, match="R"):
            get_tick_at_sqrt_ratio(price)


def test_tick_is_the_greatest_whose_ratio_does_not_exceed_the_price() -> None:
    rng = random.Random(15)
    ticks = [MIN_TICK, MIN_TICK + 1, -1, 0, 1, MAX_TICK - 1] + [
        rng.randint(MIN_TICK, MAX_TICK - 1) for _ in range(3000)
    ]
    for tick in ticks:
        ratio = get_sqrt_ratio_at_tick(tick)
        assert get_tick_at_sqrt_ratio(ratio) == tick
        if tick > MIN_TICK:
            assert get_tick_at_sqrt_ratio(ratio - 1) == tick - 1
        assert get_tick_at_sqrt_ratio(get_sqrt_ratio_at_tick(tick + 1) - 1) == tick


def test_full_math_bounds() -> None:
    q128 = 1 << 128
    assert v3.mul_div(MAX_UINT256, MAX_UINT256, MAX_UINT256) == MAX_UINT256
    assert v3.mul_div(q128, 1000 * q128, 3000 * q128) == q128 // 3
    assert v3.mul_div_rounding_up(q128, 1000 * q128, 3000 * q128) == q128 // 3 + 1
    with pytest.raises(V3MathError):
        v3.mul_div(MAX_UINT256, MAX_UINT256, MAX_UINT256 - 1)
    with pytest.raises(V3MathError):
        v3.mul_div(1, 1, 0)


def test_sqrt_price_math_vectors() -> None:
    one, one_21 = _encode_price_sqrt(1, 1), _encode_price_sqrt(121, 100)
    assert v3.get_amount0_delta(one, one_21, 10**18, True) == 90909090909090910
    assert v3.get_amount0_delta(one, one_21, 10**18, False) == 90909090909090909
    assert v3.get_amount1_delta(one, one_21, 10**18, True) == 100000000000000000
    assert v3.get_amount1_delta(one, one_21, 10**18, False) == 99999999999999999
    # The product overflows 256 bits: the contract's fallback formula, down to the minimum price.
    amount = MAX_UINT256 - (MAX_UINT128 << 96) // MAX_UINT160
    assert v3.get_next_sqrt_price_from_input(MAX_UINT160, MAX_UINT128, amount, True) == 1
    assert v3.get_next_sqrt_price_from_input(1, 1, 2**255, True) == 1
    with pytest.raises(V3MathError):
        v3.get_next_sqrt_price_from_output(one, 1, 2**255, False)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        # exact input capped at the target price, one for zero
        (
            (_encode_price_sqrt(1, 1), _encode_price_sqrt(101, 100), 2 * 10**18, 10**18, 600),
            SwapStep(_encode_price_sqrt(101, 100), 9975124224178055, 9925619580021728, 5988667735148),
        ),
        # exact input fully spent before the target
        (
            (_encode_price_sqrt(1, 1), _encode_price_sqrt(1000, 100), 2 * 10**18, 10**18, 600),
            SwapStep(118818475322642227089037862318, 999400000000000000, 666399946655997866, 600000000000000),
        ),
        # exact output capped at the desired amount
        (
            (
                417332158212080721273783715441582,
                1452870262520218020823638996,
                159344665391607089467575320103,
                -1,
                1,
            ),
            SwapStep(417332158212080721273783715441581, 1, 1, 1),
        ),
        # the whole input is taken as fee
        (
            (2413, 79887613182836312, 1985041575832132834610021537970, 10, 1872),
            SwapStep(2413, 0, 0, 10),
        ),
        # intermediate insufficient liquidity, zero for one exact output
        (
            (20282409603651670423947251286016, 20282409603651670423947251286016 * 11 // 10, 1024, -4, 3000),
            SwapStep(20282409603651670423947251286016 * 11 // 10, 26215, 0, 79),
        ),
        (
            (
                20282409603651670423947251286016,
                20282409603651670423947251286016 * 9 // 10,
                1024,
                -263000,
                3000,
            ),
            SwapStep(20282409603651670423947251286016 * 9 // 10, 1, 26214, 1),
        ),
    ],
)
def test_compute_swap_step_vectors(args: tuple[int, int, int, int, int], expected: SwapStep) -> None:
    assert compute_swap_step(*args) == expected


def _pool(tick_spacing: int = 60) -> v3.V3PoolState:
    """Liquidity 10**18 in [-600, 600) plus 10**18 in [-120, 120) around price 1."""
    bitmap: dict[int, int] = {}
    net = {-600: 10**18, -120: 10**18, 120: -(10**18), 600: -(10**18)}
    for tick in net:
        v3.flip_tick(bitmap, tick, tick_spacing)
    gross = {tick: abs(n) for tick, n in net.items()}
    return v3.V3PoolState(3000, tick_spacing, Q96, 0, 2 * 10**18, bitmap, net, gross)


def test_swap_crosses_initialised_ticks_and_stops_at_the_limit() -> None:
    pool = _pool()
    small = v3.swap(pool, True, 10**15)
    assert small.initialized_ticks_crossed == 0 and small.liquidity == 2 * 10**18
    big = v3.swap(pool, True, 2 * 10**16)
    assert big.initialized_ticks_crossed == 1 and big.liquidity == 10**18 and big.tick < -120
    assert big.amount0 == 2 * 10**16 and big.amount1 < 0
    # Past the last range there is no liquidity: the price runs to the limit, input left unspent.
    limit = get_sqrt_ratio_at_tick(-1000)
    drained = v3.swap(pool, True, 10**20, limit)
    assert drained.sqrt_price_x96 == limit and drained.liquidity == 0 and drained.amount0 < 10**20
    assert drained.initialized_ticks_crossed == 2 and drained.tick == -1000


def test_exact_output_pays_what_exact_input_of_that_amount_yields() -> None:
    pool = _pool()
    for zero_for_one in (True, False):
        out = v3.swap(pool, zero_for_one, -(10**16))
        paid = out.amount0 if zero_for_one else out.amount1
        received = -(out.amount1 if zero_for_one else out.amount0)
        assert received == 10**16
        back = v3.swap(pool, zero_for_one, paid)
        assert -(back.amount1 if zero_for_one else back.amount0) >= 10**16


def test_swap_rejects_a_limit_on_the_wrong_side() -> None:
    pool = _pool()
    with pytest.raises(V3MathError, match="SPL"):
        v3.swap(pool, True, 10, get_sqrt_ratio_at_tick(10))
    with pytest.raises(V3MathError, match="SPL"):
        v3.swap(pool, False, 10, MAX_SQRT_RATIO)
    with pytest.raises(V3MathError, match="AS"):
        v3.swap(pool, False, 0)


def test_mint_then_burn_restores_the_pool_and_rounds_in_its_favour() -> None:
    pool = _pool()
    for lower, upper in ((-60, 60), (-1200, -600), (600, 1800), (-120, 600)):
        minted = v3.modify_position(pool, lower, upper, 10**17)
        assert minted.state.liquidity_gross[lower] >= 10**17 and minted.state.liquidity_gross[upper] >= 10**17
        burned = v3.modify_position(minted.state, lower, upper, -(10**17))
        assert burned.state == v3.modify_position(pool, lower, upper, 0).state
        # The minter pays rounded up, the burner is owed rounded down.
        assert 0 <= -burned.amount0 <= minted.amount0 <= -burned.amount0 + 1
        assert 0 <= -burned.amount1 <= minted.amount1 <= -burned.amount1 + 1
    in_range = v3.modify_position(pool, -60, 60, 10**17)
    assert (
        in_range.state.liquidity == pool.liquidity + 10**17 and in_range.amount0 > 0 and in_range.amount1 > 0
    )
    above = v3.modify_position(pool, 600, 1800, 10**17)
    assert above.state.liquidity == pool.liquidity and above.amount1 == 0 and above.amount0 > 0
    with pytest.raises(V3MathError, match="LS"):
        v3.modify_position(pool, -60, 60, -1)
    with pytest.raises(V3MathError, match="TLU"):
        v3.modify_position(pool, 60, 60, 1)
