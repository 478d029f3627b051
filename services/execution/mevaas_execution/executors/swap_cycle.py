"""``swap_cycle``: a cycle of pool swaps run by the tenant's executor contract in one
transaction, financed by a flash swap or by the inventory the contract holds. The simulation is
an ``eth_call`` of that very transaction; profit is the contract's ``Executed`` event minus gas."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from mevaas_chain.client import RpcError
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
from mevaas_execution.executors.registry import register_executor


@register_executor
class SwapCycleExecutor:
    kind: ClassVar[str] = "swap_cycle"

    def plan(self, job: Job, chains: ChainConfigs) -> Plan:
        opportunity = job.opportunity
        chain_id = opportunity.chain_id
        config = chains.config(chain_id)
        if job.executor_contract is None:
            raise planning.PlanError(f"wallet {job.wallet} has no executor on chain {chain_id}")
        min_profit = planning.min_profit_on_chain(job.expected_gross_profit, job.limits)
        data = planning.executor_calldata(opportunity.swap_cycle, config, min_profit)
        tx = TxIntent(to=job.executor_contract, data=data, gas=planning.gas_limit(opportunity))
        call = {"from": job.wallet, "to": tx.to, "data": "0x" + data.hex(), "gas": hex(tx.gas)}
        return Plan(
            chain_ids=(chain_id,),
            reads={chain_id: [("eth_call", [call, "latest"])]},
            calls_executor=True,
            detail=(tx, planning.gas_rate(opportunity, config)),
        )

    def assess(self, job: Job, plan: Plan, seen: Seen, chains: ChainConfigs) -> list[LegIntent]:
        (chain_id,) = plan.chain_ids
        (simulation,) = seen.answers[chain_id]
        if isinstance(simulation, RpcError):
            why = planning.explain_revert(simulation.data, job.opportunity.swap_cycle, plan.detail[0].to)
            error = f"simulation reverted: {simulation.message} {simulation.data or ''}".strip()
            raise Refusal(st.FAILED, f"{error} ({why})" if why else error, session_error=True)
        tx, _rate = plan.detail
        return [LegIntent(index=0, chain_id=chain_id, transactions=(tx,))]

    def record(self, job: Job, plan: Plan, legs: Sequence[SignedLeg]) -> Recorded:
        _tx, rate = plan.detail
        return executor_call_recorded(job, legs, rate)

    def book(self, row: RowLike, receipts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        (receipt,) = receipts
        rate = (int(row["gas_rate_num"]), int(row["gas_rate_den"]))
        outcome = planning.outcome_from_receipt(receipt, row["executor_address"], rate)
        status, error = st.INCLUDED, ""
        if not outcome.success:
            status, error = st.REVERTED, "transaction reverted"
        elif not outcome.executed:
            # A call to an address without the executor's code "succeeds" and only burns gas.
            status = st.FAILED
            error = (
                f"included without the executor's Executed event (is {row['executor_address']} an executor?)"
            )
        return {
            "status": status,
            "block_number": outcome.block_number,
            "gas_used": outcome.gas_used,
            "effective_gas_price": outcome.effective_gas_price,
            "gas_cost": outcome.gas_cost,
            "realized_gross_profit": outcome.gross_profit,
            "realized_profit": outcome.realized_profit,
            "error": error,
        }
