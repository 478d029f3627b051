"""Optimal input of an arbitrage cycle: closed form on a composed virtual pool, then exact integers.

Derivation. A V2 swap with reserves (r, s) and fee factor g = 1 - f pays out

    out(x) = g*s*x / (r + g*x).

Feeding that into a second pool (c, d, g2) gives, after dividing numerator and denominator by
(c + g2*s),

    out2(x) = g*E1*x / (E0 + g*x),  E0 = r*c / (c + g2*s),  E1 = g2*s*d / (c + g2*s),

i.e. again one pool, the "virtual pool" (E0, E1) that keeps the first hop's fee. Folding hop by hop
turns any n-hop cycle into one virtual pool. Its profit P(x) = out(x) - x is concave with
P'(x) = g*E0*E1 / (E0 + g*x)**2 - 1, so the optimum is

    x* = (sqrt(g*E0*E1) - E0) / g,   P(x*) = (sqrt(E1) - sqrt(E0/g))**2,

and the cycle can make money at all only if P'(0) > 1, i.e. g*E1 > E0.

Exactly, with integers only: with gamma = 10000 - fee_bps and D = 10000 a hop is
out(x) = N*x / (M + K*x) with (N, M, K) = (gamma*s, D*r, gamma), and appending a hop (gamma', r', s')
maps (N, M, K) to (gamma'*s'*N, D*r'*M, D*r'*K + gamma'*N). Then (E0, E1, g) = (M*g/K, N/K, gamma/D),
x* = (sqrt(N*M) - M) / K and P(x*) = (sqrt(N) - sqrt(M))**2 / K, all from exact integers.

The profit the contracts realise, F(x) = amounts_out(x)[-1] - x, rounds every hop down, so
F(x) <= P(x) everywhere. The search evaluates F around x*, then walks the integer amounts of the
cycle's coarsest intermediate token (for each amount the cheapest input that buys it, via exact
minimal inputs backwards), and finally proves optimality when it can: any input that beats the best
value b must satisfy P(x) >= b + 1, a quadratic inequality whose integer solution interval is
computed exactly; if it is empty, or short enough to scan, the answer is the exact optimum
(`proven_optimal`). For large reserves that interval can span billions of wei over which F only
jitters by rounding; the answer is then within that rounding jitter of the optimum.

Routes through Uniswap V3 pools (`ConcentratedPool`, `amm.mixed.V3Leg`) have no closed form:
`optimize_route` sizes them with `amm.mixed.search_optimum` (a search on the exact marginal profit,
certified on the integers) and keeps this closed form for every route made of V2 pools only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from math import isqrt

from mevaas_chain.amm.mixed import V3Leg, search_optimum
from mevaas_chain.amm.v2 import (
    DEFAULT_FEE_BPS,
    FEE_DENOMINATOR,
    SwapLeg,
    get_amount_out,
)
from mevaas_chain.amm.v3 import V3PoolState

# How many integer amounts of the coarsest token to try on each side of the closed form.
_STAGE_WINDOW = 2
# Certification scans the remaining candidate interval exhaustively when it is at most this long.
_SCAN_LIMIT = 2048


@dataclass(slots=True)
class Pool:
    """A Uniswap V2 pair: `token0 < token1` as the pair orders them, current reserves, fee."""

    address: str
    token0: str
    token1: str
    reserve0: int
    reserve1: int
    fee_bps: int = DEFAULT_FEE_BPS

    def other(self, token: str) -> str:
        if token == self.token0:
            return self.token1
        if token == self.token1:
            return self.token0
        raise ValueError(f"{token} is not in pool {self.address}")

    def leg(self, zero_for_one: bool) -> SwapLeg:
        if zero_for_one:
            return SwapLeg(self.reserve0, self.reserve1, self.fee_bps)
        return SwapLeg(self.reserve1, self.reserve0, self.fee_bps)


@dataclass(slots=True)
class ConcentratedPool:
    """A Uniswap V3 pool in the graph: its tokens and exact state (fee in pips in the state)."""

    address: str
    token0: str
    token1: str
    state: V3PoolState

    @property
    def fee_bps(self) -> int:
        """The fee in basis points, rounded down (the screens' conservative view of it)."""
        return self.state.fee // 100

    def other(self, token: str) -> str:
        if token == self.token0:
            return self.token1
        if token == self.token1:
            return self.token0
        raise ValueError(f"{token} is not in pool {self.address}")

    def leg(self, zero_for_one: bool) -> V3Leg:
        return V3Leg(self.address, self.state, zero_for_one)


GraphPool = Pool | ConcentratedPool
RouteLeg = SwapLeg | V3Leg


@dataclass(frozen=True, slots=True)
class Hop:
    """A swap through `pool` in one direction (`zero_for_one`: token0 in, token1 out)."""

    pool: GraphPool
    zero_for_one: bool

    @classmethod
    def from_token_in(cls, pool: GraphPool, token_in: str) -> Hop:
        if token_in not in (pool.token0, pool.token1):
            raise ValueError(f"{token_in} is not in pool {pool.address}")
        return cls(pool, token_in == pool.token0)

    @property
    def token_in(self) -> str:
        return self.pool.token0 if self.zero_for_one else self.pool.token1

    @property
    def token_out(self) -> str:
        return self.pool.token1 if self.zero_for_one else self.pool.token0

    @property
    def leg(self) -> RouteLeg:
        return self.pool.leg(self.zero_for_one)


@dataclass(frozen=True, slots=True)
class ArbitrageResult:
    """The best integer input found, what the cycle pays out for it, and every hop's amount."""

    amount_in: int
    amount_out: int
    profit: int
    amounts: tuple[int, ...]
    proven_optimal: bool


def legs_of(hops: Sequence[Hop]) -> list[RouteLeg]:
    """The hops' current reserves, oriented in swap direction; checks the cycle is connected."""
    for a, b in pairwise(hops):
        if a.token_out != b.token_in:
            raise ValueError("hops do not connect")
    return [h.leg for h in hops]


def compose(legs: Sequence[SwapLeg]) -> tuple[int, int, int]:
    """The exact virtual pool of a path as integers (N, M, K): out(x) = N*x / (M + K*x)."""
    if not legs:
        raise ValueError("a path needs at least one leg")
    r, s, fee = legs[0]
    gamma = FEE_DENOMINATOR - fee
    n, m, k = gamma * s, FEE_DENOMINATOR * r, gamma
    for r, s, fee in legs[1:]:
        gamma = FEE_DENOMINATOR - fee
        n, m, k = gamma * s * n, FEE_DENOMINATOR * r * m, FEE_DENOMINATOR * r * k + gamma * n
    return n, m, k


def virtual_pool(legs: Sequence[SwapLeg]) -> tuple[float, float, float]:
    """(E0, E1, g) of the composed virtual pool in floats, for display and screening."""
    n, m, k = compose(legs)
    g = (FEE_DENOMINATOR - legs[0].fee_bps) / FEE_DENOMINATOR
    return m * g / k, n / k, g


def closed_form_input(legs: Sequence[SwapLeg]) -> int:
    """floor(x*) for the continuous optimum, 0 when the path cannot be profitable."""
    n, m, k = compose(legs)
    if n <= m:
        return 0
    return (isqrt(n * m) - m) // k


def profit_upper_bound(legs: Sequence[SwapLeg]) -> int:
    """An integer that no input's realised profit exceeds: floor of P(x*), rounded up safely."""
    n, m, k = compose(legs)
    if n <= m:
        return 0
    # P(x*) = (N + M - 2*sqrt(N*M)) / K and isqrt rounds sqrt down, so this never undershoots.
    return (n + m - 2 * isqrt(n * m)) // k


def _forward(x: int, legs: Sequence[SwapLeg]) -> list[int] | None:
    """amounts_out with the library's formula inlined (hot loop); None once an amount hits 0."""
    if x <= 0:
        return None
    amounts = [x]
    for r, s, fee in legs:
        with_fee = x * (FEE_DENOMINATOR - fee)
        x = with_fee * s // (r * FEE_DENOMINATOR + with_fee)
        if x <= 0:
            return None
        amounts.append(x)
    return amounts


def _min_input_for_stage(y: int, legs: Sequence[SwapLeg], stage: int) -> int | None:
    """Smallest input whose path through legs[:stage] yields at least y (`min_amount_in` backwards;
    exact because every hop is non-decreasing). None if a pool cannot pay that much."""
    for r, s, fee in reversed(legs[:stage]):
        if y >= s:
            return None
        y = -(-(r * y * FEE_DENOMINATOR) // ((s - y) * (FEE_DENOMINATOR - fee)))
    return y


def _candidate_interval(n: int, m: int, k: int, target: int) -> tuple[int, int] | None:
    """Integer inputs x >= 1 with P(x) >= target, widened by one: P(x) >= t <=> Kx^2 - Bx + tM <= 0."""
    b = n - m - k * target
    if b <= 0:
        return None
    disc = b * b - 4 * k * target * m
    if disc < 0:
        return None
    root = isqrt(disc)
    lo = max(1, (b - root - 1) // (2 * k))
    hi = (b + root + 1) // (2 * k) + 1
    return lo, hi


def optimize(legs: Sequence[SwapLeg], min_profit: int = 0) -> ArbitrageResult | None:
    """The integer input maximising the realised profit of a cycle (first leg in = last leg out).

    Returns None when no input makes a profit above `min_profit` (which must be >= 0).
    """
    n, m, k = compose(legs)
    if n <= m:
        return None
    root = isqrt(n * m)
    # P(x*) = (N + M - 2*sqrt(N*M)) / K; isqrt rounds down, so `upper` never undershoots it.
    upper = (n + m - 2 * root) // k
    if upper <= min_profit:
        return None
    x0 = max(1, (root - m) // k)

    best: list[int] | None = None
    best_profit = 0

    def consider(amounts: list[int] | None) -> None:
        nonlocal best, best_profit
        if amounts is None:
            return
        profit = amounts[-1] - amounts[0]
        if profit > best_profit or (profit == best_profit and best is not None and amounts[0] < best[0]):
            best, best_profit = amounts, profit

    start = _forward(x0, legs)
    consider(start)
    if best_profit < upper:
        consider(_forward(x0 + 1, legs))

    if start is not None and best_profit < upper:
        # The stage whose one unit costs the most input is where rounding is coarsest: walk its
        # integer amounts, buying each with the cheapest input.
        stage = max(range(1, len(legs) + 1), key=lambda i: start[0] / max(start[i], 1))
        y0 = start[stage]
        for y in range(max(1, y0 - _STAGE_WINDOW), y0 + _STAGE_WINDOW + 1):
            x = _min_input_for_stage(y, legs, stage)
            if x is not None:
                consider(_forward(x, legs))

    # Any input that beats the best (and the threshold) has P(x) >= that + 1: if there is none, or
    # few enough to scan, the value is proven optimal.
    proven = False
    interval = (
        None if best_profit >= upper else _candidate_interval(n, m, k, max(best_profit, min_profit) + 1)
    )
    if interval is None:
        proven = True
    elif interval[1] - interval[0] < _SCAN_LIMIT:
        for x in range(interval[0], interval[1] + 1):
            consider(_forward(x, legs))
        proven = True
    if proven and best is not None:
        # Among inputs with the same profit prefer the smallest (less capital, less price impact).
        ties = _candidate_interval(n, m, k, best_profit)
        if ties is not None and ties[1] - ties[0] < _SCAN_LIMIT:
            for x in range(ties[0], min(ties[1], best[0] - 1) + 1):
                consider(_forward(x, legs))

    if best is None or best_profit <= min_profit:
        return None
    return ArbitrageResult(best[0], best[-1], best_profit, tuple(best), proven)


def optimize_route(legs: Sequence[RouteLeg], min_profit: int = 0) -> ArbitrageResult | None:
    """`optimize` (the closed form) when every leg is a V2 pool; otherwise the search of
    `amm.mixed` (`proven_optimal` then means its local certificate held)."""
    v2 = [leg for leg in legs if isinstance(leg, SwapLeg)]
    if len(v2) == len(legs):
        return optimize(v2, min_profit)
    found = search_optimum(legs)
    if found is None or found.profit <= min_profit:
        return None
    amounts = found.amounts
    return ArbitrageResult(amounts[0], amounts[-1], found.profit, amounts, found.certified)


def optimize_cycle(hops: Sequence[Hop], min_profit: int = 0) -> ArbitrageResult | None:
    """`optimize_route` over hops that start and end in the same token, at their pools' state."""
    if not hops or hops[0].token_in != hops[-1].token_out:
        raise ValueError("a cycle must start and end in the same token")
    return optimize_route(legs_of(hops), min_profit)


def realised_profit(amount_in: int, legs: Sequence[SwapLeg]) -> int:
    """What the contracts pay out for `amount_in` around the cycle, minus `amount_in`."""
    amount = amount_in
    for r, s, fee in legs:
        amount = get_amount_out(amount, r, s, fee)
    return amount - amount_in
