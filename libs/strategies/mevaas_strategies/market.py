"""The market as plugins see it: per chain, the pools after the latest block, the block's gas prices,
and a few derived prices. Pure data; the engine builds it from the pool index, backtests from
recorded MarketUpdates, tests from synthetic pools.

`memo` holds structures derived from the pool set only (cycle graphs), keyed by the chain's
`epoch`, and is shared by every strategy evaluated on the view.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import pairwise
from typing import Any

from mevaas_chain.flash_lenders import FlashLender
from mevaas_chain.lending.math import Position, Reserve
from mevaas_chain.pool_index import Pool

USD_STABLES = frozenset({"USDC", "USDT", "DAI", "USDC.E", "BUSD", "TUSD", "USDP", "FRAX", "LUSD"})


@dataclass(frozen=True, slots=True)
class LendingState:
    """A lending market after the latest block (from the chain layer's lending index): reserves,
    positions and oracle prices (the oracle's base currency units per whole token)."""

    protocol: str
    pool: str
    block_timestamp: int
    reserves: Mapping[str, Reserve]
    positions: Mapping[str, Position]
    prices: Mapping[str, int]
    # The pool's flash-loan premium (PercentageMath units, 5 = 0.05%); None: no flash loans.
    flash_loan_premium: int | None = None


@dataclass(slots=True)
class ChainMarket:
    chain_id: int
    block_number: int
    block_hash: str
    base_fee: int
    priority_fee: int
    pools: Mapping[str, Pool]
    wrapped_native: str | None = None
    # Token address -> symbol, from the chain configuration.
    symbols: Mapping[str, str] = field(default_factory=dict)
    decimals: Mapping[str, int] = field(default_factory=dict)
    block_time_s: float = 12.0
    # Incremented whenever the pool set changes (new pools, reorg reloads): keys of `memo` entries.
    epoch: int = 0
    lending: LendingState | None = None
    # The chain's configured flash lenders (V3 pools, Balancer vault) after the latest block.
    flash_lenders: tuple[FlashLender, ...] = ()
    _pairs: tuple[tuple[int, int, int], dict[frozenset[str], tuple[str, ...]]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def gas_price(self) -> int:
        return self.base_fee + self.priority_fee

    def deepest_pool(self, token_a: str, token_b: str) -> Pool | None:
        """The pool of the pair with the largest `token_a` reserve (the best mid price source)."""
        best: Pool | None = None
        best_depth = 0
        for address in self._pair_index().get(frozenset((token_a, token_b)), ()):
            pool = self.pools[address]
            depth = pool.reserve0 if pool.token0 == token_a else pool.reserve1
            if depth > best_depth:
                best, best_depth = pool, depth
        return best

    def _pair_index(self) -> Mapping[frozenset[str], tuple[str, ...]]:
        """Pool addresses by token pair, kept per pool set (a scan of every pool per price otherwise)."""
        key = (id(self.pools), self.epoch, len(self.pools))
        if self._pairs is None or self._pairs[0] != key:
            pairs: dict[frozenset[str], list[str]] = {}
            for pool in self.pools.values():
                pairs.setdefault(frozenset((pool.token0, pool.token1)), []).append(pool.address)
            self._pairs = (key, {pair: tuple(addresses) for pair, addresses in pairs.items()})
        return self._pairs[1]

    def mid_price(self, base: str, quote: str) -> Fraction | None:
        """Base units of `quote` per base unit of `base`, from the deepest pool of the pair."""
        if base == quote:
            return Fraction(1)
        pool = self.deepest_pool(base, quote)
        if pool is None or pool.reserve0 == 0 or pool.reserve1 == 0:
            return None
        reserve_base, reserve_quote = pool.reserves_for(base)
        return Fraction(reserve_quote, reserve_base)

    def native_to_token(self, token: str) -> Fraction | None:
        """Base units of `token` per wei of the native coin (via the wrapped native's pools)."""
        if self.wrapped_native is None:
            return None
        return self.mid_price(self.wrapped_native, token)

    def usd_price(self, token: str) -> Fraction | None:
        """USD per base unit of `token`: 1 for known stablecoins, else via a stablecoin pool, directly
        or through the wrapped native."""
        if self.symbols.get(token, "").upper() in USD_STABLES:
            return Fraction(1, 10 ** self.decimals.get(token, 18))
        stables = [a for a, s in self.symbols.items() if s.upper() in USD_STABLES]
        for route in ([token], [token, self.wrapped_native]):
            if None in route:
                continue
            for stable in stables:
                price: Fraction | None = Fraction(1)
                path = [*route, stable]
                for a, b in pairwise(path):
                    step = self.mid_price(str(a), str(b))
                    price = None if step is None or price is None else price * step
                if price is not None:
                    return price * Fraction(1, 10 ** self.decimals.get(stable, 18))
        return None


@dataclass(slots=True)
class MarketView:
    chains: dict[int, ChainMarket]
    memo: dict[Any, Any] = field(default_factory=dict)
    # Results that depend only on their key (e.g. the optimum of a route, keyed by its exact legs),
    # shared by every strategy within one block; the engine clears it before each block.
    per_block: dict[Any, Any] = field(default_factory=dict)

    def chain(self, chain_id: int) -> ChainMarket | None:
        return self.chains.get(chain_id)
