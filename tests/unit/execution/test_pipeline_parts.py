"""Pure parts of the pipeline: the execution status state machine, the executor registry, the
executor-contract code check, readable executor reverts, legs sized to inventory, and a
swap-cycle receipt without the executor's Executed event (a call to a code-less address)."""

from __future__ import annotations

import pytest
from eth_abi.abi import encode

from mevaas.events.v1 import events_pb2
from mevaas_chain import abi
from mevaas_execution.contracts import RUNTIME_CODE, code_problem
from mevaas_execution.domain import cross_chain, planning, unwind
from mevaas_execution.domain import statuses as st
from mevaas_execution.executors import NoExecutor, executor_for, multi_leg_executor_for, registered_kinds

EXECUTOR = "0x" + "ee" * 20
TOKEN = "0x" + "11" * 20


def test_status_machine_allows_only_the_table() -> None:
    assert st.check(st.NEW, st.SIGNED) == st.SIGNED
    assert st.allowed(st.SIGNED, st.SUBMITTED) and st.allowed(st.SUBMITTED, st.INCLUDED)
    assert st.allowed(st.SIGNED, st.INCLUDED)  # found on chain after a crash before its send
    for final in st.FINAL:
        assert st.is_final(final)
        for target in (st.SIGNED, st.SUBMITTED, st.INCLUDED, st.FAILED):
            assert not st.allowed(final, target)
    with pytest.raises(st.IllegalTransition):
        st.check(st.INCLUDED, st.REVERTED)
    with pytest.raises(st.IllegalTransition):
        st.check(st.NEW, st.INCLUDED)  # nothing lands without being signed and recorded first


def test_executors_are_registered_by_oneof_field() -> None:
    kinds = registered_kinds()
    assert {"swap_cycle", "cross_chain", "liquidation", "backrun"} <= set(kinds)
    oneof = {f.name for f in events_pb2.Opportunity.DESCRIPTOR.oneofs_by_name["action"].fields}
    assert set(kinds) <= oneof
    assert executor_for("cross_chain") is multi_leg_executor_for("cross_chain")
    with pytest.raises(NoExecutor, match="no executor for action kind withdrawal"):
        executor_for("withdrawal")
    with pytest.raises(NoExecutor, match="records no legs"):
        multi_leg_executor_for("swap_cycle")


def test_code_problem_names_missing_and_foreign_executors() -> None:
    assert code_problem(EXECUTOR, 1, RUNTIME_CODE) is None
    assert code_problem(EXECUTOR, 1, RUNTIME_CODE.upper().replace("0X", "0x")) is None
    missing = code_problem(EXECUTOR, 7, "0x")
    assert missing is not None and EXECUTOR in missing and "no code" in missing and "chain 7" in missing
    foreign = code_problem(EXECUTOR, 7, "0x6080")
    assert foreign is not None and "foreign code" in foreign


def test_explain_revert_says_what_to_do() -> None:
    cycle = events_pb2.SwapCycleAction(
        financing=events_pb2.FINANCING_INVENTORY,
        amount_in="500",
        hops=[events_pb2.RouteHop(token_in=TOKEN, token_out=TOKEN)],
    )
    data = "0x" + abi.selector("TransferFailed()").hex()
    explained = planning.explain_revert(data, cycle, EXECUTOR)
    assert EXECUTOR in explained and "500" in explained and TOKEN in explained and "deposit" in explained
    profit = "0x" + abi.selector("InsufficientProfit(uint256,uint256)").hex() + "00" * 64
    assert planning.explain_revert(profit, cycle, EXECUTOR).startswith("InsufficientProfit")
    assert planning.explain_revert("0xdeadbeef", cycle, EXECUTOR) == ""


def leg(index: int, amount_in: int, amount_out_min: int) -> cross_chain.LegPlan:
    return cross_chain.LegPlan(
        index=index,
        chain_id=index + 1,
        dex="uni",
        token_in=TOKEN,
        token_out=TOKEN,
        amount_in=amount_in,
        amount_out_min=amount_out_min,
    )


def test_legs_are_sized_to_inventory() -> None:
    plans = [leg(0, 1000, 4000), leg(1, 4000, 1100)]
    assert cross_chain.size_to_inventory(plans, [5000, 9000]) == plans
    # Leg 1's chain holds half of what it needs: both legs halve, so they still chain.
    sized = cross_chain.size_to_inventory(plans, [5000, 2000])
    assert [(p.amount_in, p.amount_out_min) for p in sized] == [(500, 2000), (2000, 550)]
    with pytest.raises(planning.PlanError, match="leg 0 on chain 1: the wallet holds 0"):
        cross_chain.size_to_inventory(plans, [0, 9000])


