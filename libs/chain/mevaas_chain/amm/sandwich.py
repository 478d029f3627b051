"""The sandwich an attacker can extract from a pending Uniswap V2 swap, on the contracts' integer math.

A victim swaps along a path of V2 pools with a slippage bound (exact input: ``amountOutMin``;
exact output: ``amountInMax``). An attacker picks one pool of the path, buys the victim's output
token of that hop first (front-run, ``x`` in), lets the victim trade at the worse price, and sells
what it bought right after (back-run). Its gain is ``z - x`` in the hop's input token.

The victim's transaction only succeeds while its bound holds, and every extra wei of front-run
makes its price worse, so the feasible front-runs are an interval ``[0, X]``; ``X`` is found by an
exact integer search (doubling, then bisection on ``victim_ok``). On ``[0, X]`` the attacker's
profit is the difference of two concave V2 curves; it rises then falls (two fees are paid on
``x``), up to rounding by the contracts' floors. The optimum is found by a ternary search on the
exact integer profit followed by an exhaustive scan of ``_SCAN`` amounts around it and around
``X`` (the unit tests check it against brute force over every ``x`` on small pools).

`safe_amount_out_min` turns that into advice: the smallest bound at which no sandwich gains more
than a threshold (the attacker's costs), found by bisection since the best profit can only fall as
the bound tightens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mevaas_chain.amm.v2 import (
    InsufficientInputAmount,
    InsufficientLiquidity,
    InsufficientOutputAmount,
    SwapLeg,
    get_amount_in,
    get_amount_out,
    min_amount_in,
)

_SCAN = 64
_MATH_ERRORS = (InsufficientInputAmount, InsufficientLiquidity, InsufficientOutputAmount)


@dataclass(frozen=True, slots=True)
class VictimSwap:
    """A pending swap along ``legs`` (each oriented from the hop's input to its output).

    ``exact_in``: spends ``amount`` and needs at least ``bound`` out. Otherwise: buys exactly
    ``amount`` and may spend at most ``bound``.
    """

    legs: tuple[SwapLeg, ...]
    amount: int
    bound: int
    exact_in: bool = True


@dataclass(frozen=True, slots=True)
class Sandwich:
    """The best sandwich on one hop: front-run ``front_in`` (hop input token) buying ``front_out``,
    back-run selling ``front_out`` for ``back_out``; ``profit = back_out - front_in``."""

    hop: int
    front_in: int
    front_out: int
    back_out: int
    profit: int
    # The victim's output (exact in) or input (exact out) without and with the sandwich.
    victim_unattacked: int
    victim_attacked: int


def _apply(legs: list[SwapLeg], hop: int, amount_in: int, amount_out: int) -> None:
    leg = legs[hop]
    legs[hop] = SwapLeg(leg.reserve_in + amount_in, leg.reserve_out - amount_out, leg.fee_bps)


def victim_result(victim: VictimSwap, legs: Sequence[SwapLeg]) -> tuple[int, list[SwapLeg]] | None:
    """The victim's output (exact in) or input (exact out) on these reserves and the reserves after
    it; None when its transaction would revert (bound broken, or the router's own checks)."""
    after = list(legs)
    try:
        if victim.exact_in:
            amount = victim.amount
            for i, leg in enumerate(legs):
                out = get_amount_out(amount, leg.reserve_in, leg.reserve_out, leg.fee_bps)
                _apply(after, i, amount, out)
                amount = out
            return (amount, after) if amount >= victim.bound else None
        amounts = [victim.amount]
        for leg in reversed(legs):
            amounts.append(get_amount_in(amounts[-1], leg.reserve_in, leg.reserve_out, leg.fee_bps))
        amounts.reverse()
        for i in range(len(legs)):
            _apply(after, i, amounts[i], amounts[i + 1])
        return (amounts[0], after) if amounts[0] <= victim.bound else None
    except _MATH_ERRORS:
        return None


def _front(legs: Sequence[SwapLeg], hop: int, x: int) -> tuple[int, list[SwapLeg]] | None:
    leg = legs[hop]
    try:
        y = get_amount_out(x, leg.reserve_in, leg.reserve_out, leg.fee_bps)
    except _MATH_ERRORS:
        return None
    if y == 0:
        return None
    after = list(legs)
    _apply(after, hop, x, y)
    return y, after


def _outcome(victim: VictimSwap, hop: int, x: int) -> tuple[int, int, int] | None:
    """(front_out, back_out, victim result) of front-running hop ``hop`` with ``x``; None when the
    victim would revert (or the front-run buys nothing)."""
    front = _front(victim.legs, hop, x)
    if front is None:
        return None
    y, legs = front
    result = victim_result(victim, legs)
    if result is None:
        return None
    done, after = result
    leg = after[hop]
    # The back-run sells y through the same pool the other way: reserves seen from its input.
    try:
        z = get_amount_out(y, leg.reserve_out, leg.reserve_in, leg.fee_bps)
    except _MATH_ERRORS:
        return None
    return y, z, done


def _min_front(victim: VictimSwap, hop: int) -> int:
    """The smallest front-run that buys anything (1 wei of the hop's output)."""
    leg = victim.legs[hop]
    try:
        return min_amount_in(1, leg.reserve_in, leg.reserve_out, leg.fee_bps)
    except _MATH_ERRORS:
        return 0


def _max_front(victim: VictimSwap, hop: int, low: int) -> int:
    """The largest front-run on ``hop`` that leaves the victim's transaction succeeding (0: none),
    starting from the smallest one, ``low``."""
    if low == 0 or _outcome(victim, hop, low) is None:
        return 0
    high = low * 2
    cap = victim.legs[hop].reserve_in * 1_000_000
    while high < cap and _outcome(victim, hop, high) is not None:
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        if _outcome(victim, hop, mid) is None:
            high = mid
        else:
            low = mid
    return low


def _profit(victim: VictimSwap, hop: int, x: int) -> int | None:
    out = _outcome(victim, hop, x)
    return None if out is None else out[1] - x


def best_on_hop(victim: VictimSwap, hop: int) -> Sandwich | None:
    """The most profitable sandwich of ``hop``; None when no front-run leaves the victim able to
    land or none gains anything."""
    unattacked = victim_result(victim, victim.legs)
    if unattacked is None:
        return None
    first = _min_front(victim, hop)
    limit = _max_front(victim, hop, first)
    if limit == 0:
        return None
    low, high = first, limit
    while high - low > 2:
        m1 = low + (high - low) // 3
        m2 = high - (high - low) // 3
        p1, p2 = _profit(victim, hop, m1), _profit(victim, hop, m2)
        if p1 is None or p2 is None or p1 < p2:
            low = m1
        else:
            high = m2
    candidates = set(range(max(first, low - _SCAN), min(limit, high + _SCAN) + 1))
    candidates.update(range(max(first, limit - _SCAN), limit + 1))
    best_x, best_profit = 0, 0
    for x in sorted(candidates):
        profit = _profit(victim, hop, x)
        if profit is not None and profit > best_profit:
            best_x, best_profit = x, profit
    if best_x == 0:
        return None
    out = _outcome(victim, hop, best_x)
    assert out is not None
    y, z, done = out
    return Sandwich(hop, best_x, y, z, z - best_x, unattacked[0], done)


def best_sandwich(victim: VictimSwap) -> Sandwich | None:
    """The most profitable sandwich over every hop of the victim's path (ties: the first hop)."""
    best: Sandwich | None = None
    for hop in range(len(victim.legs)):
        found = best_on_hop(victim, hop)
        if found is not None and (best is None or found.profit > best.profit):
            best = found
    return best


def safe_bound(victim: VictimSwap, tolerated_profit: int = 0) -> int:
    """The loosest slippage bound at which no sandwich gains more than ``tolerated_profit``:
    the smallest ``amountOutMin`` (exact in) or largest ``amountInMax`` (exact out). Without an
    attack the victim gets (pays) exactly the unattacked amount, which is always safe."""
    unattacked = victim_result(
        VictimSwap(victim.legs, victim.amount, 0 if victim.exact_in else 2**256, victim.exact_in), victim.legs
    )
    if unattacked is None:
        raise ValueError("the swap cannot execute on these reserves")
    expected = unattacked[0]

    def safe(bound: int) -> bool:
        found = best_sandwich(VictimSwap(victim.legs, victim.amount, bound, victim.exact_in))
        return found is None or found.profit <= tolerated_profit

    if victim.exact_in:
        low, high = 0, expected  # safe(expected) holds: no front-run leaves the output intact
        if safe(low):
            return low
        while high - low > 1:
            mid = (low + high) // 2
            if safe(mid):
                high = mid
            else:
                low = mid
        return high
    low, high = expected, expected * 2 + 1
    while safe(high) and high < 2**255:
        low, high = high, high * 2
    if safe(high):
        return high
    while high - low > 1:
        mid = (low + high) // 2
        if safe(mid):
            low = mid
        else:
            high = mid
    return low
