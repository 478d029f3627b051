"""Uniswap V2 library math against the contracts' literal formulas and the pair's K check."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mevaas_chain.amm.v2 import (
    InsufficientInputAmount,
    InsufficientLiquidity,
    InsufficientOutputAmount,
    SwapLeg,
    amounts_in,
    amounts_out,
    get_amount_in,
    get_amount_out,
    min_amount_in,
    swap_satisfies_k,
)

reserves = st.integers(min_value=1_000, max_value=10**30)
amounts = st.integers(min_value=1, max_value=10**28)
fees = st.sampled_from([0, 5, 25, 30, 100])


def contract_get_amount_out(amount_in: int, reserve_in: int, reserve_out: int) -> int:
    amount_in_with_fee = amount_in * 997
    return amount_in_with_fee * reserve_out // (reserve_in * 1000 + amount_in_with_fee)


def contract_get_amount_in(amount_out: int, reserve_in: int, reserve_out: int) -> int:
    return reserve_in * amount_out * 1000 // ((reserve_out - amount_out) * 997) + 1


@settings(max_examples=400)
@given(amounts, reserves, reserves)
def test_amount_out_equals_the_contracts_997_over_1000(amount_in: int, r_in: int, r_out: int) -> None:
    assert get_amount_out(amount_in, r_in, r_out) == contract_get_amount_out(amount_in, r_in, r_out)


@settings(max_examples=400)
@given(reserves, reserves, st.data())
def test_amount_in_equals_the_contract_and_is_consistent(r_in: int, r_out: int, data: st.DataObject) -> None:
    amount_out = data.draw(st.integers(min_value=1, max_value=r_out - 1))
    amount_in = get_amount_in(amount_out, r_in, r_out)
    assert amount_in == contract_get_amount_in(amount_out, r_in, r_out)
    assert get_amount_out(amount_in, r_in, r_out) >= amount_out
    minimum = min_amount_in(amount_out, r_in, r_out)
    assert minimum in (amount_in, amount_in - 1)
    assert get_amount_out(minimum, r_in, r_out) >= amount_out
    if minimum > 1:
        assert get_amount_out(minimum - 1, r_in, r_out) < amount_out


@settings(max_examples=400)
@given(amounts, reserves, reserves, fees, st.booleans())
def test_k_boundary_amount_out_passes_and_one_more_wei_reverts(
    amount_in: int, r0: int, r1: int, fee: int, zero_for_one: bool
) -> None:
    r_in, r_out = (r0, r1) if zero_for_one else (r1, r0)
    out = get_amount_out(amount_in, r_in, r_out, fee)

    def swap(out_amount: int) -> bool:
        if zero_for_one:
            return swap_satisfies_k(r0, r1, amount0_in=amount_in, amount1_out=out_amount, fee_bps=fee)
        return swap_satisfies_k(r0, r1, amount1_in=amount_in, amount0_out=out_amount, fee_bps=fee)

    if out > 0:
        assert swap(out)
    assert not swap(out + 1)


def test_k_check_rejects_what_the_pair_rejects() -> None:
    assert not swap_satisfies_k(1000, 1000)  # no output
    assert not swap_satisfies_k(1000, 1000, amount1_out=5)  # no input
    assert not swap_satisfies_k(1000, 1000, amount0_in=10**9, amount1_out=1000)  # whole reserve
    assert swap_satisfies_k(1000, 1000, amount0_in=100, amount1_out=get_amount_out(100, 1000, 1000))


def test_errors_match_the_library() -> None:
    with pytest.raises(InsufficientInputAmount):
        get_amount_out(0, 10, 10)
    with pytest.raises(InsufficientLiquidity):
        get_amount_out(1, 0, 10)
    with pytest.raises(InsufficientOutputAmount):
        get_amount_in(0, 10, 10)
    with pytest.raises(InsufficientLiquidity):
        get_amount_in(10, 10, 10)
    with pytest.raises(ValueError):
        get_amount_out(1, 10, 10, fee_bps=10_000)


@settings(max_examples=200)
@given(amounts, st.lists(st.tuples(reserves, reserves, fees), min_size=1, max_size=4))
def test_multi_hop_amounts_chain_single_hops(amount_in: int, raw: list[tuple[int, int, int]]) -> None:
    legs = [SwapLeg(*leg) for leg in raw]
    try:
        path = amounts_out(amount_in, legs)
    except InsufficientInputAmount:
        return  # an intermediate amount rounded to zero, as the router would revert
    for i, leg in enumerate(legs):
        assert path[i + 1] == get_amount_out(path[i], *leg)
    if path[-1] > 0:
        try:
            back = amounts_in(path[-1], legs)
        except (InsufficientLiquidity, InsufficientOutputAmount):
            return  # the router's +1 rounding can ask a tiny pool for more than it holds
        assert back[-1] == path[-1]
        assert amounts_out(back[0], legs)[-1] >= path[-1]
