"""Valuing token amounts in the plan currency, exactly (rationals, never floats).

Two price sources, tried in this order:

1. `OraclePrices`: a configured table `chain_id:token_address -> price of one whole token` in the
   plan currency (settings `ANALYTICS_PRICE_TABLE`, e.g. for mainnet tokens priced off-platform).
2. `PoolPrices`: devnet/DEX spot prices from the latest MarketUpdate reserves. A token's price is
   taken from the deepest pool (largest anchor reserve) pairing it with an anchor token whose
   price is configured (e.g. USDC at 1): price(X) = price(A) * (reserve_A / 10^dec_A) /
   (reserve_X / 10^dec_X), computed as an exact `Fraction` of the integer reserves. Swap fees and
   price impact are ignored (spot mid price), which is how profit is conventionally marked.

An amount with no price in either source is reported as unpriced (None), never guessed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction


def token_key(chain_id: int, address: str) -> str:
    return f"{chain_id}:{address.lower()}"


@dataclass(frozen=True)
class PoolReserves:
    chain_id: int
    address: str
    token0: str
    token1: str
    reserve0: int
    reserve1: int


@dataclass
class OraclePrices:
    prices: dict[str, Decimal] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> OraclePrices:
        """`"1:0xabc..=3000.5,31337:0xdef..=1"` -> table."""
        prices: dict[str, Decimal] = {}
        for entry in filter(None, (part.strip() for part in text.split(","))):
            key, _, price = entry.partition("=")
            chain, _, address = key.partition(":")
            prices[token_key(int(chain), address)] = Decimal(price)
        return cls(prices)

    def price(self, chain_id: int, address: str) -> Fraction | None:
        value = self.prices.get(token_key(chain_id, address))
        return None if value is None else Fraction(value)


@dataclass
class PoolPrices:
    """Spot prices from pool reserves against anchor tokens of known price."""

    anchors: OraclePrices
    decimals: Mapping[str, int]
    pools: dict[str, PoolReserves] = field(default_factory=dict)

    def update(self, pools: Iterable[PoolReserves]) -> None:
        for pool in pools:
            self.pools[token_key(pool.chain_id, pool.address)] = pool

    def price(self, chain_id: int, address: str) -> Fraction | None:
        direct = self.anchors.price(chain_id, address)
        if direct is not None:
            return direct
        target = address.lower()
        best: tuple[int, Fraction] | None = None
        for pool in self.pools.values():
            if pool.chain_id != chain_id or target not in (pool.token0.lower(), pool.token1.lower()):
                continue
            if pool.token0.lower() == target:
                other, reserve_x, reserve_other = pool.token1, pool.reserve0, pool.reserve1
            else:
                other, reserve_x, reserve_other = pool.token0, pool.reserve1, pool.reserve0
            anchor_price = self.anchors.price(chain_id, other)
            dec_x = self.decimals.get(token_key(chain_id, address))
            dec_other = self.decimals.get(token_key(chain_id, other))
            if anchor_price is None or dec_x is None or dec_other is None or reserve_x == 0:
                continue
            price = anchor_price * Fraction(reserve_other * 10**dec_x, reserve_x * 10**dec_other)
            if best is None or reserve_other > best[0]:
                best = (reserve_other, price)
        return None if best is None else best[1]


@dataclass
class Valuer:
    oracle: OraclePrices
    pools: PoolPrices | None = None

    def price(self, chain_id: int, address: str) -> Fraction | None:
        price = self.oracle.price(chain_id, address)
        if price is None and self.pools is not None:
            price = self.pools.price(chain_id, address)
        return price

    def value(self, chain_id: int, address: str, amount: int, decimals: int) -> Fraction | None:
        """Value of `amount` base units of a token with `decimals`, in the plan currency."""
        price = self.price(chain_id, address)
        return None if price is None else price * Fraction(amount, 10**decimals)
