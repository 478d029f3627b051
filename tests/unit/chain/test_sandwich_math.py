"""The sandwich search against brute force over every front-run on small pools, and the safe bound."""

from __future__ import annotations

import pytest

from mevaas_chain.amm.sandwich import (
    VictimSwap,
    best_on_hop,
    best_sandwich,
    safe_bound,
    victim_result,
)
from mevaas_chain.amm.v2 import SwapLeg, get_amount_in, get_amount_out


def _brute(victim: VictimSwap, hop: int) -> tuple[int, int]:
    """(best profit, smallest x reaching it) over every x the victim survives, literally replaying
    front-run, victim, back-run with the router formulas."""
    best, best_x = 0, 0
    leg = victim.legs[hop]
    for x in range(1, leg.reserve_in * 4):
        y = get_amount_out(x, leg.reserve_in, leg.reserve_out, leg.fee_bps)
        if y == 0:
            continue
        legs = list(victim.legs)
        legs[hop] = SwapLeg(leg.reserve_in + x, leg.reserve_out - y, leg.fee_bps)
        result = victim_result(victim, legs)
        if result is None:
            continue
        after = result[1][hop]
        z = get_amount_out(y, after.reserve_out, after.reserve_in, after.fee_bps)
        if z - x > best:
            best, best_x = z - x, x
    return best, best_x


@pytest.mark.parametrize(
    ("reserves", "amount", "slippage_bps"),
    [
        ((10_000, 20_000), 500, 300),
        ((7_919, 3_001), 1_200, 1_000),
        ((50_000, 50_000), 4_000, 50),
        ((12_345, 67_890), 2_000, 2_000),
    ],
)
def test_single_hop_matches_brute_force(reserves: tuple[int, int], amount: int, slippage_bps: int) -> None:
    leg = SwapLeg(*reserves)
    expected = get_amount_out(amount, *reserves)
    victim = VictimSwap((leg,), amount, expected * (10_000 - slippage_bps) // 10_000)
    found = best_on_hop(victim, 0)
    brute, brute_x = _brute(victim, 0)
    assert (found.profit if found else 0) == brute
    if found is not None:
        assert found.profit == found.back_out - found.front_in
        # the victim still lands, at its bound or above
        assert victim.bound <= found.victim_attacked < found.victim_unattacked
        assert _brute(victim, 0)[0] == found.profit and brute_x <= found.front_in


def test_two_hop_path_best_hop_and_exact_out() -> None:
    legs = (SwapLeg(9_000, 30_000), SwapLeg(40_000, 8_000))
    amount = 900
    out = victim_result(VictimSwap(legs, amount, 0), legs)
    assert out is not None
    victim = VictimSwap(legs, amount, out[0] * 95 // 100)
    best = best_sandwich(victim)
    assert best is not None
    assert best.profit == max(_brute(victim, 0)[0], _brute(victim, 1)[0])
    # exact output: the victim buys 500 of the last token and pays at most 3% more than now
    cost = get_amount_in(get_amount_in(500, 40_000, 8_000), 9_000, 30_000)
    exact_out = VictimSwap(legs, 500, cost * 103 // 100, exact_in=False)
    found = best_sandwich(exact_out)
    assert found is not None
    assert found.profit == max(_brute(exact_out, 0)[0], _brute(exact_out, 1)[0])
    assert cost <= found.victim_attacked <= exact_out.bound


def test_tight_bound_leaves_nothing_and_safe_bound_is_the_boundary() -> None:
    leg = SwapLeg(10_000, 20_000)
    expected = get_amount_out(500, 10_000, 20_000)
    assert best_sandwich(VictimSwap((leg,), 500, expected)) is None
    safe = safe_bound(VictimSwap((leg,), 500, 0))
    assert safe <= expected
    assert _brute(VictimSwap((leg,), 500, safe), 0)[0] == 0
    assert _brute(VictimSwap((leg,), 500, safe - 1), 0)[0] > 0
    # tolerating the attacker's costs loosens the advice
    tolerant = safe_bound(VictimSwap((leg,), 500, 0), tolerated_profit=5)
    assert tolerant < safe
    assert (
        _brute(VictimSwap((leg,), 500, tolerant), 0)[0]
        <= 5
        < _brute(VictimSwap((leg,), 500, tolerant - 1), 0)[0]
    )


def test_mainnet_sized_pool_is_fast_and_consistent() -> None:
    # 2,000 ETH / 4M USDC-like pool, a 50 ETH swap with 1% slippage
    leg = SwapLeg(2_000 * 10**18, 4_000_000 * 10**6)
    amount = 50 * 10**18
    expected = get_amount_out(amount, leg.reserve_in, leg.reserve_out)
    victim = VictimSwap((leg,), amount, expected * 99 // 100)
    found = best_sandwich(victim)
    assert found is not None and found.profit > 0
    # one more wei of front-run breaks the victim's bound, or earns no more
    more = best_on_hop(VictimSwap((leg,), amount, victim.bound), 0)
    assert more == found
    y = get_amount_out(found.front_in, leg.reserve_in, leg.reserve_out)
    assert y == found.front_out
