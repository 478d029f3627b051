"""The price source: multi-hop mid prices through the widest path to a stablecoin, exact for
tokens of 6, 8 and 18 decimals, as of a block, unpriced when no path exists, and an external
oracle plugged in through the Protocol and the registry. Expected values are hand-computed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction

import pytest

from mevaas_chain.pricing import (
    NATIVE,
    PoolBook,
    PoolReserves,
    Price,
    Priced,
    PriceSource,
    PricingConfigError,
    PricingContext,
    Unpriced,
    build_price_source,
    parse_price_table,
    register_price_source,
    to_decimal,
    valuate,
)
from mevaas_chain.registry import ChainConfig, ChainRegistry, TokenConfig

CHAIN = 31337
USDC, WETH, WBTC, LINK, ORPHAN, LONELY = ("0x" + c * 40 for c in "123456")
E18, E8, E6 = 10**18, 10**8, 10**6
T = datetime(2026, 3, 1, tzinfo=UTC)


def registry() -> ChainRegistry:
    tokens = [
        TokenConfig(address=USDC, symbol="USDC", decimals=6),
        TokenConfig(address=WETH, symbol="WETH", decimals=18),
        TokenConfig(address=WBTC, symbol="WBTC", decimals=8),
        TokenConfig(address=LINK, symbol="LINK", decimals=18),
        TokenConfig(address=ORPHAN, symbol="ORPH", decimals=18),
        TokenConfig(address=LONELY, symbol="LONE", decimals=18),
    ]
    return ChainRegistry(
        chains=[
            ChainConfig(chain_id=CHAIN, name="devnet", rpc_url="http://x", wrapped_native=WETH, tokens=tokens)
        ]
    )


def pool(n: int, a: str, b: str, ra: int, rb: int) -> PoolReserves:
    return PoolReserves("0x" + f"{n:02x}" * 20, a, b, ra, rb)


WETH_USDC = pool(0xA1, WETH, USDC, 1_000 * E18, 3_000_000 * E6)  # WETH = 3000
WBTC_WETH = pool(0xA2, WBTC, WETH, 10 * E8, 200 * E18)  # WBTC = 20 WETH = 60000
LINK_WETH = pool(0xA3, LINK, WETH, 100_000 * E18, 500 * E18)  # LINK = 0.005 WETH = 15 (depth 3M USD)
LINK_USDC_THIN = pool(0xA4, USDC, LINK, 200 * E6, 10 * E18)  # LINK = 20, depth only 400 USD
ORPHAN_LONELY = pool(0xA5, ORPHAN, LONELY, E18, E18)  # no path to a stablecoin


def source(
    book: PoolBook, *, max_hops: int = 3, table: str = "", names: tuple[str, ...] = ("fixed", "pool-mid")
) -> PriceSource:
    context = PricingContext(registry(), book, parse_price_table(table), max_hops=max_hops)
    return build_price_source(names, context)


@pytest.fixture
def book() -> PoolBook:
    book = PoolBook()
    book.apply(CHAIN, 10, [WETH_USDC, WBTC_WETH, LINK_WETH, LINK_USDC_THIN, ORPHAN_LONELY], observed_at=T)
    return book


def test_one_hop_and_decimals(book: PoolBook) -> None:
    prices = source(book)
    weth = valuate(prices, CHAIN, WETH, E18 // 4, 18)
    assert isinstance(weth, Priced) and weth.usd == 750
    assert weth.price.source == f"pool-mid:{CHAIN}:WETH/USDC@{WETH_USDC.address}"
    assert (weth.price.block_number, weth.price.observed_at) == (10, T)
    usdc = valuate(prices, CHAIN, USDC.upper().replace("0X", "0x"), 2_500_000, 6)
    assert isinstance(usdc, Priced) and usdc.usd == Fraction(5, 2)
    assert usdc.price.source == f"peg:{CHAIN}:USDC"


def test_multi_hop_eight_decimals(book: PoolBook) -> None:
    wbtc = valuate(source(book), CHAIN, WBTC, 150_000_000, 8)  # 1.5 WBTC
    assert isinstance(wbtc, Priced) and wbtc.usd == 90_000
    assert wbtc.price.source == (
        f"pool-mid:{CHAIN}:WBTC/WETH@{WBTC_WETH.address},WETH/USDC@{WETH_USDC.address}"
    )


def test_widest_path_beats_a_thin_direct_pool(book: PoolBook) -> None:
    link = source(book).price(CHAIN, LINK)
    assert link is not None and link.usd == 15  # through WETH (3M USD deep), not the 400 USD pool
    assert "LINK/WETH" in link.source


def test_hop_limit_and_no_path_are_unpriced(book: PoolBook) -> None:
    one_hop = source(book, max_hops=1)
    assert one_hop.price(CHAIN, WBTC) is None
    link = one_hop.price(CHAIN, LINK)
    assert link is not None and link.usd == 20  # only the direct pool is within one hop
    orphan = valuate(source(book), CHAIN, ORPHAN, 5 * E18, 18)
    assert isinstance(orphan, Unpriced)
    assert (orphan.amount, orphan.token) == (5 * E18, ORPHAN)
    unknown_chain = valuate(source(book), 1, WETH, E18, 18)
    assert isinstance(unknown_chain, Unpriced)


def test_prices_as_of_a_block_and_reorgs(book: PoolBook) -> None:
    book.apply(CHAIN, 20, [pool(0xA1, WETH, USDC, 1_000 * E18, 3_300_000 * E6)])
    prices = source(book)
    assert prices.price(CHAIN, WETH, at_block=15).usd == 3000  # type: ignore[union-attr]
    latest = prices.price(CHAIN, WETH)
    assert latest is not None and (latest.usd, latest.block_number) == (Fraction(3300), 20)
    assert prices.price(CHAIN, WETH, at_block=9) is None
    # Block 20 replaced by a reorg: the new block's reserves win.
    book.apply(CHAIN, 20, [pool(0xA1, WETH, USDC, 1_000 * E18, 2_900_000 * E6)])
    assert prices.price(CHAIN, WETH).usd == 2900  # type: ignore[union-attr]
    # Two-hop price takes the newest block of the pools it used.
    wbtc = prices.price(CHAIN, WBTC)
    assert wbtc is not None and (wbtc.usd, wbtc.block_number) == (Fraction(58_000), 20)


def test_native_priced_as_wrapped_native(book: PoolBook) -> None:
    gas = valuate(source(book), CHAIN, NATIVE, 21_000 * 10**9 * 10, 18)  # 210000 gwei
    assert isinstance(gas, Priced) and gas.usd == Fraction(63, 100)
    assert gas.price.token == NATIVE


def test_fixed_table_first_then_pools(book: PoolBook) -> None:
    prices = source(book, table=f"{CHAIN}:{WETH}=2000.5, {CHAIN}:{ORPHAN}=0.25")
    weth = prices.price(CHAIN, WETH)
    assert weth is not None and (weth.usd, weth.source) == (Fraction(4001, 2), "fixed:config")
    assert prices.price(CHAIN, ORPHAN).usd == Fraction(1, 4)  # type: ignore[union-attr]
    only_pools = source(book, table=f"{CHAIN}:{WETH}=2000", names=("pool-mid",))
    assert only_pools.price(CHAIN, WETH).usd == 3000  # type: ignore[union-attr]


class StaticOracle:
    """An external oracle: anything with `price(chain_id, token, *, at_block)`."""

    def __init__(self, prices: dict[str, Fraction]) -> None:
        self.prices = prices
        self.calls: list[tuple[int, str, int | None]] = []

    def price(self, chain_id: int, token: str, *, at_block: int | None = None) -> Price | None:
        self.calls.append((chain_id, token, at_block))
        value = self.prices.get(token)
        return None if value is None else Price(chain_id, token, value, "oracle:static", at_block or 0)


def test_external_oracle_through_the_registry(book: PoolBook) -> None:
    oracle = StaticOracle({LONELY: Fraction(7)})
    name = f"static-{uuid.uuid4().hex[:6]}"
    register_price_source(name, lambda context: oracle)
    with pytest.raises(PricingConfigError):
        register_price_source(name, lambda context: oracle)
    prices = source(book, names=(name, "pool-mid"))
    lonely = valuate(prices, CHAIN, LONELY.upper().replace("0X", "0x"), 3 * E18, 18, at_block=10)
    assert isinstance(lonely, Priced) and lonely.usd == 21 and lonely.price.source == "oracle:static"
    assert oracle.calls[-1] == (CHAIN, LONELY, 10)  # the oracle sees normalized tokens and the block
    weth = prices.price(CHAIN, WETH)  # the oracle does not know it: the next source answers
    assert weth is not None and weth.source.startswith("pool-mid:")


def test_configuration_errors_name_the_entry() -> None:
    with pytest.raises(PricingConfigError, match="31337:0xab"):
        parse_price_table("31337:0xab")
    with pytest.raises(PricingConfigError, match="> 0"):
        parse_price_table("31337:0xab=0")
    with pytest.raises(PricingConfigError, match="unknown price source"):
        build_price_source(["chainlink-nope"], PricingContext(ChainRegistry()))


def test_to_decimal_rounds_half_even_at_a_stated_scale() -> None:
    assert to_decimal(Fraction(1, 3), 2) == Decimal("0.33")
    assert to_decimal(Fraction(5, 1000), 2) == Decimal("0.00")
    assert to_decimal(Fraction(15, 1000), 2) == Decimal("0.02")
    assert to_decimal(Fraction(-15, 1000), 2) == Decimal("-0.02")
    big = Fraction(123456789012345678901234567890123, 10**18)
    assert str(to_decimal(big)) == "123456789012345.678901234567890123"
