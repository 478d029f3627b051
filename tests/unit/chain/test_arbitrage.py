"""Closed-form cycle sizing: exact optimum on small reserves, beats +-1% on large ones."""

from __future__ import annotations

from decimal import Decimal, localcontext
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mevaas_chain.amm.arbitrage import (
    Hop,
    Pool,
    closed_form_input,
    compose,
    optimize,
    optimize_cycle,
    profit_upper_bound,
    realised_profit,
    virtual_pool,
)
from mevaas_chain.amm.v2 import SwapLeg, amounts_out

small = st.integers(min_value=50, max_value=3_000)
fees = st.sampled_from([0, 25, 30])


def brute_force(legs: list[SwapLeg], limit: int) -> tuple[int, int]:
    """(best profit, smallest input achieving it), (0, 0) if nothing is profitable."""
    best = (0, 0)
    for x in range(1, limit):
        try:
            profit = realised_profit(x, legs)
        except ValueError:
            continue
        if profit > best[0]:
            best = (profit, x)
    return best


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(small, small, fees), min_size=2, max_size=3))
def test_refinement_finds_the_brute_force_optimum(raw: list[tuple[int, int, int]]) -> None:
    legs = [SwapLeg(*leg) for leg in raw]
    expected = brute_force(legs, 3 * max(max(r, s) for r, s, _ in raw))
    result = optimize(legs)
    if expected[0] == 0:
        assert result is None
        return
    assert result is not None
    assert (result.profit, result.amount_in) == expected
    assert result.proven_optimal
    assert result.profit <= profit_upper_bound(legs)
    assert list(result.amounts) == amounts_out(result.amount_in, legs)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=10**18, max_value=10**26),
    st.integers(min_value=10**6, max_value=10**26),
    st.floats(min_value=0.01, max_value=0.2),
    st.integers(min_value=10**18, max_value=10**26),
)
def test_optimum_beats_one_percent_either_side(r_a: int, r_b: int, gap: float, r_c: int) -> None:
    # Three pools whose prices multiply to 1 + gap around the cycle.
    legs = [SwapLeg(r_a, r_b), SwapLeg(r_b, int(r_c * (1 + gap))), SwapLeg(r_c, r_a)]
    result = optimize(legs)
    assert result is not None
    for scale in (0.99, 1.01):
        assert result.profit > realised_profit(int(result.amount_in * scale), legs)
    assert result.profit == realised_profit(result.amount_in, legs)


def brief_virtual_pool(legs: list[SwapLeg]) -> tuple[Fraction, Fraction, Fraction]:
    """(E0, E1, g) by folding (a, b) o (c, d) -> (a*c / (c + g2*b), g2*b*d / (c + g2*b)) exactly."""
    e0, e1 = Fraction(legs[0].reserve_in), Fraction(legs[0].reserve_out)
    for r, s, fee in legs[1:]:
        g2 = Fraction(10_000 - fee, 10_000)
        e0, e1 = e0 * r / (r + g2 * e1), g2 * e1 * s / (r + g2 * e1)
    return e0, e1, Fraction(10_000 - legs[0].fee_bps, 10_000)


@settings(max_examples=200)
@given(
    st.lists(st.tuples(st.integers(10**9, 10**24), st.integers(10**9, 10**24), fees), min_size=1, max_size=3)
)
def test_closed_form_is_the_virtual_pool_formula(raw: list[tuple[int, int, int]]) -> None:
    legs = [SwapLeg(*leg) for leg in raw]
    e0, e1, g = brief_virtual_pool(legs)
    fe0, fe1, fg = virtual_pool(legs)
    assert (fe0, fe1, fg) == pytest.approx((float(e0), float(e1), float(g)), rel=1e-12)
    # The composed pool reproduces the hop-by-hop (continuous) output.
    x = Fraction(raw[0][0], 1000)
    sequential = x
    for r, s, fee in raw:
        gamma = Fraction(10_000 - fee, 10_000)
        sequential = gamma * s * sequential / (r + gamma * sequential)
    assert g * e1 * x / (e0 + g * x) == sequential
    # x* = (sqrt(g*E0*E1) - E0) / g, floored, with 60 significant digits.
    with localcontext() as ctx:
        ctx.prec = 120
        x_star = ((Decimal(g.numerator) / g.denominator * _dec(e0) * _dec(e1)).sqrt() - _dec(e0)) / (
            Decimal(g.numerator) / g.denominator
        )
    expected = max(0, int(x_star.to_integral_value(rounding="ROUND_FLOOR"))) if g * e1 > e0 else 0
    assert closed_form_input(legs) == expected


def _dec(value: Fraction) -> Decimal:
    return Decimal(value.numerator) / Decimal(value.denominator)


def test_two_pool_cycle_on_hops() -> None:
    cheap = Pool("0xp1", "0xusdc", "0xweth", 3_000 * 10**12, 1_000 * 10**18)
    dear = Pool("0xp2", "0xusdc", "0xweth", 3_090 * 10**12, 1_000 * 10**18)
    hops = [Hop.from_token_in(dear, "0xweth"), Hop.from_token_in(cheap, "0xusdc")]
    result = optimize_cycle(hops)
    assert result is not None and result.profit > 0
    assert result.amount_out - result.amount_in == result.profit
    reverse = [Hop.from_token_in(cheap, "0xweth"), Hop.from_token_in(dear, "0xusdc")]
    assert optimize_cycle(reverse) is None
    with pytest.raises(ValueError):
        optimize_cycle([Hop.from_token_in(cheap, "0xweth")])


def test_no_opportunity_without_price_gap_and_threshold_applies() -> None:
    legs = [SwapLeg(10**21, 10**21), SwapLeg(10**21, 10**21)]
    n, m, _ = compose(legs)
    assert n <= m
    assert optimize(legs) is None
    gap = [SwapLeg(10**21, 10**21), SwapLeg(10**21, 103 * 10**19)]
    result = optimize(gap)
    assert result is not None
    assert optimize(gap, min_profit=result.profit) is None
    assert optimize(gap, min_profit=result.profit - 1) == result
