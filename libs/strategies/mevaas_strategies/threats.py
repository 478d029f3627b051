"""Threat detection on pending swaps (pure): how much a sandwich can take from a pending Uniswap V2
router swap, given its slippage bound, and the bound that would have been safe.

The router's path is resolved to the pools of the router's DEX (the pair of each consecutive
token pair, as the router itself resolves it through its factory); the sandwich is the exact
search of `mevaas_chain.amm.sandwich` on those pools' reserves at the head the swap was seen at.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise

from mevaas_chain.amm.sandwich import VictimSwap, best_sandwich, safe_bound
from mevaas_chain.amm.v2 import SwapLeg
from mevaas_chain.pool_index import Pool
from mevaas_chain.swaps import RouterSwap

BPS = 10_000


@dataclass(frozen=True, slots=True)
class Threat:
    pools: tuple[Pool, ...]
    # Index into pools/path of the sandwiched hop.
    hop: int
    # The hop's input token: the attacker spends and earns it.
    token: str
    front_run_amount: int
    attacker_profit: int
    expected_amount: int
    attacked_amount: int
    safe_bound: int
    safe_slippage_bps: int

    @property
    def pool(self) -> Pool:
        return self.pools[self.hop]

    @property
    def exposure(self) -> int:
        """What the victim loses to the sandwich, in its output (exact in) or input token."""
        return abs(self.expected_amount - self.attacked_amount)


class PairBook:
    """The pools of one chain by (dex, unordered token pair); built once per block."""

    def __init__(self, pools: Iterable[Pool]) -> None:
        self._pairs: dict[tuple[str, frozenset[str]], Pool] = {}
        for pool in pools:
            self._pairs[(pool.dex, frozenset((pool.token0.lower(), pool.token1.lower())))] = pool

    def route(self, dex: str, path: tuple[str, ...]) -> tuple[Pool, ...] | None:
        pools = []
        for a, b in pairwise(path):
            pool = self._pairs.get((dex, frozenset((a.lower(), b.lower()))))
            if pool is None:
                return None
            pools.append(pool)
        return tuple(pools)


def _leg(pool: Pool, token_in: str) -> SwapLeg:
    token = pool.token0 if pool.token0.lower() == token_in.lower() else pool.token1
    reserve_in, reserve_out = pool.reserves_for(token)
    return SwapLeg(reserve_in, reserve_out, pool.fee_bps)


def _nothing(_token: str) -> int:
    return 0


def assess(
    swap: RouterSwap,
    book: PairBook,
    routers: Mapping[str, str],
    tolerated: Callable[[str], int] = _nothing,
) -> Threat | None:
    """The sandwich threat of ``swap`` (None: not a known router, a pool is missing, or no sandwich
    gains more than ``tolerated(token)``, the attacker's costs in the sandwiched hop's input
    token). ``routers``: lower-case router address -> DEX name. On a multi-hop path the hop is
    the one with the largest raw profit (the hops' tokens are not valued against each other)."""
    dex = routers.get(swap.router.lower())
    if dex is None:
        return None
    pools = book.route(dex, swap.path)
    if pools is None:
        return None
    legs = tuple(_leg(pool, token) for pool, token in zip(pools, swap.path, strict=False))
    victim = VictimSwap(legs, swap.amount, swap.bound, swap.exact_in)
    found = best_sandwich(victim)
    if found is None:
        return None
    tolerated_profit = tolerated(swap.path[found.hop])
    if found.profit <= tolerated_profit:
        return None
    safe = safe_bound(victim, tolerated_profit)
    expected = found.victim_unattacked
    slippage = (expected - safe) if swap.exact_in else (safe - expected)
    return Threat(
        pools=pools,
        hop=found.hop,
        token=swap.path[found.hop],
        front_run_amount=found.front_in,
        attacker_profit=found.profit,
        expected_amount=expected,
        attacked_amount=found.victim_attacked,
        safe_bound=safe,
        safe_slippage_bps=max(0, slippage) * BPS // expected if expected else 0,
    )
