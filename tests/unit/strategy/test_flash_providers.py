"""Flash providers on synthetic markets: each quotes the exact fee its lender charges (the Aave
premium as percentMul of the loan by the pool's FLASHLOAN_PREMIUM_TOTAL), `choose` takes the
cheapest that can lend and names every provider it skipped with the reason, and a flash
arbitrage's candidate is net of the chosen provider's fee and records it on the action."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_chain.flash_lenders import FlashLender
from mevaas_chain.lending.math import RAY, Reserve, percent_mul
from mevaas_strategies import flash_providers
from mevaas_strategies.actions import Hop, SwapCycle
from mevaas_strategies.arbitrage import GAS_BASE, GAS_PER_HOP, FlashArbitrage
from mevaas_strategies.flash_providers import (
    AAVE_FLASH_LOAN_GAS,
    BALANCER_FLASH_LOAN_GAS,
    V2_FLASH_SWAP_GAS,
    V3_FLASH_GAS,
    FlashQuote,
    FlashSkip,
    choose,
)
from mevaas_strategies.market import ChainMarket, LendingState, MarketView
from tests.unit.strategy.synthetic import E18, USDC, WETH, market
from tests.unit.strategy.test_plugins import CHEAP, DEAR, spec

ACTIVE = 1 << 56
FLASH_ENABLED = 1 << 63
PAUSED = 1 << 60


def reserve(asset: str, configuration: int) -> Reserve:
    return Reserve(asset, 0, configuration | 18 << 48, RAY, 0, RAY, 0, 0, "0xa1", "0xd1")


def lending(configuration: int = ACTIVE | FLASH_ENABLED, premium: int | None = 5) -> LendingState:
    return LendingState("aave_v3", "0x" + "99" * 20, 0, {WETH: reserve(WETH, configuration)}, {}, {}, premium)


def with_lending(state: LendingState | None) -> ChainMarket:
    m = market([CHEAP, DEAR])
    m.lending = state
    return m


def cycle_hops(amount_in: int = 10 * E18, amount_out: int = 30_000 * 10**6) -> tuple[Hop, ...]:
    return (
        Hop(1, DEAR.address, "sushi", WETH, USDC, amount_in, amount_out, 30),
        Hop(1, CHEAP.address, "uni", USDC, WETH, amount_out, amount_in + E18, 30),
    )


# The providers a market without configured flash lenders (V3 pools, a Balancer vault) can offer.
V2_AND_AAVE = ("uniswap_v2", "aave_v3")


def gas_in_wei(gas: int) -> int:
    return gas * 11 * 10**9


def test_the_flash_swap_is_chosen_over_the_flash_loan_when_both_can_lend() -> None:
    m = with_lending(lending())
    hops = cycle_hops()
    choice = choose(m, hops, gas_in_wei, V2_AND_AAVE)
    assert choice.skipped == ()
    assert choice.quote == FlashQuote("uniswap_v2", USDC, 30_000 * 10**6, 0, V2_FLASH_SWAP_GAS)
    aave = flash_providers.FLASH_PROVIDERS["aave_v3"].quote(m, hops)
    assert aave == FlashQuote("aave_v3", WETH, 10 * E18, percent_mul(10 * E18, 5), AAVE_FLASH_LOAN_GAS)
    assert aave.fee == 5 * 10**15


def test_the_flash_loan_is_chosen_when_it_is_cheaper() -> None:
    # A 0-premium pool and a flash swap whose gas costs more than the loan's: the fee plus gas decides.
    m = with_lending(lending(premium=0))
    choice = choose(m, cycle_hops(), lambda gas: gas if gas == AAVE_FLASH_LOAN_GAS else 10**18)
    assert choice.quote is not None and choice.quote.provider == "aave_v3" and choice.quote.fee == 0


def test_the_premium_is_the_pools_not_a_constant() -> None:
    hops = cycle_hops()
    for premium in (0, 5, 9, 30):
        quote = flash_providers.FLASH_PROVIDERS["aave_v3"].quote(with_lending(lending(premium=premium)), hops)
        assert isinstance(quote, FlashQuote) and quote.fee == (10 * E18 * premium + 5_000) // 10_000


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (None, "no Aave V3 market indexed on chain 1"),
        (lending(premium=None), "the pool's flash-loan premium is not known"),
        (replace(lending(), reserves={}), f"{WETH} is not a reserve of pool {'0x' + '99' * 20}"),
        (lending(ACTIVE), f"flash loans of {WETH} are disabled"),
        (lending(ACTIVE | FLASH_ENABLED | PAUSED), f"reserve {WETH} is paused"),
        (lending(FLASH_ENABLED), f"reserve {WETH} is inactive"),
    ],
)
def test_a_lender_that_cannot_lend_is_skipped_with_the_reason(
    state: LendingState | None, reason: str
) -> None:
    choice = choose(with_lending(state), cycle_hops(), gas_in_wei, V2_AND_AAVE)
    assert choice.quote is not None and choice.quote.provider == "uniswap_v2"
    assert choice.skipped == (FlashSkip("aave_v3", reason),)


def test_a_pair_that_cannot_lend_the_amount_is_skipped_and_the_loan_taken() -> None:
    _, reserve_out = DEAR.reserves_for(WETH)
    hops = cycle_hops(amount_out=reserve_out)
    choice = choose(with_lending(lending()), hops, gas_in_wei, V2_AND_AAVE)
    assert choice.quote is not None and choice.quote.provider == "aave_v3"
    assert choice.skipped == (
        FlashSkip("uniswap_v2", f"pair {DEAR.address} holds {reserve_out} of {USDC}, not {reserve_out}"),
    )


def test_no_provider_no_candidate_and_an_unknown_name_is_a_skip() -> None:
    choice = choose(with_lending(None), cycle_hops(amount_out=10**40), gas_in_wei, ("uniswap_v2", "nope"))
    assert choice.quote is None
    assert [s.provider for s in choice.skipped] == ["uniswap_v2", "nope"]
    assert choice.skipped[1].reason == "no such flash provider"


def flash_candidate(state: LendingState | None) -> tuple[SwapCycle, int, int]:
    strategy = FlashArbitrage(spec(common_pb2.STRATEGY_TYPE_FLASH_ARBITRAGE))
    (c,) = strategy.on_market_update(MarketView({1: with_lending(state)}), None)
    assert isinstance(c.action, SwapCycle)
    gross = c.action.hops[-1].amount_out - c.action.amount_in
    return c.action, c.expected_profit, gross


def test_the_flash_arbitrage_records_the_flash_swap_it_chose() -> None:
    action, profit, gross = flash_candidate(lending())
    assert action.flash and action.flash_provider == "uniswap_v2" and action.flash_fee == 0
    assert profit == gross
    proto = action.to_proto()
    assert proto.financing == events_pb2.FINANCING_FLASH_SWAP
    assert (proto.flash_provider, proto.flash_fee) == ("uniswap_v2", "0")


def test_the_flash_arbitrage_with_only_aave_is_net_of_the_premium(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(flash_providers.FLASH_PROVIDERS, "uniswap_v2")
    strategy = FlashArbitrage(spec(common_pb2.STRATEGY_TYPE_FLASH_ARBITRAGE))
    (c,) = strategy.on_market_update(MarketView({1: with_lending(lending())}), None)
    action = c.action
    assert isinstance(action, SwapCycle) and action.flash_provider == "aave_v3"
    fee = percent_mul(action.amount_in, 5)
    assert action.flash_fee == fee > 0
    assert c.expected_profit == action.hops[-1].amount_out - action.amount_in - fee
    assert c.gas_estimate == GAS_BASE + 2 * GAS_PER_HOP + AAVE_FLASH_LOAN_GAS
    proto = action.to_proto()
    assert proto.financing == events_pb2.FINANCING_FLASH_LOAN
    assert (proto.flash_provider, proto.flash_fee) == ("aave_v3", str(fee))
    # Without a lender that can lend, no candidate.
    assert strategy.on_market_update(MarketView({1: with_lending(None)}), None) == []


V3_POOL_A, V3_POOL_B, VAULT = "0x" + "3a" * 20, "0x" + "3b" * 20, "0x" + "ba" * 20


def with_lenders(*lenders: FlashLender) -> ChainMarket:
    m = with_lending(None)
    m.flash_lenders = lenders
    return m


def test_a_v3_pool_quotes_its_exact_fee_rounded_up_and_the_cheapest_able_pool_lends() -> None:
    amount = 10 * E18 + 1
    hops = cycle_hops(amount_in=amount)
    m = with_lenders(
        FlashLender("uniswap_v3", V3_POOL_A, 3000, {WETH: 100 * E18}),
        FlashLender("uniswap_v3", V3_POOL_B, 500, {WETH: 100 * E18}),
        FlashLender("uniswap_v3", "0x" + "3c" * 20, 100, {WETH: E18}),
    )
    quote = flash_providers.FLASH_PROVIDERS["uniswap_v3"].quote(m, hops)
    # mulDivRoundingUp(amount, 500, 1e6): 5e15 and a remainder, so one more wei.
    assert quote == FlashQuote("uniswap_v3", WETH, amount, 5 * 10**15 + 1, V3_FLASH_GAS, V3_POOL_B)


def test_a_v3_pool_on_the_route_short_of_the_amount_or_idle_does_not_lend() -> None:
    hops = cycle_hops()
    on_route = FlashLender("uniswap_v3", DEAR.address, 100, {WETH: 100 * E18})
    short = FlashLender("uniswap_v3", V3_POOL_A, 500, {WETH: 10 * E18 - 1})
    # No in-range liquidity: UniswapV3Pool.flash requires liquidity > 0.
    idle = FlashLender("uniswap_v3", V3_POOL_B, 100, {WETH: 100 * E18}, active=False)
    skip = flash_providers.FLASH_PROVIDERS["uniswap_v3"].quote(with_lenders(on_route, short, idle), hops)
    assert skip == FlashSkip(
        "uniswap_v3", f"no active V3 flash pool off the route holds {10 * E18} of {WETH} (most: {100 * E18})"
    )
    assert flash_providers.FLASH_PROVIDERS["uniswap_v3"].quote(with_lenders(), hops) == FlashSkip(
        "uniswap_v3", "no Uniswap V3 flash pool configured on chain 1"
    )


@pytest.mark.parametrize(
    ("fee", "expected"),
    [(0, 0), (10**15, 10**16), (3 * 10**14 + 7, (10 * E18 * (3 * 10**14 + 7) - 1) // E18 + 1)],
)
def test_the_balancer_vault_quotes_mul_up_of_its_fee_percentage(fee: int, expected: int) -> None:
    m = with_lenders(FlashLender("balancer_v2", VAULT, fee, {WETH: 10 * E18}))
    quote = flash_providers.FLASH_PROVIDERS["balancer_v2"].quote(m, cycle_hops())
    assert quote == FlashQuote("balancer_v2", WETH, 10 * E18, expected, BALANCER_FLASH_LOAN_GAS, VAULT)


def test_choose_moves_from_the_vault_to_the_v3_pool_when_the_vault_is_dearer_or_short() -> None:
    pool = FlashLender("uniswap_v3", V3_POOL_A, 500, {WETH: 100 * E18})
    both = ("uniswap_v3", "balancer_v2")
    free = choose(
        with_lenders(pool, FlashLender("balancer_v2", VAULT, 0, {WETH: 100 * E18})),
        cycle_hops(),
        gas_in_wei,
        both,
    )
    assert free.quote is not None and free.quote.provider == "balancer_v2"
    dear = choose(
        with_lenders(pool, FlashLender("balancer_v2", VAULT, 10**15, {WETH: 100 * E18})),
        cycle_hops(),
        gas_in_wei,
        both,
    )
    assert dear.quote is not None and dear.quote.provider == "uniswap_v3" and dear.skipped == ()
    short = choose(
        with_lenders(pool, FlashLender("balancer_v2", VAULT, 0, {WETH: E18})), cycle_hops(), gas_in_wei, both
    )
    assert short.quote is not None and short.quote.provider == "uniswap_v3"
    assert short.skipped == (
        FlashSkip("balancer_v2", f"vault {VAULT} holds {E18} of {WETH}, not {10 * E18}"),
    )