def test_swap_cycle_without_executed_event_is_never_included() -> None:
    executor = executor_for("swap_cycle")
    row = {"gas_rate_num": 1, "gas_rate_den": 1, "executor_address": EXECUTOR}
    gas_only = {
        "status": "0x1",
        "blockNumber": "0xc",
        "gasUsed": hex(21_000),
        "effectiveGasPrice": "0x7",
        "logs": [],
    }
    booked = executor.book(row, [gas_only])
    assert booked["status"] == st.FAILED and EXECUTOR in booked["error"]
    assert booked["realized_profit"] == -21_000 * 7
    topic = abi.keccak_hex(b"Executed(address,uint256,uint256,bool)")
    data = encode(["uint256", "uint256", "bool"], [1000, 5000, True])
    landed = {
        **gas_only,
        "logs": [
            {"address": EXECUTOR, "topics": [topic, "0x" + "00" * 12 + TOKEN[2:]], "data": "0x" + data.hex()}
        ],
    }
    assert executor.book(row, [landed])["status"] == st.INCLUDED


def leg_row(
    index: int, status: str, amount_in: int, amount_out: int | None, **extra: object
) -> dict[str, object]:
    weth, usdc = ("0x" + "aa" * 20, "0x" + "bb" * 20)
    token_in, token_out = (weth, usdc) if index in (0, 101) else (usdc, weth)
    row: dict[str, object] = {
        "leg_index": index,
        "chain_id": 1 if index in (0, 100) else 2,
        "status": status,
        "router_address": "0x" + "cc" * 20,
        "token_in": token_in,
        "token_out": token_out,
        "amount_in": amount_in,
        "amount_out": amount_out,
        "amount_out_min": amount_out or 1,
        "gas_used": 100,
        "gas_cost": 1000,
        "gas_rate_num": 1,
        "gas_rate_den": 1,
        "block_number": 9,
        "error": "",
        "tx_hash": f"0x{index:064x}",
        "unwinds": None,
    }
    row.update(extra)
    return row


def test_a_leg_landed_alone_is_unwound_within_the_loss_bound() -> None:
    landed = leg_row(0, "included", 1000, 4000)
    reverted = leg_row(1, "reverted", 4000, 0, error="swap reverted")
    (plan,) = unwind.unwind_plans([landed, reverted], max_loss_bps=300)
    assert (plan.unwinds, plan.chain_id, plan.amount_in, plan.amount_out_min) == (0, 1, 4000, 970)
    assert (plan.token_in, plan.token_out) == (landed["token_out"], landed["token_in"])
    assert unwind.unwind_plans([landed, leg_row(1, "included", 4000, 1100)], 300) == []  # all landed
    assert unwind.unwind_plans([leg_row(0, "dropped", 1000, None), reverted], 300) == []  # none landed
    back = leg_row(
        100, "included", 4000, 985, unwinds=0, token_in=landed["token_out"], token_out=landed["token_in"]
    )
    assert unwind.unwind_plans([landed, reverted, back], 300) == []  # unwound already
    settled = unwind.settle_unwound([landed, reverted, back])
    # Chain deltas: -1000 + 985 of the profit token, USDC +4000 - 4000; gas of all three legs.
    assert settled.status == "failed" and settled.gross_profit == -15 and settled.realized_profit == -3015
    assert "leg 0 unwound on chain 1" in settled.error and "leg 1 on chain 2 reverted" in settled.error
    stuck = {**back, "status": "reverted", "amount_out": None, "error": "swap reverted"}
    left = unwind.settle_unwound([landed, reverted, stuck])
    assert "open position: leg 0's 4000 of" in left.error
    # The USDC still held is valued at the rate leg 0 traded at (1000 per 4000): not a loss.
    assert left.gross_profit == 0 and unwind.open_positions([landed, reverted, stuck]) == [stuck]


def test_an_unwind_that_cannot_be_sent_settles_as_an_open_position() -> None:
    landed = leg_row(0, "included", 1000, 4000)
    reverted = leg_row(1, "reverted", 4000, 0)
    (plan,) = unwind.unwind_plans([landed, reverted], max_loss_bps=300)
    unsent = unwind.unwind_unsent(plan, 100, "not sent: no head block")
    settled = unwind.settle_unwound([landed, reverted, unsent])
    assert "open position: leg 0's 4000 of" in settled.error and "not sent: no head block" in settled.error
    assert settled.realized_profit == -2000  # nothing lost but the two legs' gas; the USDC is valued
