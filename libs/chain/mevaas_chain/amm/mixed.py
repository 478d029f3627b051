"""Exact optimal input of a route that goes through Uniswap V3 pools (alone or mixed with V2 pools).

A V3 hop has no closed form: its output is piecewise (one piece per initialised tick range), but
every piece is increasing and concave in the input, and so is the whole hop (its marginal rate is
the fee-adjusted price after the swap, which only gets worse as the input grows). Composing
increasing concave hops keeps both properties, so the route's unrounded profit P(x) = out(x) - x is
concave and its marginal profit P'(x) = prod_j rate_j(a_j) - 1 (each hop's marginal rate at the
amount a_j that reaches it) is decreasing. The search therefore:

1. checks the spot rates: if P'(0) <= 0 no input makes money;
2. gallops to an upper bound where the marginal rate has dropped to 1 (or the pools cannot fill
   the input), then narrows on the sign of the marginal profit (regula falsi, bisection as the
   fallback) to the largest integer x_c where it is still positive (every rate is an exact rational: a V2 hop's g*r*s / (r + g*x)**2, a V3 hop's price
   after the swap as its squared sqrt price, times 1 - fee);
3. refines on the integers the contracts pay: each hop rounds down, so the realised output F(x) is
   a staircase and, for an output level L, the best input is the smallest one reaching L (found by
   galloping from x_c, then bisection: F is non-decreasing). The levels F(x_c) and F(x_c) + 1
   are compared;
4. certifies the winner x* locally, profit(x*) >= profit(x* - 1) and profit(x* + 1), climbing to
   a neighbour while one is strictly better (`certified` is False only if that climb does not end
   within `_CLIMB_LIMIT` steps).

The V2-only closed form (`arbitrage.optimize`) is untouched; `arbitrage.optimize_route` picks it
whenever every hop is a V2 pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from mevaas_chain.amm.v3 import FEE_PIPS, Q96, V3MathError, V3PoolState, swap

# Most one-wei moves the final certification takes before giving up on it.
_CLIMB_LIMIT = 4096
# Upper end of the bracket: no token supply comes near 2**200 base units.
_MAX_INPUT = 1 << 200


class Leg(Protocol):
    """One directed swap of a route: what ``amount_in`` pays out and the marginal rate after it."""

    def step(self, amount_in: int) -> tuple[int, int, int] | None:
        """(amount out, marginal rate numerator, denominator) for ``amount_in`` >= 0 (0: the spot
        rate); None if the pool cannot fill it."""
        ...


@dataclass(frozen=True, slots=True, eq=False)
class V3Leg:
    """An exact-input swap through a V3 pool at ``state`` (no price limit, like the executor).

    Equal (and hashed) by pool, direction and the identity of its state object: the pool index
    replaces a pool's state on every change, so two legs with the same key price alike, and a leg
    used as a cache key keeps its state alive."""

    pool: str
    state: V3PoolState
    zero_for_one: bool

    def _key(self) -> tuple[str, bool, int]:
        return self.pool, self.zero_for_one, id(self.state)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, V3Leg) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _rate(self, sqrt_price_x96: int) -> tuple[int, int]:
        keep = FEE_PIPS - self.state.fee
        squared = sqrt_price_x96 * sqrt_price_x96
        if self.zero_for_one:
            return keep * squared, FEE_PIPS * Q96 * Q96
        return keep * Q96 * Q96, FEE_PIPS * squared

    def step(self, amount_in: int) -> tuple[int, int, int] | None:
        if self.state.sqrt_price_x96 == 0 or (self.state.liquidity == 0 and not self.state.bitmap):
            return None  # not initialised, or no liquidity at any price
        if amount_in == 0:
            return (0, *self._rate(self.state.sqrt_price_x96))
        try:
            result = swap(self.state, self.zero_for_one, amount_in)
        except V3MathError:
            return None
        paid_in, paid_out = (
            (result.amount0, -result.amount1) if self.zero_for_one else (result.amount1, -result.amount0)
        )
        if paid_in != amount_in:
            return None  # ran out of liquidity before taking the whole input
        return (paid_out, *self._rate(result.sqrt_price_x96))


def route_amounts(amount_in: int, legs: Sequence[Leg]) -> list[int] | None:
    """[amount_in, out_1, ..., out_n] as the contracts pay them; None if a pool cannot fill its hop."""
    amounts = [amount_in]
    for leg in legs:
        stepped = leg.step(amounts[-1])
        if stepped is None:
            return None
        amounts.append(stepped[0])
    return amounts


def _marginal_gain(amount_in: int, legs: Sequence[Leg]) -> tuple[bool, float] | None:
    """Whether the route's marginal rate after ``amount_in`` exceeds 1 (exact), and by how much
    (rate - 1 as a float, for interpolation only); None if the pools cannot fill it."""
    amount, numerator, denominator = amount_in, 1, 1
    for leg in legs:
        stepped = leg.step(amount)
        if stepped is None:
            return None
        amount, num, den = stepped
        numerator, denominator = numerator * num, denominator * den
    # int / int is correctly rounded in Python, however large the operands.
    return numerator > denominator, (numerator - denominator) / denominator


def _profit(amount_in: int, legs: Sequence[Leg]) -> int | None:
    amounts = route_amounts(amount_in, legs) if amount_in > 0 else None
    return None if amounts is None else amounts[-1] - amount_in


def _marginal_crossing(legs: Sequence[Leg]) -> int | None:
    """The largest x whose marginal profit is positive (None: not even at the spot rates).

    The marginal profit is decreasing, so a bracket [lo, hi] with a positive marginal at lo and not
    at hi shrinks to adjacent integers: by regula falsi (Illinois) on the exact rate, falling back
    to bisection whenever a step does not halve the bracket (and where the pools cannot fill hi)."""
    at_zero = _marginal_gain(0, legs)
    if at_zero is None or not at_zero[0]:
        return None
    lo, g_lo = 0, at_zero[1]
    hi = 1
    while True:
        found = _marginal_gain(hi, legs)
        if found is None or not found[0] or hi >= _MAX_INPUT:
            break
        lo, g_lo, hi = hi, found[1], hi * 16
    g_hi = None if found is None else found[1]
    side, bisect = 0, False
    while hi - lo > 1:
        width = hi - lo
        if bisect or g_hi is None or g_lo <= g_hi:
            mid = lo + width // 2
        else:
            mid = lo + int(width * (g_lo / (g_lo - g_hi)))
            mid = min(max(mid, lo + 1), hi - 1)
        found = _marginal_gain(mid, legs)
        if found is not None and found[0]:
            lo, g_lo = mid, found[1]
            if side == 1 and g_hi is not None:
                g_hi /= 2
            side = 1
        else:
            hi, g_hi = mid, None if found is None else found[1]
            if side == -1:
                g_lo /= 2
            side = -1
        bisect = not bisect and hi - lo > width // 2
    return lo


def _least_input_near(level: int, legs: Sequence[Leg], start: int) -> int | None:
    """The smallest x >= 1 whose output is at least ``level``, galloping from ``start`` (output is
    non-decreasing in the input)."""

    def reaches(x: int) -> bool:
        amounts = route_amounts(x, legs)
        return amounts is not None and amounts[-1] >= level

    if reaches(start):
        # Walk left until the level is lost: the answer is in (start - step, start - step // 2].
        hi, step = start, 1
        while hi - step >= 1 and reaches(hi - step):
            hi, step = hi - step, step * 2
        lo = max(1, hi - step + 1)
    else:
        lo, step = start + 1, 1
        while not reaches(start + step):
            if start + step >= _MAX_INPUT:
                return None
            lo, step = start + step + 1, step * 2
        hi = start + step
    while lo < hi:
        mid = (lo + hi) // 2
        if reaches(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


@dataclass(frozen=True, slots=True)
class RouteOptimum:
    amounts: tuple[int, ...]
    # profit(x*) >= profit(x* - 1) and profit(x* + 1) was checked.
    certified: bool

    @property
    def profit(self) -> int:
        return self.amounts[-1] - self.amounts[0]


def search_optimum(legs: Sequence[Leg]) -> RouteOptimum | None:
    """The best integer input of a cycle (first leg in = last leg out), or None if none profits."""
    crossing = _marginal_crossing(legs)
    if crossing is None:
        return None
    start = max(crossing, 1)
    candidates = {start, crossing + 1}
    amounts = route_amounts(start, legs)
    if amounts is not None:
        # The best input of an output level is the smallest that reaches it.
        for level in (amounts[-1], amounts[-1] + 1):
            least = _least_input_near(level, legs, start)
            if least is not None:
                candidates.add(least)
    scored = [(p, x) for x in candidates if (p := _profit(x, legs)) is not None]
    if not scored:
        return None
    best_profit, best = max(scored, key=lambda s: (s[0], -s[1]))
    certified = False
    for _ in range(_CLIMB_LIMIT):
        left, right = _profit(best - 1, legs), _profit(best + 1, legs)
        if left is not None and left > best_profit:
            best, best_profit = best - 1, left
        elif right is not None and right > best_profit:
            best, best_profit = best + 1, right
        else:
            certified = True
            break
    if best_profit <= 0:
        return None
    amounts = route_amounts(best, legs)
    assert amounts is not None
    return RouteOptimum(tuple(amounts), certified)
