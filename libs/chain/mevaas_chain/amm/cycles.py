"""The pool graph and its arbitrage cycles through base tokens.

A cycle starts and ends in a base token (WETH, USDC, ...), the token its profit is counted in:
2-hop cycles go out through one pool of a pair and back through another pool of the same pair (the
same pair on two DEXes), 3-hop cycles go round a triangle base -> A -> C -> base. Both directions of
a loop are separate cycles (at most one of them can be profitable). A loop through several base
tokens is listed once, from the base that comes first in `base_tokens`, so an opportunity is never
reported twice in two currencies. Pools may be V2 (`arbitrage.Pool`) or V3 (`arbitrage.ConcentratedPool`),
so cycles mix them freely. Token and pool identifiers are compared as given, so callers use
one spelling (e.g. checksummed addresses) throughout.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from mevaas_chain.amm.arbitrage import GraphPool, Hop, RouteLeg


@dataclass(frozen=True, slots=True)
class Cycle:
    """Hops from `base` back to `base`."""

    base: str
    hops: tuple[Hop, ...]

    @property
    def pools(self) -> tuple[str, ...]:
        return tuple(h.pool.address for h in self.hops)

    @property
    def tokens(self) -> tuple[str, ...]:
        return (self.base, *(h.token_out for h in self.hops))

    def legs(self) -> list[RouteLeg]:
        return [h.leg for h in self.hops]


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


@dataclass(slots=True)
class PoolGraph:
    """Pools by address, by token and by (unordered) token pair."""

    pools: dict[str, GraphPool] = field(default_factory=dict)
    by_token: dict[str, list[GraphPool]] = field(default_factory=lambda: defaultdict(list))
    by_pair: dict[tuple[str, str], list[GraphPool]] = field(default_factory=lambda: defaultdict(list))

    @classmethod
    def of(cls, pools: Iterable[GraphPool]) -> PoolGraph:
        graph = cls()
        for pool in pools:
            graph.add(pool)
        return graph

    def add(self, pool: GraphPool) -> None:
        if pool.address in self.pools:
            raise ValueError(f"duplicate pool {pool.address}")
        if pool.token0 == pool.token1:
            raise ValueError(f"pool {pool.address} pairs a token with itself")
        self.pools[pool.address] = pool
        self.by_token[pool.token0].append(pool)
        self.by_token[pool.token1].append(pool)
        self.by_pair[_pair(pool.token0, pool.token1)].append(pool)


def enumerate_cycles(graph: PoolGraph, base_tokens: Sequence[str], max_hops: int = 3) -> list[Cycle]:
    """All 2-hop (and, if `max_hops` >= 3, 3-hop) cycles through `base_tokens`, deterministic order."""
    if max_hops not in (2, 3):
        raise ValueError("max_hops must be 2 or 3")
    priority = {token: i for i, token in enumerate(base_tokens)}
    cycles: list[Cycle] = []
    for rank, base in enumerate(base_tokens):

        def owned_elsewhere(token: str, rank: int = rank) -> bool:
            """A loop through a higher-priority base is listed from that base instead."""
            return priority.get(token, len(priority)) < rank

        for pool in graph.by_token.get(base, []):
            other = pool.other(base)
            if owned_elsewhere(other):
                continue
            # Two-hop: out through `pool`, back through each other pool of the same pair; each pool
            # is the first hop once, so both directions come out.
            for back in graph.by_pair.get(_pair(base, other), []):
                if back is not pool:
                    cycles.append(
                        Cycle(base, (Hop.from_token_in(pool, base), Hop.from_token_in(back, other)))
                    )
        if max_hops < 3:
            continue
        for first in graph.by_token.get(base, []):
            a = first.other(base)
            if owned_elsewhere(a):
                continue
            for second in graph.by_token.get(a, []):
                c = second.other(a)
                if c == base or owned_elsewhere(c):
                    continue
                for third in graph.by_pair.get(_pair(c, base), []):
                    cycles.append(
                        Cycle(
                            base,
                            (
                                Hop.from_token_in(first, base),
                                Hop.from_token_in(second, a),
                                Hop.from_token_in(third, c),
                            ),
                        )
                    )
    return cycles


class CycleIndex:
    """Cycles by pool, so the cycles touched by a block's changed pools are found at once."""

    def __init__(self, cycles: Sequence[Cycle]) -> None:
        self.cycles = list(cycles)
        by_pool: dict[str, list[int]] = defaultdict(list)
        for i, cycle in enumerate(self.cycles):
            for address in dict.fromkeys(cycle.pools):
                by_pool[address].append(i)
        self._by_pool = dict(by_pool)

    def cycles_of(self, pool_address: str) -> list[int]:
        return self._by_pool.get(pool_address, [])

    def affected(self, changed_pools: Iterable[str]) -> list[int]:
        """Sorted ids of the cycles that go through any of `changed_pools`."""
        ids: set[int] = set()
        for address in changed_pools:
            ids.update(self._by_pool.get(address, ()))
        return sorted(ids)
