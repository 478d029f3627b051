"""The rebalance planner, state table and command reading (pure): targets + holdings + prices + pools -> exact
trades; an unpriced or unknown target, weights over 100%, a pair without a pool and an unfundable
target fail with a reason naming the token; the state table allows only its transitions; a
trade's opportunity id is stable per (rebalance, index)."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_chain.amm.v2 import get_amount_out
from mevaas_execution.rebalancing.commands import targets_of
from mevaas_execution.rebalancing.domain import states
from mevaas_execution.rebalancing.domain.planner import (
    Asset,
    PlanningError,
    PoolState,
    Target,
    plan_trades,
    target_amounts,
)
from mevaas_execution.rebalancing.domain.trades import trade_action, trade_opportunity_id

CHAIN = 31337
WETH, USDC, DAI, LINK = ("0x" + c * 20 for c in ("22", "33", "44", "55"))
E18, E6 = 10**18, 10**6


def asset(token: str, symbol: str, decimals: int, held: int, usd: Fraction | None) -> Asset:
    return Asset(CHAIN, token, symbol, decimals, held, usd, "" if usd else "no price source prices it")


def book(weth_usdc: tuple[int, int] = (1_000 * E18, 3_000_000 * E6)) -> list[PoolState]:
    """WETH/USDC and WETH/DAI pools at 3000 USD per WETH (token0 is the lower address)."""
    return [
        PoolState(CHAIN, "uni", "0x" + "a1" * 20, WETH, USDC, *weth_usdc),
        PoolState(CHAIN, "uni", "0x" + "a2" * 20, WETH, DAI, 500 * E18, 1_500_000 * E18),
    ]


ASSETS = {
    (CHAIN, WETH): asset(WETH, "WETH", 18, 10 * E18, Fraction(3000)),
    (CHAIN, USDC): asset(USDC, "USDC", 6, 0, Fraction(1)),
    (CHAIN, DAI): asset(DAI, "DAI", 18, 0, Fraction(1)),
}


def test_weights_sell_the_excess_into_the_shortfalls_exactly() -> None:
    targets = [
        Target(CHAIN, WETH, weight_percent=Decimal(60)),
        Target(CHAIN, USDC, weight_percent=Decimal(25)),
        Target(CHAIN, DAI, weight_percent=Decimal(15)),
    ]
    # Portfolio 30000 USD: 18000 WETH, 7500 USDC, 4500 DAI.
    assert target_amounts(targets, ASSETS) == {
        (CHAIN, WETH): 6 * E18,
        (CHAIN, USDC): 7_500 * E6,
        (CHAIN, DAI): 4_500 * E18,
    }
    first, second = plan_trades(targets, ASSETS, book(), 100)
    # The larger shortfall first, each paid in WETH at the mid price, to the wei.
    assert (first.token_in, first.token_out, first.amount_in) == (WETH, USDC, 2_500_000_000_000_000_000)
    assert first.expected_out == get_amount_out(first.amount_in, 1_000 * E18, 3_000_000 * E6, 30)
    assert first.min_amount_out == first.expected_out * 9_900 // 10_000
    assert (second.token_in, second.token_out, second.amount_in) == (WETH, DAI, 1_500_000_000_000_000_000)
    assert second.pool == "0x" + "a2" * 20 and second.dex == "uni"
    assert first.amount_in + second.amount_in == 4 * E18


def test_a_shortfall_is_funded_by_several_sellers_largest_excess_first() -> None:
    assets = {
        (CHAIN, WETH): asset(WETH, "WETH", 18, E18, Fraction(3000)),
        (CHAIN, USDC): asset(USDC, "USDC", 6, 0, Fraction(1)),
        (CHAIN, DAI): asset(DAI, "DAI", 18, 3_000 * E18, Fraction(1)),
    }
    pools = [*book(), PoolState(CHAIN, "sushi", "0x" + "a3" * 20, USDC, DAI, 2_000_000 * E6, 2_000_000 * E18)]
    targets = [
        Target(CHAIN, WETH, amount=E18 // 2),
        Target(CHAIN, USDC, amount=4_500 * E6),
        Target(CHAIN, DAI, amount=0),
    ]
    first, second = plan_trades(targets, assets, pools, 50)
    assert (first.token_in, first.token_out, first.amount_in, first.dex) == (DAI, USDC, 3_000 * E18, "sushi")
    assert first.expected_out == get_amount_out(3_000 * E18, 2_000_000 * E18, 2_000_000 * E6, 30)
    assert (second.token_in, second.token_out, second.amount_in) == (WETH, USDC, E18 // 2)


def test_nothing_to_do_when_every_target_is_met() -> None:
    targets = [Target(CHAIN, WETH, amount=10 * E18), Target(CHAIN, USDC, amount=0)]
    assert plan_trades(targets, ASSETS, book(), 100) == []


def test_an_unpriced_target_fails_naming_the_token_never_as_zero() -> None:
    assets = {**ASSETS, (CHAIN, LINK): asset(LINK, "LINK", 18, 5 * E18, None)}
    targets = [
        Target(CHAIN, WETH, weight_percent=Decimal(50)),
        Target(CHAIN, LINK, weight_percent=Decimal(50)),
    ]
    with pytest.raises(PlanningError, match=f"target token LINK \\({CHAIN}:{LINK}\\) cannot be priced"):
        plan_trades(targets, assets, book(), 100)


def test_an_unknown_token_weights_over_100_and_a_missing_pool_fail_with_reasons() -> None:
    with pytest.raises(PlanningError, match=f"{CHAIN}:{LINK} is not a configured token"):
        target_amounts([Target(CHAIN, LINK, amount=1)], ASSETS)
    over = [
        Target(CHAIN, WETH, weight_percent=Decimal(60)),
        Target(CHAIN, USDC, weight_percent=Decimal("40.5")),
    ]
    with pytest.raises(PlanningError, match=r"sum to 100\.5%"):
        plan_trades(over, ASSETS, book(), 100)
    no_dai_pool = book()[:1]
    targets = [Target(CHAIN, WETH, amount=9 * E18), Target(CHAIN, DAI, amount=3_000 * E18)]
    with pytest.raises(
        PlanningError, match=r"target token DAI .*\(no pool on chain 31337 trades it against WETH"
    ):
        plan_trades(targets, ASSETS, no_dai_pool, 100)


def test_a_target_the_excess_cannot_fund_fails() -> None:
    targets = [Target(CHAIN, WETH, amount=10 * E18), Target(CHAIN, USDC, amount=1_000 * E6)]
    with pytest.raises(PlanningError, match=r"target token USDC .* 1000\.000000 USD of it stay unfunded"):
        plan_trades(targets, ASSETS, book(), 100)


def test_slippage_bounds_are_checked() -> None:
    with pytest.raises(PlanningError, match="max_slippage_bps"):
        plan_trades([Target(CHAIN, WETH, amount=0)], ASSETS, book(), 0)


def test_the_state_table() -> None:
    assert states.check(states.SUBMITTED, states.PLANNING) == states.PLANNING
    for current, target in [
        (states.PLANNING, states.EXECUTING),
        (states.PLANNING, states.COMPLETED),
        (states.EXECUTING, states.EXECUTING),
        (states.EXECUTING, states.COMPLETED),
        (states.EXECUTING, states.FAILED),
        (states.SUBMITTED, states.FAILED),
    ]:
        assert states.allowed(current, target)
    for current, target in [
        (states.SUBMITTED, states.EXECUTING),
        (states.SUBMITTED, states.COMPLETED),
        (states.COMPLETED, states.FAILED),
        (states.FAILED, states.EXECUTING),
        (states.EXECUTING, states.PLANNING),
    ]:
        with pytest.raises(states.IllegalTransition):
            states.check(current, target)


def test_a_trade_is_named_by_its_rebalance_and_index() -> None:
    assert trade_opportunity_id("r1", 0) == trade_opportunity_id("r1", 0)
    assert (
        len({trade_opportunity_id("r1", 0), trade_opportunity_id("r1", 1), trade_opportunity_id("r2", 0)})
        == 3
    )
    (trade,) = plan_trades(
        [Target(CHAIN, WETH, amount=9 * E18), Target(CHAIN, USDC, amount=3_000 * E6)], ASSETS, book(), 100
    )
    action = trade_action("r1", 0, trade)
    assert (action.amount_in, action.min_amount_out) == (str(E18), str(trade.min_amount_out))
    assert action.hops[0].pool == trade.pool and action.hops[0].token_out == USDC


def test_a_commands_targets_are_read_exactly_and_a_malformed_one_is_named() -> None:
    token = common_pb2.Token(chain_id=CHAIN, address=WETH.upper().replace("0X", "0x"))
    command = events_pb2.RebalanceCommand(
        targets=[
            common_pb2.RebalanceTarget(token=token, target_amount="123456789012345678901234567890"),
            common_pb2.RebalanceTarget(
                token=common_pb2.Token(chain_id=CHAIN, address=USDC),
                target_weight_percent=common_pb2.Decimal(value="33.333333333333333333"),
            ),
        ]
    )
    assert targets_of(command) == [
        Target(CHAIN, WETH, amount=123456789012345678901234567890),
        Target(CHAIN, USDC, weight_percent=Decimal("33.333333333333333333")),
    ]
    for bad in (
        common_pb2.RebalanceTarget(token=token, target_amount="-1"),
        common_pb2.RebalanceTarget(token=token, target_amount="1.5"),
        common_pb2.RebalanceTarget(token=token, target_weight_percent=common_pb2.Decimal(value="101")),
        common_pb2.RebalanceTarget(token=token),
    ):
        with pytest.raises(PlanningError, match=rf"targets\[0\] \({CHAIN}:{WETH}\) is malformed"):
            targets_of(events_pb2.RebalanceCommand(targets=[bad]))
    with pytest.raises(PlanningError, match="no targets"):
        targets_of(events_pb2.RebalanceCommand())
