"""One price source for every amount the platform shows or bills (see docs/pricing.md).

    context = PricingContext(load_registry(), table=parse_price_table(settings_text))
    source = build_price_source(["fixed", "pool-mid"], context)
    context.book.apply_update(market_update)          # every chain.<id>.block MarketUpdate
    valuation = valuate(source, chain_id, token, amount, decimals, at_block=block)
    match valuation:
        case Priced(): valuation.usd, valuation.price.source, valuation.price.block_number
        case Unpriced(): valuation.reason                 # never a silent 0

An external oracle implements `PriceSource` and is made selectable with `register_price_source`.
"""

from mevaas_chain.pricing.model import (
    NATIVE,
    NATIVE_DECIMALS,
    USD_SCALE,
    Price,
    Priced,
    PriceSource,
    Unpriced,
    Valuation,
    normalize_token,
    to_decimal,
    valuate,
)
from mevaas_chain.pricing.pools import MarketUpdateLike, PoolBook, PoolMidPrices, PoolReserves, TokenInfo
from mevaas_chain.pricing.sources import (
    DEFAULT_SOURCES,
    DEFAULT_STABLECOINS,
    PRICE_SOURCES,
    FirstOf,
    FixedPrices,
    PricingConfigError,
    PricingContext,
    build_price_source,
    parse_price_table,
    register_price_source,
)

__all__ = [
    "DEFAULT_SOURCES",
    "DEFAULT_STABLECOINS",
    "NATIVE",
    "NATIVE_DECIMALS",
    "PRICE_SOURCES",
    "USD_SCALE",
    "FirstOf",
    "FixedPrices",
    "MarketUpdateLike",
    "PoolBook",
    "PoolMidPrices",
    "PoolReserves",
    "Price",
    "PriceSource",
    "Priced",
    "PricingConfigError",
    "PricingContext",
    "TokenInfo",
    "Unpriced",
    "Valuation",
    "build_price_source",
    "normalize_token",
    "parse_price_table",
    "register_price_source",
    "to_decimal",
    "valuate",
]
