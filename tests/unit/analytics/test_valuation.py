"""An execution is valued as of its inclusion block: profit in the profit token, gas as native,
each with its price source; a token with no price path is unpriced, and a non-final result is
not valued."""

from __future__ import annotations

from fractions import Fraction

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_analytics.domain.valuation import GAS_COST, REALIZED_PROFIT, value_execution
from mevaas_chain.pricing import (
    NATIVE,
    PoolBook,
    PoolReserves,
    Priced,
    PriceSource,
    PricingContext,
    Unpriced,
    build_price_source,
)
from mevaas_chain.registry import ChainConfig, ChainRegistry, TokenConfig

USDC, WETH, ORPH = ("0x" + c * 40 for c in "123")
E18 = 10**18


def prices() -> PriceSource:
    chains = ChainRegistry(
        chains=[
            ChainConfig(
                chain_id=31337,
                name="devnet",
                rpc_url="http://x",
                wrapped_native=WETH,
                tokens=[
                    TokenConfig(address=USDC, symbol="USDC", decimals=6),
                    TokenConfig(address=WETH, symbol="WETH", decimals=18),
                    TokenConfig(address=ORPH, symbol="ORPH", decimals=18),
                ],
            )
        ]
    )
    book = PoolBook()
    book.apply(31337, 100, [PoolReserves("0x" + "a1" * 20, WETH, USDC, 1000 * E18, 3_000_000 * 10**6)])
    book.apply(31337, 105, [PoolReserves("0x" + "a1" * 20, WETH, USDC, 1000 * E18, 4_000_000 * 10**6)])
    return build_price_source(["pool-mid"], PricingContext(chains, book))


def result(
    token: str, status: int = common_pb2.EXECUTION_RESULT_STATUS_INCLUDED
) -> events_pb2.ExecutionResult:
    return events_pb2.ExecutionResult(
        chain_id=31337,
        status=status,  # type: ignore[arg-type]
        block_number=102,
        realized_profit=str(E18 // 2),
        gas_cost=str(10**15),
        profit_token=common_pb2.Token(chain_id=31337, address=token, decimals=18),
    )


def test_priced_at_the_inclusion_block() -> None:
    values = {v.component: v for v in value_execution(result(WETH), prices())}
    profit, gas = values[REALIZED_PROFIT].valuation, values[GAS_COST].valuation
    assert isinstance(profit, Priced) and profit.usd == 1500  # block 102 sees block 100's 3000, not 105's
    assert profit.price.block_number == 100 and profit.price.source.startswith("pool-mid:31337:WETH/USDC@")
    assert isinstance(gas, Priced) and gas.usd == Fraction(3) and values[GAS_COST].token == NATIVE


def test_unpriced_token_and_non_final_results() -> None:
    values = {v.component: v for v in value_execution(result(ORPH), prices())}
    unpriced = values[REALIZED_PROFIT].valuation
    assert (
        isinstance(unpriced, Unpriced) and unpriced.amount == E18 // 2 and "31337:" + ORPH in unpriced.reason
    )
    assert isinstance(values[GAS_COST].valuation, Priced)
    assert value_execution(result(WETH, common_pb2.EXECUTION_RESULT_STATUS_SUBMITTED), prices()) == []
