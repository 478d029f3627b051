"""``backrun``: the winning bid of a protected transaction's order-flow auction, sent as one
bundle: the user's own signed transaction first, then the executor contract's ``backrun`` (a cycle
from its inventory on the state the user's transaction leaves), which pays the user its refund in
the same transaction.

The lot (`protection.auction.LOTS`) decides who is refunded and how much of the profit: the
transaction's sender and the auction's share, whatever the searcher wrote; when the cycle's token
is the wrapped native coin the contract also pays the user's gas (the lot's simulated gas used at
the block's own price, so it is exact), if the rest still clears the minimum. There is no
``eth_call`` of the backrun alone (it only pays on the post-user state); the relay never includes
a bundle with a reverting transaction, and the contract reverts unless it keeps its minimum.
Profit booked is what the contract kept (``Backrun`` event: profit minus refund) minus gas.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from mevaas.events.v1 import events_pb2
from mevaas_chain.executor import BackrunRefund, decode_backrun, encode_backrun
from mevaas_execution.domain import planning
from mevaas_execution.domain import statuses as st
from mevaas_execution.executors.base import (
    ChainConfigs,
    Job,
    LegIntent,
    Plan,
    Recorded,
    RowLike,
    Seen,
    SignedLeg,
    TxIntent,
    executor_call_recorded,
)
from mevaas_execution.executors.registry import register_executor
from mevaas_execution.protection.auction import LOTS, Lot


@register_executor
class BackrunExecutor:
    kind: ClassVar[str] = "backrun"

    def plan(self, job: Job, chains: ChainConfigs) -> Plan:
        opportunity = job.opportunity
        action: events_pb2.BackrunAction = opportunity.backrun
        chain_id = opportunity.chain_id
        lot = LOTS.get(action.target_tx_hash)
        if lot is None or lot.chain_id != chain_id:
            raise planning.PlanError(f"no open auction for transaction {action.target_tx_hash} here")
        if job.executor_contract is None:
            raise planning.PlanError(f"wallet {job.wallet} has no executor on chain {chain_id}")
        cycle = action.cycle
        if cycle.financing != events_pb2.FINANCING_INVENTORY:
            raise planning.PlanError("a backrun trades from the executor's inventory")
        try:
            amount_in = int(cycle.amount_in or 0)
        except ValueError:
            raise planning.PlanError("amount_in must be an integer") from None
        if amount_in <= 0 or not cycle.hops:
            raise planning.PlanError("amount_in must be positive")
        config = chains.config(chain_id)
        token_in = cycle.hops[0].token_in
        # Gasless only in the native coin's wrapped form: the contract pays the gas in wei.
        native = (config.wrapped_native or "").lower() == token_in.lower()
        refund = BackrunRefund(
            to=lot.sender,
            bps=lot.refund_bps,
            gas_used=lot.gas_used if native else 0,
            max_fee=lot.max_fee,
            tip=lot.tip,
        )
        # The searcher expects to keep its profit less the user's gas as estimated from the hint;
        # the gas may cost up to gas_used * max_fee, and the contract pays it only when it keeps
        # the minimum: the minimum leaves room for the worst case.
        try:
            estimate = int(action.gas_refund or 0)
        except ValueError:
            raise planning.PlanError("gas_refund must be an integer") from None
        slack = max(0, lot.gas_used * lot.max_fee - estimate) if native else 0
        min_profit = max(1, planning.min_profit_on_chain(job.expected_gross_profit, job.limits) - slack)
        data = encode_backrun(token_in, amount_in, planning.executor_hops(cycle.hops), min_profit, refund)
        tx = TxIntent(to=job.executor_contract, data=data, gas=planning.gas_limit(opportunity))
        return Plan(
            chain_ids=(chain_id,),
            reads={chain_id: []},
            calls_executor=True,
            detail=(tx, planning.gas_rate(opportunity, config), lot),
        )

    def assess(self, job: Job, plan: Plan, seen: Seen, chains: ChainConfigs) -> list[LegIntent]:
        (chain_id,) = plan.chain_ids
        tx, _rate, lot = plan.detail
        assert isinstance(lot, Lot)
        return [LegIntent(index=0, chain_id=chain_id, transactions=(tx,), before=(lot.raw,))]

    def record(self, job: Job, plan: Plan, legs: Sequence[SignedLeg]) -> Recorded:
        _tx, rate, _lot = plan.detail
        return executor_call_recorded(job, legs, rate)

    def book(self, row: RowLike, receipts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        (receipt,) = receipts
        rate = (int(row["gas_rate_num"]), int(row["gas_rate_den"]))
        outcome = planning.outcome_from_receipt(receipt, row["executor_address"], rate)
        event = decode_backrun(dict(receipt), row["executor_address"]) if outcome.success else None
        kept = event.profit - event.refund if event is not None else 0
        status, error = st.INCLUDED, ""
        if not outcome.success:
            status, error = st.REVERTED, "transaction reverted"
        elif event is None:
            status, error = (
                st.FAILED,
                f"included without the executor's Backrun event ({row['executor_address']})",
            )
        return {
            "status": status,
            "block_number": outcome.block_number,
            "gas_used": outcome.gas_used,
            "effective_gas_price": outcome.effective_gas_price,
            "gas_cost": outcome.gas_cost,
            "realized_gross_profit": kept,
            "realized_profit": kept - planning.in_profit_token(outcome.gas_cost, rate),
            "error": error,
        }
