"""The rebalance_trade executor's pure parts: a trade's route turned into one Router02 path,
bad trades refused naming what is wrong, a wallet holding less than the trade spends refused,
and the execution settled from its one leg at minus its gas."""

from __future__ import annotations

import pytest
from eth_abi.abi import decode

from mevaas.events.v1 import events_pb2
from mevaas_execution.domain import rebalance
from mevaas_execution.domain.planning import PlanError
from mevaas_execution.executors import executor_for

WETH, USDC, DAI = ("0x" + c * 20 for c in ("22", "33", "44"))
WALLET = "0x" + "aa" * 20


def action(
    *hops: tuple[str, str], dex: str = "uni", amount_in: str = "100", min_out: str = "90"
) -> events_pb2.RebalanceTradeAction:
    return events_pb2.RebalanceTradeAction(
        rebalance_id="r1",
        trade_index=3,
        hops=[events_pb2.RouteHop(token_in=a, token_out=b, dex=dex) for a, b in hops],
        amount_in=amount_in,
        min_amount_out=min_out,
    )


def test_registered_under_its_oneof_field() -> None:
    assert type(executor_for("rebalance_trade")).__name__ == "RebalanceTradeExecutor"


def test_a_two_hop_route_is_one_router_path_with_the_trades_bounds() -> None:
    plan = rebalance.plan_trade(1, action((WETH, USDC), (USDC, DAI)))
    assert plan.path == (WETH, USDC, DAI) and (plan.amount_in, plan.amount_out_min) == (100, 90)
    data = rebalance.swap_calldata(plan, WALLET, 1234)
    amount_in, min_out, path, to, deadline = decode(
        ["uint256", "uint256", "address[]", "address", "uint256"], data[4:]
    )
    assert (amount_in, min_out, [p.lower() for p in path], to.lower(), deadline) == (
        100,
        90,
        [WETH, USDC, DAI],
        WALLET,
        1234,
    )


@pytest.mark.parametrize(
    ("trade", "message"),
    [
        (action(), "has no hops"),
        (action((WETH, USDC), (DAI, WETH)), "hop 1 does not spend what hop 0 yields"),
        (action((WETH, USDC), dex=""), "exactly one named DEX"),
        (action((WETH, USDC), amount_in="0"), "positive amount_in"),
        (action((WETH, USDC), min_out="x"), "malformed amounts"),
    ],
)
def test_bad_trades_are_refused_naming_why(trade: events_pb2.RebalanceTradeAction, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        rebalance.plan_trade(1, trade)


def test_a_hop_on_another_chain_is_refused() -> None:
    trade = action((WETH, USDC))
    trade.hops[0].chain_id = 2
    with pytest.raises(PlanError, match="on one chain"):
        rebalance.plan_trade(1, trade)


def test_a_wallet_short_of_the_input_refuses_the_trade_and_exactly_enough_passes() -> None:
    plan = rebalance.plan_trade(1, action((WETH, USDC)))
    rebalance.check_inventory(plan, 100)
    with pytest.raises(PlanError, match=f"holds 99 of {WETH} on chain 1, the trade needs 100"):
        rebalance.check_inventory(plan, 99)


def test_settled_from_its_leg_at_minus_its_gas() -> None:
    leg = {
        "status": "included",
        "error": "",
        "gas_cost": 7,
        "gas_rate_num": 3,
        "gas_rate_den": 2,
        "gas_used": 5,
        "block_number": 9,
    }
    settled = rebalance.settle(leg)
    assert (settled.status, settled.error, settled.realized_profit, settled.gas_cost) == (
        "included",
        "",
        -11,
        11,
    )
    reverted = rebalance.settle({**leg, "status": "reverted", "error": "swap reverted"})
    assert (reverted.status, reverted.error) == ("reverted", "trade reverted (swap reverted)")
