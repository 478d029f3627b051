"""The liquidation executor's pure parts: an action checked and turned into the executor call
per financing, bad actions refused naming the field, a reverted simulation told apart (a
position gone is dropped and is nobody's error; an executor misuse is the tenant's), and a
receipt booked from the executor's Liquidated event."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi.abi import decode, encode
from eth_utils.crypto import keccak

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_chain import abi
from mevaas_chain.executor import LIQUIDATED_TOPIC
from mevaas_chain.registry import ChainConfig, DexConfig
from mevaas_execution.domain import statuses as st
from mevaas_execution.domain.planning import Limits, PlanError
from mevaas_execution.executors import executor_for
from mevaas_execution.executors.liquidation_plan import explain_revert, plan_call

POOL = "0x" + "a1" * 20
FACTORY = "0x" + "fa" * 20
PAIR = "0x" + "0b" * 20
WETH = "0x" + "22" * 20  # collateral (lower address: token0 of the pair)
USDC = "0x" + "33" * 20  # debt
BORROWER = "0x" + "44" * 20
EXECUTOR = "0x" + "ee" * 20
CHAIN = ChainConfig(
    chain_id=31337,
    name="anvil",
    rpc_url="http://127.0.0.1:1",
    wrapped_native=WETH,
    dexes=[DexConfig(name="uni", factory=FACTORY, init_code_hash="0x" + "00" * 32)],
    contracts={"aave_pool": POOL},
)
LIMITS = Limits(
    max_gas_price_wei=None,
    max_slippage_bps=100,
    min_profit=0,
    execution_delay_ms=0,
    retry_attempts=0,
    submission_mode=common_pb2.SUBMISSION_MODE_PRIVATE_BUNDLE,
)


def opportunity(financing: int = events_pb2.FINANCING_FLASH_LOAN, **overrides: Any) -> events_pb2.Opportunity:
    action = events_pb2.LiquidationAction(
        protocol="aave_v3",
        pool=POOL,
        borrower=BORROWER,
        collateral_asset=common_pb2.Token(chain_id=31337, address=WETH),
        debt_asset=common_pb2.Token(chain_id=31337, address=USDC),
        debt_to_cover="1000",
        expected_collateral="600",
        health_factor=str(9 * 10**17),
        financing=financing,  # type: ignore[arg-type]
        collateral_swap=[
            events_pb2.RouteHop(
                chain_id=31337, pool=PAIR, token_in=WETH, token_out=USDC, dex="uni", fee_bps=30
            )
        ],
    )
    for key, value in overrides.items():
        if key == "collateral_swap":
            del action.collateral_swap[:]
            action.collateral_swap.extend(value)
        else:
            setattr(action, key, value)
    return events_pb2.Opportunity(chain_id=31337, expected_profit="200", liquidation=action)


def _args(data: bytes, with_factory: bool = False) -> Any:
    kinds = ["(address,address,address,address,uint256,bool,(address,bool,uint16,uint8)[],uint256)"]
    return decode(["address", *kinds] if with_factory else kinds, data[4:])


def test_each_financing_calls_its_entry_point() -> None:
    for financing, signature in (
        (events_pb2.FINANCING_INVENTORY, "liquidate"),
        (events_pb2.FINANCING_FLASH_LOAN, "liquidateFlashLoan"),
    ):
        planned = plan_call(opportunity(financing), CHAIN, 200, LIMITS)
        sig = f"{signature}((address,address,address,address,uint256,bool,(address,bool,uint16,uint8)[],uint256))"
        assert planned.calldata[:4] == keccak(text=sig)[:4]
        (call,) = _args(planned.calldata)
        # 1000 debt, WETH sold for USDC (token0 -> token1), floor = 200 less 1% slippage.
        assert call[3].lower() == BORROWER and call[4] == 1000 and call[5] is False
        assert [(h[0].lower(), h[1], h[2], h[3]) for h in call[6]] == [(PAIR, True, 30, 0)] and call[7] == 198
    planned = plan_call(opportunity(events_pb2.FINANCING_FLASH_SWAP), CHAIN, 200, LIMITS)
    factory, _call = _args(planned.calldata, with_factory=True)
    assert factory.lower() == FACTORY and planned.financing == "flash_swap"
    # Kept collateral (aTokens): the floor is the expected collateral less the slippage.
    kept = plan_call(
        opportunity(events_pb2.FINANCING_INVENTORY, receive_a_token=True, collateral_swap=[]),
        CHAIN,
        -1000,
        LIMITS,
    )
    (call,) = _args(kept.calldata)
    assert kept.keeps_collateral and call[5] is True and call[6] == () and call[7] == 594


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"pool": "0x" + "99" * 20}, "is not chain 31337's Aave pool"),
        ({"financing": events_pb2.FINANCING_UNSPECIFIED}, "liquidation.financing"),
        ({"receive_a_token": True}, "receive_a_token"),
        ({"collateral_swap": []}, "needs a collateral_swap"),
        ({"debt_to_cover": "0"}, "liquidation.debt_to_cover must be positive"),
        ({"debt_to_cover": "1e3"}, "liquidation.debt_to_cover"),
        ({"borrower": "nobody"}, "liquidation.borrower"),
        (
            {"collateral_swap": [events_pb2.RouteHop(pool=PAIR, token_in=USDC, token_out=WETH)]},
            "collateral_swap[0] does not continue the route",
        ),
        (
            {"collateral_swap": [events_pb2.RouteHop(pool=PAIR, token_in=WETH, token_out="0x" + "55" * 20)]},
            "does not end in the debt asset",
        ),
    ],
)
def test_bad_actions_are_refused_naming_the_field(overrides: dict[str, Any], message: str) -> None:
    financing = overrides.pop("financing", events_pb2.FINANCING_FLASH_LOAN)
    with pytest.raises(PlanError, match=message.replace("[", r"\[").replace("]", r"\]")):
        plan_call(opportunity(financing, **overrides), CHAIN, 200, LIMITS)


def _error_string(text: str) -> str:
    return "0x08c379a0" + encode(["string"], [text]).hex()


def test_a_position_gone_is_dropped_and_not_the_tenants_error() -> None:
    status, reason, theirs = explain_revert(_error_string("45"), BORROWER)
    assert status == st.DROPPED and not theirs
    assert BORROWER in reason and "no longer liquidatable" in reason and "45" in reason
    status, reason, theirs = explain_revert(_error_string("47"), BORROWER)
    assert status == st.DROPPED and "no debt in this asset" in reason and not theirs
    profit = (
        "0x"
        + abi.selector("InsufficientProfit(uint256,uint256)").hex()
        + encode(["uint256"] * 2, [5, 9]).hex()
    )
    status, reason, theirs = explain_revert(profit, BORROWER)
    assert status == st.DROPPED and "5" in reason and "9" in reason and not theirs
    status, reason, theirs = explain_revert("0x" + abi.selector("NotOwner()").hex(), BORROWER)
    assert status == st.FAILED and "NotOwner" in reason and theirs
    status, reason, theirs = explain_revert(_error_string("27"), BORROWER)
    assert status == st.FAILED and "Aave error 27" in reason and theirs


def _receipt(status: int, logs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "status": hex(status),
        "blockNumber": "0x10",
        "gasUsed": hex(400_000),
        "effectiveGasPrice": hex(2),
        "logs": logs,
    }


def _liquidated(profit: int) -> dict[str, Any]:
    def topic(address: str) -> str:
        return "0x" + "00" * 12 + address[2:]

    return {
        "address": EXECUTOR,
        "topics": [LIQUIDATED_TOPIC, topic(BORROWER), topic(WETH), topic(USDC)],
        "data": "0x" + encode(["uint256", "uint256", "int256", "uint8"], [1000, 600, profit, 1]).hex(),
    }


def test_book_takes_the_profit_from_the_liquidated_event() -> None:
    executor = executor_for("liquidation")
    row = {"gas_rate_num": 3, "gas_rate_den": 2, "executor_address": EXECUTOR}
    booked = executor.book(row, [_receipt(1, [_liquidated(250)])])
    # Gas: 400k * 2 wei = 800k wei, at 3/2 profit-token units per wei = 1.2M.
    assert booked["status"] == st.INCLUDED and booked["realized_gross_profit"] == 250
    assert booked["realized_profit"] == 250 - 1_200_000 and booked["gas_cost"] == 800_000
    kept = executor.book(row, [_receipt(1, [_liquidated(-1000)])])
    assert (
        kept["status"] == st.INCLUDED and "realized_profit" not in kept and "collateral kept" in kept["error"]
    )
    reverted = executor.book(row, [_receipt(0, [])])
    assert reverted["status"] == st.REVERTED and reverted["realized_profit"] == -1_200_000
    silent = executor.book(row, [_receipt(1, [])])
    assert silent["status"] == st.FAILED and EXECUTOR in silent["error"]
