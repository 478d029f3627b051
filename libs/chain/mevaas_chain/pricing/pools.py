"""Mid prices from DEX pool reserves, through a path of pools to a USD stablecoin.

`PoolBook` keeps the reserves of every pool seen in market updates (events.v1 MarketUpdate
PoolState), with a short history per pool so a price can be read as of a block (the block an
execution landed in) and a reorg replaces what it rolled back.

`PoolMidPrices` prices a token by the best-liquidity path to a configured stablecoin: the token
graph's edges are pools between two tokens of known decimals, a stablecoin is worth its peg, and a
token reached over pool P from an already priced token A is worth

    price(A) * (reserve_A / 10**dec_A) / (reserve_T / 10**dec_T)

(the pool's mid price: no swap fee, no price impact, exact rationals of the integer reserves). A
path's liquidity is its narrowest pool's USD depth (2 * reserve_A in USD); among the paths of at
most `max_hops` pools the widest wins (ties: fewer hops, then the path's text), so a thin pool
with a skewed price cannot set the price of a token that also trades through a deep one.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from typing import Protocol

from mevaas_chain.pricing.model import NATIVE, Price, normalize_token


@dataclass(frozen=True)
class PoolReserves:
    address: str
    token0: str
    token1: str
    reserve0: int
    reserve1: int


@dataclass(frozen=True)
class _Observation:
    block_number: int
    observed_at: datetime | None
    reserves: PoolReserves


class PoolStateLike(Protocol):
    address: str
    token0: str
    token1: str
    reserve0: str
    reserve1: str


class MarketUpdateLike(Protocol):
    """The fields of events.v1.MarketUpdate this module reads (no dependency on the protos)."""

    chain_id: int
    block_number: int
    reorg: bool

    @property
    def pools(self) -> Iterable[PoolStateLike]: ...


@dataclass
class PoolBook:
    """Reserves per (chain, pool), the last `history` observations of each."""

    history: int = 256
    _pools: dict[tuple[int, str], list[_Observation]] = field(default_factory=dict)

    def apply(
        self,
        chain_id: int,
        block_number: int,
        pools: Iterable[PoolReserves],
        *,
        observed_at: datetime | None = None,
    ) -> None:
        for pool in pools:
            normalized = PoolReserves(
                pool.address.lower(), pool.token0.lower(), pool.token1.lower(), pool.reserve0, pool.reserve1
            )
            entries = self._pools.setdefault((chain_id, normalized.address), [])
            # A block at or below one already recorded replaces it and what followed (a reorg).
            while entries and entries[-1].block_number >= block_number:
                entries.pop()
            entries.append(_Observation(block_number, observed_at, normalized))
            del entries[: max(0, len(entries) - self.history)]

    def apply_update(self, update: MarketUpdateLike, observed_at: datetime | None = None) -> None:
        """Feed one events.v1.MarketUpdate."""
        self.apply(
            update.chain_id,
            update.block_number,
            (
                PoolReserves(p.address, p.token0, p.token1, int(p.reserve0 or 0), int(p.reserve1 or 0))
                for p in update.pools
            ),
            observed_at=observed_at,
        )

    def latest_block(self, chain_id: int) -> int:
        """The newest block observed on the chain (0 = none): a reader valuing something at a
        block can wait until the market feed has reached it."""
        return max(
            (
                entries[-1].block_number
                for (chain, _), entries in self._pools.items()
                if chain == chain_id and entries
            ),
            default=0,
        )

    def uncovered(self, chain_id: int, at_block: int) -> list[PoolReserves]:
        """The newest reserves of each pool of the chain the book knows nothing of at `at_block`
        (first observed after it: a replica that started later), so a reader can fetch them."""
        return [
            entries[-1].reserves
            for (chain, _), entries in sorted(self._pools.items())
            if chain == chain_id and entries and entries[0].block_number > at_block
        ]

    def snapshot(self, chain_id: int, at_block: int | None = None) -> list[_Observation]:
        """Each pool of the chain as of `at_block` (its newest observation at or before it)."""
        out = []
        for (chain, _), entries in self._pools.items():
            if chain != chain_id or not entries:
                continue
            if at_block is None:
                out.append(entries[-1])
                continue
            index = bisect.bisect_right([e.block_number for e in entries], at_block)
            if index:
                out.append(entries[index - 1])
        return out


@dataclass(frozen=True)
class TokenInfo:
    symbol: str
    decimals: int


@dataclass(frozen=True)
class _Route:
    liquidity: Fraction
    price: Fraction
    hops: tuple[str, ...]
    block_number: int
    observed_at: datetime | None

    def better_than(self, other: _Route | None) -> bool:
        if other is None:
            return True
        return (self.liquidity, -len(self.hops), other.hops) > (other.liquidity, -len(other.hops), self.hops)


@dataclass
class PoolMidPrices:
    """`PriceSource` over a `PoolBook` (see the module docstring)."""

    book: PoolBook
    # (chain id, lower-case address) -> symbol and decimals of the tokens the chains configure.
    tokens: Mapping[tuple[int, str], TokenInfo]
    # (chain id, lower-case address) -> USD peg of the stablecoins prices are anchored to.
    stablecoins: Mapping[tuple[int, str], Fraction]
    # chain id -> lower-case wrapped-native address (how NATIVE is priced).
    wrapped_native: Mapping[int, str] = field(default_factory=dict)
    max_hops: int = 3

    def price(self, chain_id: int, token: str, *, at_block: int | None = None) -> Price | None:
        key = normalize_token(token)
        if key == NATIVE:
            wrapped = self.wrapped_native.get(chain_id)
            if wrapped is None:
                return None
            found = self.price(chain_id, wrapped, at_block=at_block)
            if found is None:
                return None
            return Price(chain_id, NATIVE, found.usd, found.source, found.block_number, found.observed_at)
        peg = self.stablecoins.get((chain_id, key))
        if peg is not None:
            return Price(chain_id, key, peg, f"peg:{chain_id}:{self._symbol(chain_id, key)}")
        route = self.routes(chain_id, at_block).get(key)
        if route is None:
            return None
        return Price(
            chain_id,
            key,
            route.price,
            f"pool-mid:{chain_id}:{','.join(route.hops)}",
            route.block_number,
            route.observed_at,
        )

    def _symbol(self, chain_id: int, token: str) -> str:
        info = self.tokens.get((chain_id, token))
        return info.symbol if info else token

    def routes(self, chain_id: int, at_block: int | None = None) -> dict[str, _Route]:
        """The widest route of every token reachable from a stablecoin in at most max_hops pools
        (a hop-bounded Bellman-Ford over the bottleneck semiring)."""
        best: dict[str, _Route] = {}
        frontier: dict[str, _Route] = {}
        for (chain, address), peg in self.stablecoins.items():
            if chain == chain_id:
                frontier[address] = _Route(Fraction(10**60), peg, (), 0, None)
        edges = [
            o for o in self.book.snapshot(chain_id, at_block) if o.reserves.reserve0 and o.reserves.reserve1
        ]
        for _ in range(self.max_hops):
            improved: dict[str, _Route] = {}
            for observation in edges:
                pool = observation.reserves
                for known, reserve_known, other, reserve_other in (
                    (pool.token0, pool.reserve0, pool.token1, pool.reserve1),
                    (pool.token1, pool.reserve1, pool.token0, pool.reserve0),
                ):
                    start = frontier.get(known)
                    info_known = self.tokens.get((chain_id, known))
                    info_other = self.tokens.get((chain_id, other))
                    if start is None or info_known is None or info_other is None:
                        continue
                    if (chain_id, other) in self.stablecoins:
                        continue
                    whole_known = Fraction(reserve_known, 10**info_known.decimals)
                    whole_other = Fraction(reserve_other, 10**info_other.decimals)
                    depth = 2 * whole_known * start.price
                    hop = f"{info_other.symbol}/{info_known.symbol}@{pool.address}"
                    if observation.block_number >= start.block_number:
                        block, at = observation.block_number, observation.observed_at
                    else:
                        block, at = start.block_number, start.observed_at
                    candidate = _Route(
                        min(start.liquidity, depth),
                        start.price * whole_known / whole_other,
                        (hop, *start.hops),
                        block,
                        at,
                    )
                    if candidate.better_than(improved.get(other)) and candidate.better_than(best.get(other)):
                        improved[other] = candidate
            if not improved:
                break
            best.update(improved)
            frontier = {**frontier, **improved}
        return best
