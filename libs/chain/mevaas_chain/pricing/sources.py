"""Configured prices, the first-that-answers chain of sources, and the registry that builds the
configured source by name (so an external oracle is one `register_price_source` call)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from mevaas_chain.pricing.model import Price, PriceSource, normalize_token
from mevaas_chain.pricing.pools import PoolBook, PoolMidPrices, TokenInfo
from mevaas_chain.registry import ChainRegistry

DEFAULT_STABLECOINS = ("USDC", "USDT", "DAI")
DEFAULT_SOURCES = ("fixed", "pool-mid")


class PricingConfigError(ValueError):
    """A price table entry or a source name that cannot be used; the message names it."""


def parse_price_table(text: str) -> dict[tuple[int, str], Fraction]:
    """`"1:0xabc..=3000.5,31337:native=2000"` -> {(chain, token): USD per whole token}."""
    prices: dict[tuple[int, str], Fraction] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = entry.partition("=")
        chain, colon, token = key.partition(":")
        try:
            if not sep or not colon:
                raise ValueError
            price = Fraction(Decimal(value.strip()))
            chain_id = int(chain)
        except (ValueError, InvalidOperation):
            raise PricingConfigError(f"price table entry {entry!r}: expected chain_id:token=price") from None
        if price <= 0:
            raise PricingConfigError(f"price table entry {entry!r}: price must be > 0")
        prices[(chain_id, normalize_token(token))] = price
    return prices


@dataclass(frozen=True)
class FixedPrices:
    """Prices from configuration (e.g. mainnet tokens priced off-platform); source "fixed:config"."""

    prices: Mapping[tuple[int, str], Fraction]

    def price(self, chain_id: int, token: str, *, at_block: int | None = None) -> Price | None:
        key = normalize_token(token)
        value = self.prices.get((chain_id, key))
        return None if value is None else Price(chain_id, key, value, "fixed:config")


@dataclass(frozen=True)
class FirstOf:
    """The first source that prices a token wins (configuration order)."""

    sources: Sequence[PriceSource]

    def price(self, chain_id: int, token: str, *, at_block: int | None = None) -> Price | None:
        for source in self.sources:
            found = source.price(chain_id, token, at_block=at_block)
            if found is not None:
                return found
        return None


@dataclass
class PricingContext:
    """What a source factory may use: the chains (tokens, decimals, wrapped native), the shared
    pool book fed by market updates, the configured price table and stablecoins."""

    chains: ChainRegistry
    book: PoolBook = field(default_factory=PoolBook)
    table: Mapping[tuple[int, str], Fraction] = field(default_factory=dict)
    stablecoins: Sequence[str] = DEFAULT_STABLECOINS
    max_hops: int = 3

    def token_infos(self) -> dict[tuple[int, str], TokenInfo]:
        return {
            (chain.chain_id, token.address.lower()): TokenInfo(token.symbol, token.decimals)
            for chain in self.chains
            for token in chain.tokens
        } | {
            (chain.chain_id, chain.wrapped_native.lower()): TokenInfo(f"W{chain.native_symbol}", 18)
            for chain in self.chains
            if chain.wrapped_native and not any(t.address == chain.wrapped_native for t in chain.tokens)
        }

    def stablecoin_pegs(self) -> dict[tuple[int, str], Fraction]:
        """Stablecoins are named by symbol (any configured chain) or as chain_id:address; each is
        worth 1 USD."""
        wanted = {s.strip().lower() for s in self.stablecoins if s.strip()}
        pegs: dict[tuple[int, str], Fraction] = {}
        for chain in self.chains:
            for token in chain.tokens:
                address = token.address.lower()
                if token.symbol.lower() in wanted or f"{chain.chain_id}:{address}" in wanted:
                    pegs[(chain.chain_id, address)] = Fraction(1)
        return pegs


SourceFactory = Callable[[PricingContext], PriceSource]


def _pool_mid(context: PricingContext) -> PriceSource:
    return PoolMidPrices(
        context.book,
        context.token_infos(),
        context.stablecoin_pegs(),
        {c.chain_id: c.wrapped_native.lower() for c in context.chains if c.wrapped_native},
        context.max_hops,
    )


PRICE_SOURCES: dict[str, SourceFactory] = {
    "fixed": lambda context: FixedPrices(context.table),
    "pool-mid": _pool_mid,
}


def register_price_source(name: str, factory: SourceFactory) -> None:
    """Make a source selectable by `name` in the configuration (e.g. an external oracle)."""
    if name in PRICE_SOURCES:
        raise PricingConfigError(f"price source {name!r} is already registered")
    PRICE_SOURCES[name] = factory


def build_price_source(names: Sequence[str], context: PricingContext) -> PriceSource:
    """The configured sources, in order, as one `PriceSource`."""
    unknown = [n for n in names if n not in PRICE_SOURCES]
    if unknown or not names:
        raise PricingConfigError(
            f"unknown price source(s) {unknown or names!r}; known: {sorted(PRICE_SOURCES)}"
        )
    return FirstOf(tuple(PRICE_SOURCES[name](context) for name in names))
