"""Pure parts of cross-chain execution: legs planned from the opportunity (chaining, slippage
floor), the router calldata, what a receipt paid the wallet, per-chain gas rates, and the
settlement of an execution from its legs (included only when every leg landed)."""

from __future__ import annotations

from typing import Any

import pytest

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_chain import abi
from mevaas_chain.registry import ChainConfig
from mevaas_execution.domain import cross_chain
from mevaas_execution.domain.planning import PlanError

WETH_A = "0x" + "11" * 20
USDC_A = "0x" + "22" * 20
WETH_B = "0x" + "33" * 20
USDC_B = "0x" + "44" * 20
WALLET = "0x" + "77" * 20
ROUTER = "0x" + "88" * 20
CHAIN_B = ChainConfig(chain_id=2, name="b", rpc_url="http://127.0.0.1:1", wrapped_native=WETH_B)


def opportunity(**overrides: Any) -> events_pb2.Opportunity:
    opp = events_pb2.Opportunity(
        opportunity_id="o1",
        chain_id=1,
        chain_ids=[1, 2],
        expected_profit="100",
        expected_profit_net_of_gas="90",
        gas_estimate=10,
        gas_price="1",
        profit_token=common_pb2.Token(chain_id=1, address=WETH_A),
        cross_chain=events_pb2.CrossChainAction(legs=[
            events_pb2.CrossChainLeg(chain_id=1, amount_in="1000", hops=[events_pb2.RouteHop(
                chain_id=1, pool="0x" + "aa" * 20, dex="uni", token_in=WETH_A, token_out=USDC_A,
                amount_in="1000", amount_out="5000", fee_bps=30,
            )]),
            events_pb2.CrossChainLeg(chain_id=2, amount_in="5000", hops=[events_pb2.RouteHop(
                chain_id=2, pool="0x" + "bb" * 20, dex="uni", token_in=USDC_B, token_out=WETH_B,
                amount_in="5000", amount_out="1100", fee_bps=30,
            )]),
        ]),
    )  # fmt: skip
    for name, value in overrides.items():
        setattr(opp, name, value)
    return opp


def test_legs_chain_and_carry_the_slippage_floor() -> None:
    buy, sell = cross_chain.plan_legs(opportunity().cross_chain, max_slippage_bps=100)
    assert (buy.chain_id, buy.token_in, buy.token_out, buy.amount_in) == (1, WETH_A, USDC_A, 1000)
    assert buy.amount_out_min == 4950
    assert (sell.chain_id, sell.amount_in, sell.amount_out_min) == (2, 5000, 1089)


def test_legs_that_do_not_chain_are_refused() -> None:
    action = opportunity().cross_chain
    action.legs[1].amount_in = action.legs[1].hops[0].amount_in = "4999"
    with pytest.raises(PlanError, match="does not spend what leg 0 yields"):
        cross_chain.plan_legs(action, 0)
    action = opportunity().cross_chain
    action.legs[1].chain_id = action.legs[1].hops[0].chain_id = 1
    with pytest.raises(PlanError, match="one leg per chain"):
        cross_chain.plan_legs(action, 0)
    action = opportunity().cross_chain
    action.legs[0].amount_in = "999"
    with pytest.raises(PlanError, match="its hop does not spend the leg's input"):
        cross_chain.plan_legs(action, 0)
    action = opportunity().cross_chain
    action.legs[0].hops.add().CopyFrom(action.legs[0].hops[0])
    with pytest.raises(PlanError, match="leg 0 has 2 hops"):
        cross_chain.plan_legs(action, 0)


def test_swap_calldata_is_the_router_call() -> None:
    buy, _ = cross_chain.plan_legs(opportunity().cross_chain, 0)
    data = cross_chain.swap_calldata(buy, WALLET, 123)
    assert data[:4] == abi.selector(cross_chain.SWAP_EXACT_TOKENS)
    amount_in, minimum, path, to, deadline = abi.decode_result(
        ["uint256", "uint256", "address[]", "address", "uint256"], data[4:]
    )
    assert (amount_in, minimum, [p.lower() for p in path], to.lower(), deadline) == (
        1000,
        5000,
        [WETH_A, USDC_A],
        WALLET,
        123,
    )


def transfer(token: str, to: str, value: int) -> dict[str, Any]:
    return {
        "address": token,
        "topics": [cross_chain.TRANSFER_TOPIC, "0x" + "00" * 32, "0x" + to[2:].rjust(64, "0")],
        "data": hex(value),
    }


def test_received_counts_only_the_wallets_transfers_of_the_token() -> None:
    receipt = {
        "logs": [
            transfer(WETH_B, WALLET, 1100),
            transfer(WETH_B, ROUTER, 5),
            transfer(USDC_B, WALLET, 7),
        ]
    }
    assert cross_chain.received(receipt, WETH_B, WALLET) == 1100


def test_gas_rate_is_one_to_one_on_the_wrapped_native_side() -> None:
    opp = opportunity()
    _, sell = cross_chain.plan_legs(opp.cross_chain, 0)
    assert cross_chain.leg_gas_rate(opp, sell, CHAIN_B) == (1, 1)
    other = CHAIN_B.model_copy(update={"wrapped_native": "0x" + "99" * 20})
    # Not the native token: the rate the opportunity implies, (gross - net) / (gas * price).
    assert cross_chain.leg_gas_rate(opp, sell, other) == (10, 10)


def leg(index: int, status: str, **values: Any) -> dict[str, Any]:
    return {
        "leg_index": index,
        "chain_id": index + 1,
        "status": status,
        "amount_in": 1000 if index == 0 else 5000,
        "amount_out": values.get("amount_out"),
        "gas_used": 100,
        "gas_cost": values.get("gas_cost", 3),
        "gas_rate_num": 1,
        "gas_rate_den": 1,
        "block_number": 10 + index,
        "error": values.get("error", ""),
    }


def test_settled_included_when_both_legs_landed() -> None:
    settled = cross_chain.settle([leg(0, "included", amount_out=5000), leg(1, "included", amount_out=1100)])
    assert (settled.status, settled.error) == ("included", "")
    assert (settled.gross_profit, settled.gas_cost, settled.realized_profit) == (100, 6, 94)
    assert (settled.gas_used, settled.block_number) == (200, 11)


def test_a_leg_landing_alone_is_a_failure_naming_the_stranded_leg() -> None:
    settled = cross_chain.settle(
        [leg(0, "included", amount_out=5000), leg(1, "reverted", amount_out=0, error="swap reverted")]
    )
    assert settled.status == "failed"
    assert "leg 1 on chain 2 reverted (swap reverted)" in settled.error
    assert "leg 0 on chain 1 landed alone" in settled.error
    assert settled.realized_profit == -1000 - 6


def test_no_leg_landed() -> None:
    assert cross_chain.settle([leg(0, "dropped"), leg(1, "dropped")]).status == "dropped"
    assert cross_chain.settle([leg(0, "reverted"), leg(1, "reverted")]).status == "reverted"
    assert cross_chain.settle([leg(0, "reverted"), leg(1, "dropped")]).status == "failed"
