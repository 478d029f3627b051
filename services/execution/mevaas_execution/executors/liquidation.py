"""``liquidation``: an Aave V3 ``liquidationCall`` run by the tenant's executor contract in one
transaction, the debt repaid from the contract's inventory, an Aave flash loan or a Uniswap V2
flash swap (as the action's financing says), the seized collateral sold back into the debt asset
along the action's route so the profit is realised in that one token (liquidation_plan.py).

The simulation is an ``eth_call`` of that very transaction (plus, for inventory, the contract's
balance of the debt asset, so a short inventory is named as such). A position that is no longer
liquidatable when the simulation runs (repaid, topped up, liquidated by someone else) is dropped
with the reason and is not the session's error. Realised profit is the contract's ``Liquidated``
event (its debt-asset balance change, which the contract checked against the action's expected
profit less the tolerated slippage) minus gas."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from mevaas_chain import abi
from mevaas_chain.client import RpcError
from mevaas_chain.executor import decode_liquidated
from mevaas_execution.domain import planning
from mevaas_execution.domain import statuses as st
from mevaas_execution.executors.base import (
    ChainConfigs,
    Job,
    LegIntent,
    Plan,
    Recorded,
    Refusal,
    RowLike,
    Seen,
    SignedLeg,
    TxIntent,
    executor_call_recorded,
)
from mevaas_execution.executors.liquidation_plan import LiquidationPlan, explain_revert, plan_call
from mevaas_execution.executors.registry import register_executor


@register_executor
class LiquidationExecutor:
    kind: ClassVar[str] = "liquidation"

    def plan(self, job: Job, chains: ChainConfigs) -> Plan:
        opportunity = job.opportunity
        chain_id = opportunity.chain_id
        config = chains.config(chain_id)
        if job.executor_contract is None:
            raise planning.PlanError(f"wallet {job.wallet} has no executor on chain {chain_id}")
        planned = plan_call(opportunity, config, job.expected_gross_profit, job.limits)
        tx = TxIntent(to=job.executor_contract, data=planned.calldata, gas=planning.gas_limit(opportunity))
        call = {"from": job.wallet, "to": tx.to, "data": "0x" + tx.data.hex(), "gas": hex(tx.gas)}
        reads: list[tuple[str, list[Any]]] = [("eth_call", [call, "latest"])]
        if planned.financing == "inventory":
            balance = {"to": planned.call.debt, "data": "0x" + abi.balance_of(job.executor_contract).hex()}
            reads.append(("eth_call", [balance, "latest"]))
        return Plan(
            chain_ids=(chain_id,),
            reads={chain_id: reads},
            calls_executor=True,
            detail=(tx, planned, planning.gas_rate(opportunity, config)),
        )

    def assess(self, job: Job, plan: Plan, seen: Seen, chains: ChainConfigs) -> list[LegIntent]:
        (chain_id,) = plan.chain_ids
        tx, planned, _rate = plan.detail
        assert isinstance(planned, LiquidationPlan)
        simulation, *rest = seen.answers[chain_id]
        if rest:
            (held,) = rest
            if isinstance(held, RpcError) or not isinstance(held, str):
                raise Refusal(st.FAILED, f"RPC failed on chain {chain_id}: {held!r}", session_error=True)
            balance = abi.decode_uint(bytes.fromhex(held.removeprefix("0x")) or bytes(32))
            if balance < planned.call.debt_to_cover:
                raise Refusal(
                    st.FAILED,
                    f"inventory short: executor {tx.to} holds {balance} of {planned.call.debt}, the "
                    f"liquidation repays {planned.call.debt_to_cover} (deposit into it, or use flash financing)",
                    session_error=True,
                )
        if isinstance(simulation, RpcError):
            status, reason, theirs = explain_revert(simulation.data, planned.call.borrower)
            raise Refusal(status, reason, session_error=theirs)
        return [LegIntent(index=0, chain_id=chain_id, transactions=(tx,))]

    def record(self, job: Job, plan: Plan, legs: Sequence[SignedLeg]) -> Recorded:
        _tx, _planned, rate = plan.detail
        return executor_call_recorded(job, legs, rate)

    def book(self, row: RowLike, receipts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        (receipt,) = receipts
        rate = (int(row["gas_rate_num"]), int(row["gas_rate_den"]))
        gas_used = int(receipt["gasUsed"], 16)
        price = int(receipt.get("effectiveGasPrice") or "0x0", 16)
        gas_cost = gas_used * price
        booked: dict[str, Any] = {
            "block_number": int(receipt["blockNumber"], 16),
            "gas_used": gas_used,
            "effective_gas_price": price,
            "gas_cost": gas_cost,
        }
        gas_in_token = planning.in_profit_token(gas_cost, rate)
        if int(receipt["status"], 16) != 1:
            return {
                **booked,
                "status": st.REVERTED,
                "error": "liquidation reverted",
                "realized_gross_profit": 0,
                "realized_profit": -gas_in_token,
            }
        event = decode_liquidated(dict(receipt), row["executor_address"])
        if event is None:
            # A call to an address without the executor's code "succeeds" and only burns gas.
            return {
                **booked,
                "status": st.FAILED,
                "error": f"included without the executor's Liquidated event (is {row['executor_address']} "
                "an executor?)",
                "realized_gross_profit": 0,
                "realized_profit": -gas_in_token,
            }
        if event.profit < 0:
            # The collateral was kept (no swap): its value is not in the debt asset, so no single
            # figure is booked; the treasury sees the balances it moved.
            return {
                **booked,
                "status": st.INCLUDED,
                "error": f"collateral kept: repaid {event.debt_repaid} of {event.debt}, received "
                f"{event.collateral_received} of {event.collateral} (no realised profit in one token)",
            }
        return {
            **booked,
            "status": st.INCLUDED,
            "error": "",
            "realized_gross_profit": event.profit,
            "realized_profit": event.profit - gas_in_token,
        }
