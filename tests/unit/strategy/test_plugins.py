"""Plugins on synthetic pool states: every amount equals the exact V2 math of mevaas_chain.amm."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from mevaas.common.v1 import common_pb2
from mevaas_chain.amm.arbitrage import optimize
from mevaas_chain.amm.v2 import SwapLeg, amounts_out
from mevaas_strategies.actions import CrossChainSwaps, SwapCycle
from mevaas_strategies.arbitrage import GAS_PER_HOP, DexArbitrage, FlashArbitrage, gas_for
from mevaas_strategies.backrun import BackrunStrategy as Backrun
from mevaas_strategies.cross_chain import GAS_PER_LEG, CrossChainArbitrage
from mevaas_strategies.liquidation import LiquidationStrategy
from mevaas_strategies.market import MarketView
from mevaas_strategies.model import StrategySpec, TokenRef
from mevaas_strategies.plugins import Candidate, plugin_for, register_plugin, registered_plugins
from tests.unit.strategy.synthetic import E18, LINK, USDC, WETH, market, pool


def cycle(candidate: Candidate) -> SwapCycle:
    assert isinstance(candidate.action, SwapCycle)
    return candidate.action


def swaps(candidate: Candidate) -> CrossChainSwaps:
    assert isinstance(candidate.action, CrossChainSwaps)
    return candidate.action


def spec(
    type_: int = common_pb2.STRATEGY_TYPE_DEX_ARBITRAGE,
    *,
    max_position: int = 10**30,
    chain_ids: tuple[int, ...] = (1,),
    tokens: tuple[tuple[int, str], ...] = ((1, WETH), (1, USDC), (1, LINK)),
    min_profit: int = 0,
    dexes: frozenset[str] = frozenset(),
) -> StrategySpec:
    return StrategySpec(
        strategy_id="s1",
        tenant_id="t1",
        version=1,
        type=type_,
        chain_ids=chain_ids,
        tokens=tuple(TokenRef(c, a) for c, a in tokens),
        dexes=dexes,
        base_token=TokenRef(chain_ids[0], WETH),
        allocation=max_position,
        max_position=max_position,
        max_hops=3,
        min_profit=min_profit,
        max_slippage_bps=50,
        max_gas_price_wei=10**12,
        execution_delay_ms=0,
        retry_attempts=0,
        submission_mode=common_pb2.SUBMISSION_MODE_PRIVATE_BUNDLE,
    )


CHEAP = pool("a1", "uni", WETH, USDC, 1000 * E18, 3_000_000 * 10**6)
DEAR = pool("a2", "sushi", WETH, USDC, 1000 * E18, 3_100_000 * 10**6)
QUIET = pool("a3", "uni", WETH, LINK, 1000 * E18, 200_000 * E18)


def view(*pools: object, **kwargs: int) -> MarketView:
    return MarketView(chains={1: market(list(pools), **kwargs)})  # type: ignore[arg-type]


def test_dex_arbitrage_finds_the_exact_optimum_of_the_two_hop_cycle() -> None:
    found = DexArbitrage(spec()).on_market_update(view(CHEAP, DEAR, QUIET), None)
    assert len(found) == 1
    (c,) = found
    legs = [SwapLeg(1000 * E18, 3_100_000 * 10**6), SwapLeg(3_000_000 * 10**6, 1000 * E18)]
    best = optimize(legs)
    assert best is not None
    assert c.action.amount_in == best.amount_in
    assert c.expected_profit == best.profit
    assert [h.pool for h in cycle(c).hops] == [DEAR.address, CHEAP.address]
    assert [h.amount_out for h in cycle(c).hops] == list(best.amounts[1:])
    gas_price = 11 * 10**9
    assert c.gas_estimate == gas_for(2, flash=False)
    assert c.gas_price == gas_price
    assert c.gas_cost == c.gas_estimate * gas_price  # WETH is the native coin: 1:1
    assert c.net_profit == best.profit - c.gas_cost
    assert not cycle(c).flash


def test_dex_arbitrage_caps_the_input_at_max_position_with_exact_amounts() -> None:
    cap = 2 * E18
    (c,) = DexArbitrage(spec(max_position=cap)).on_market_update(view(CHEAP, DEAR), None)
    legs = [SwapLeg(1000 * E18, 3_100_000 * 10**6), SwapLeg(3_000_000 * 10**6, 1000 * E18)]
    amounts = amounts_out(cap, legs)
    assert c.action.amount_in == cap
    assert c.expected_profit == amounts[-1] - cap


def test_flash_arbitrage_ignores_the_inventory_cap_and_is_flagged() -> None:
    (c,) = FlashArbitrage(spec(common_pb2.STRATEGY_TYPE_FLASH_ARBITRAGE, max_position=E18)).on_market_update(
        view(CHEAP, DEAR), None
    )
    assert cycle(c).flash
    assert c.action.amount_in > E18
    assert c.gas_estimate == gas_for(2, flash=True)


def test_three_hop_cycle_through_the_base_token() -> None:
    usdc_link = pool("a4", "uni", USDC, LINK, 1_000_000 * 10**6, 50_000 * E18)  # LINK at 20 USDC
    # WETH->USDC at 3000, USDC->LINK at 1/20, LINK->WETH at 200 LINK/WETH (15 USDC): a 3-hop gap.
    found = DexArbitrage(spec()).on_market_update(view(CHEAP, QUIET, usdc_link), None)
    assert found
    best = max(found, key=lambda c: c.expected_profit)
    assert len(cycle(best).hops) == 3
    legs = [
        SwapLeg(*(p.reserves_for(h.token_in)), 30)
        for h, p in zip(
            cycle(best).hops,
            [
                {CHEAP.address: CHEAP, QUIET.address: QUIET, usdc_link.address: usdc_link}[h.pool]
                for h in cycle(best).hops
            ],
            strict=True,
        )
    ]
    result = optimize(legs)
    assert result is not None
    assert (best.action.amount_in, best.expected_profit) == (result.amount_in, result.profit)


def test_incremental_evaluation_only_looks_at_changed_pools() -> None:
    plugin = DexArbitrage(spec())
    v = view(CHEAP, DEAR, QUIET)
    assert plugin.on_market_update(v, {1: frozenset({QUIET.address})}) == []
    assert len(plugin.on_market_update(v, {1: frozenset({DEAR.address})})) == 1
    assert plugin.on_market_update(v, {2: frozenset({DEAR.address})}) == []


def test_dexes_filter_and_min_profit_filter() -> None:
    assert DexArbitrage(spec(dexes=frozenset({"uni"}))).on_market_update(view(CHEAP, DEAR), None) == []
    (c,) = DexArbitrage(spec()).on_market_update(view(CHEAP, DEAR), None)
    assert DexArbitrage(spec(min_profit=c.net_profit + 1)).on_market_update(view(CHEAP, DEAR), None) == []
    assert DexArbitrage(spec(min_profit=c.net_profit)).on_market_update(view(CHEAP, DEAR), None) == [c]


def test_gas_above_profit_yields_nothing() -> None:
    assert DexArbitrage(spec()).on_market_update(view(CHEAP, DEAR, base_fee=10**18), None) == []


def test_cross_chain_arbitrage_buys_on_the_cheap_chain_and_sells_on_the_other() -> None:
    a = market([CHEAP], chain_id=1)
    dear_b = replace(DEAR, address="0x" + "b1" * 20)
    b = market([dear_b], chain_id=2)
    s = spec(
        common_pb2.STRATEGY_TYPE_CROSS_CHAIN_ARBITRAGE,
        max_position=50 * E18,
        chain_ids=(1, 2),
        tokens=((1, WETH), (1, USDC), (2, WETH), (2, USDC)),
    )
    found = CrossChainArbitrage(s).on_market_update(MarketView(chains={1: a, 2: b}), None)
    assert len(found) == 1
    (c,) = found
    # WETH is dearer on chain 2: sell it there for USDC, buy it back with that USDC on chain 1.
    assert c.chain_ids == (2, 1)
    legs = [SwapLeg(1000 * E18, 3_100_000 * 10**6), SwapLeg(3_000_000 * 10**6, 1000 * E18)]
    best = optimize(legs)
    assert best is not None
    amount_in = min(best.amount_in, 50 * E18)
    amounts = amounts_out(amount_in, legs)
    assert c.action.amount_in == amount_in
    assert c.expected_profit == amounts[-1] - amount_in
    assert [leg.chain_id for leg in swaps(c).legs] == [2, 1]
    assert c.gas_estimate == 2 * GAS_PER_LEG
    assert c.gas_cost == math.ceil(GAS_PER_LEG * a.gas_price) + math.ceil(GAS_PER_LEG * b.gas_price)
    # Only the changed chain's routes are re-evaluated.
    assert CrossChainArbitrage(s).on_market_update(MarketView(chains={1: a, 2: b}), {1: frozenset()}) == []


def test_registry_lists_every_type_and_accepts_new_plugins_without_edits() -> None:
    names = set(registered_plugins())
    assert {
        "dex_arbitrage",
        "flash_arbitrage",
        "cross_chain_arbitrage",
        "liquidation",
        "backrun",
        "custom",
    } <= names
    assert plugin_for("dex_arbitrage") is DexArbitrage

    @register_plugin
    class Echo(Backrun):
        type_name = "test_echo"

    assert plugin_for("test_echo") is Echo
    with pytest.raises(ValueError, match="already registered"):

        @register_plugin
        class Clash(Backrun):
            type_name = "test_echo"


def test_blocks_alone_give_backrun_and_liquidation_nothing() -> None:
    v = view(CHEAP, DEAR)
    # backrun bids only in order-flow auctions (on_hint)
    assert Backrun(spec()).on_market_update(v, None) == []
    # Without a lending market on the chain, liquidation has nothing to look at.
    assert LiquidationStrategy(spec()).on_market_update(v, None) == []


def test_gas_constants_are_per_hop() -> None:
    assert gas_for(3, flash=False) - gas_for(2, flash=False) == GAS_PER_HOP
