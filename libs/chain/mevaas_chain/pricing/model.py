"""What a price is, what a valuation is, and the interface every price source implements.

A price is the USD value of ONE WHOLE token (10**decimals base units) as an exact `Fraction`,
carried with where it came from (`source`) and when it was observed (block and time). Valuing an
amount gives either `Priced` (amount, price, exact USD value) or `Unpriced` (the amount and why):
an amount that cannot be priced is never reported as 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Protocol

# Token key of a chain's native coin (gas is paid in it); sources price it as the wrapped native.
NATIVE = "native"
NATIVE_DECIMALS = 18
# Fixed scale of USD figures that are stored or shown as Decimal (prices and values): 18 decimal
# places, rounded half-even. Sums in billing are rounded again, once, to the currency's minor unit.
USD_SCALE = 18


def normalize_token(token: str) -> str:
    """Addresses compare lower-case; the native coin is `NATIVE` (also for "")."""
    key = token.strip().lower()
    if key in ("", NATIVE):
        return NATIVE
    return key


def to_decimal(value: Fraction, places: int = USD_SCALE) -> Decimal:
    """An exact rational rounded half-even to `places` decimal places (pure integer arithmetic)."""
    scaled = value * 10**places
    quotient, remainder = divmod(scaled.numerator, scaled.denominator)
    twice = 2 * remainder
    if twice > scaled.denominator or (twice == scaled.denominator and quotient % 2 == 1):
        quotient += 1
    # The string constructor is exact (no context precision applies, unlike arithmetic).
    return Decimal(f"{quotient}E-{places}")


@dataclass(frozen=True)
class Price:
    chain_id: int
    # Lower-case address, or NATIVE.
    token: str
    # USD per one whole token, exact.
    usd: Fraction
    # Where the price came from, e.g. "pool-mid:31337:WETH/USDC@0xab..", "fixed:config".
    source: str
    # Block whose state the price reflects (the newest block among the pools used); 0 = not
    # block-based (a configured price).
    block_number: int = 0
    observed_at: datetime | None = None


@dataclass(frozen=True)
class Priced:
    amount: int
    decimals: int
    price: Price

    @property
    def usd(self) -> Fraction:
        return self.price.usd * Fraction(self.amount, 10**self.decimals)


@dataclass(frozen=True)
class Unpriced:
    chain_id: int
    token: str
    amount: int
    decimals: int
    reason: str


Valuation = Priced | Unpriced


class PriceSource(Protocol):
    """A source of USD prices. Implement this for an external oracle and register it with
    `mevaas_chain.pricing.register_price_source`.

    `price` returns the price of one whole `token` on `chain_id` as of `at_block` (None = the
    newest state the source has), or None when the source cannot price it. It must not guess: a
    source that does not know a token returns None, never a zero price.
    """

    def price(self, chain_id: int, token: str, *, at_block: int | None = None) -> Price | None: ...


def valuate(
    source: PriceSource,
    chain_id: int,
    token: str,
    amount: int,
    decimals: int,
    *,
    at_block: int | None = None,
) -> Valuation:
    """Value `amount` base units of `token` (with `decimals`) in USD."""
    key = normalize_token(token)
    price = source.price(chain_id, key, at_block=at_block)
    if price is None:
        return Unpriced(chain_id, key, amount, decimals, f"no price source prices {chain_id}:{key}")
    return Priced(amount, decimals, price)
