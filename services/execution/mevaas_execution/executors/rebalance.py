"""``rebalance_trade``: one trade of a portfolio rebalance, a Router02 swap along the trade's hops
sent from the tenant's wallet and paid from its inventory (domain/rebalance.py). The simulation
reads the router allowance and the wallet's balance of the input token: a wallet holding less
than the trade spends refuses it (FAILED, nothing sent); a short allowance is preceded by an
approval. The swap is recorded as the execution's one leg (approval and swap are two
transactions) and tracked like any leg; the execution settles when it is final."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from mevaas_execution.domain import planning, rebalance
from mevaas_execution.domain import statuses as st
from mevaas_execution.domain.planning import PlanError
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
    book_inventory_swap,
    inventory_reads,
    inventory_seen,
    inventory_swap_leg,
    inventory_swap_transactions,
    router_deadline,
    swap_router,
)
from mevaas_execution.executors.registry import register_executor


@register_executor
class RebalanceTradeExecutor:
    kind: ClassVar[str] = "rebalance_trade"

    def plan(self, job: Job, chains: ChainConfigs) -> Plan:
        trade = rebalance.plan_trade(job.opportunity.chain_id, job.opportunity.rebalance_trade)
        router = swap_router(trade, chains)
        return Plan(
            chain_ids=(trade.chain_id,),
            reads={trade.chain_id: inventory_reads(trade, job.wallet, router)},
            calls_executor=False,
            detail=(trade, router),
        )

    def assess(self, job: Job, plan: Plan, seen: Seen, chains: ChainConfigs) -> list[LegIntent]:
        trade, router = plan.detail
        inventory = inventory_seen(seen, trade.chain_id, session_error=False)
        try:
            rebalance.check_inventory(trade, inventory.held)
        except PlanError as exc:
            raise Refusal(st.FAILED, str(exc)) from None
        calldata = rebalance.swap_calldata(trade, job.wallet, router_deadline(seen, trade.chain_id))
        transactions = inventory_swap_transactions(trade, router, inventory.allowance, calldata)
        rate = planning.gas_rate(job.opportunity, chains.config(trade.chain_id))
        return [LegIntent(index=0, chain_id=trade.chain_id, transactions=transactions, detail=rate)]

    def record(self, job: Job, plan: Plan, legs: Sequence[SignedLeg]) -> Recorded:
        trade, router = plan.detail
        (leg,) = legs
        rate = leg.intent.detail
        row = inventory_swap_leg(job, leg, 0, trade, router, rate)
        return Recorded(
            execution={
                "gas_rate_num": rate[0],
                "gas_rate_den": rate[1],
                "leg_tx_hashes": [row["tx_hash"]],
                "target_block": leg.target_block,
                "attempts": 1,
            },
            legs=[row],
        )

    def book(self, row: RowLike, receipts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return book_inventory_swap(row, receipts)

    def unwinds(self, legs: Sequence[RowLike], max_loss_bps: int) -> list[Any]:
        # One leg on one chain: nothing can land alone.
        return []

    def settle(self, legs: Sequence[RowLike]) -> dict[str, Any]:
        (leg,) = legs
        settled = rebalance.settle(dict(leg))
        return {
            "status": settled.status,
            "error": settled.error[:2000],
            "block_number": settled.block_number,
            "gas_used": settled.gas_used,
            "gas_cost": settled.gas_cost,
            "realized_gross_profit": settled.gross_profit,
            "realized_profit": settled.realized_profit,
        }
