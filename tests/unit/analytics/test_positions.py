"""A treasury holding as a position: exact amounts, a priced value with its source, or an explicit
unpriced flag (never 0); totals only when everything is priced."""

from __future__ import annotations

from fractions import Fraction

from mevaas.common.v1 import common_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas.portfolio.v1 import portfolio_pb2
from mevaas_analytics.domain import positions
from mevaas_chain.pricing import FixedPrices, valuate

WETH = "0x" + "aa" * 20
LINK = "0x" + "bb" * 20


def holding(address: str, wallet: int, executor: int, decimals: int = 18) -> execution_pb2.TreasuryHolding:
    return execution_pb2.TreasuryHolding(
        token=common_pb2.Token(chain_id=1, address=address, symbol="T", decimals=decimals),
        wallet_address="0x" + "01" * 20,
        executor_address="0x" + "02" * 20,
        wallet_balance=str(wallet),
        executor_balance=str(executor),
        block_number=7,
    )


PRICES = FixedPrices({(1, WETH): Fraction(3000), (1, "native"): Fraction(2500)})


def value(h: execution_pb2.TreasuryHolding) -> portfolio_pb2.Position:
    total = int(h.wallet_balance) + int(h.executor_balance)
    return positions.position(h, valuate(PRICES, 1, positions.token_key(h.token), total, h.token.decimals), 5)


def test_a_priced_holding_keeps_wallet_and_executor_apart_and_values_the_sum_exactly() -> None:
    p = value(holding(WETH, 200 * 10**18, 22_700_000_000_000_000_001))
    assert (p.wallet_balance, p.executor_balance, p.balance) == (
        str(200 * 10**18),
        "22700000000000000001",
        "222700000000000000001",
    )
    assert (p.wallet_amount, p.executor_amount, p.amount) == (
        "200",
        "22.700000000000000001",
        "222.700000000000000001",
    )
    assert p.notional_value.amount == "668100.000000000000003000" and p.notional_value.currency_code == "USD"
    assert (p.price.amount, p.price_source, p.unpriced, p.realized_pnl) == (
        "3000.000000000000000000",
        "fixed:config",
        False,
        "5",
    )


def test_the_zero_address_is_the_native_coin_and_an_unknown_token_is_unpriced_not_zero() -> None:
    native = value(holding("0x" + "00" * 20, 10**18, 0))
    assert native.notional_value.amount == "2500.000000000000000000"
    link = value(holding(LINK, 1, 2, decimals=6))
    assert link.unpriced and "1:" + LINK in link.unpriced_reason
    assert not link.HasField("notional_value") and not link.HasField("price")
    assert link.amount == "0.000003"


def test_totals_are_set_only_when_every_position_is_priced() -> None:
    priced = [value(holding(WETH, 10**18, 0)), value(holding("0x" + "00" * 20, 10**18, 0))]
    response = portfolio_pb2.GetPositionsResponse()
    positions.totals(priced, response)
    assert response.total_notional_value.amount == "5500.000000000000000000"
    with_unpriced = [*priced, value(holding(LINK, 1, 0))]
    response = portfolio_pb2.GetPositionsResponse()
    positions.totals(with_unpriced, response)
    assert not response.HasField("total_notional_value")
    assert (response.priced_notional_value.amount, response.unpriced_count) == (
        "5500.000000000000000000",
        1,
    )
