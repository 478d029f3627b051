"""``cross_chain``: one Router02 swap per leg, each on its own chain, paid from the wallet's
inventory there (domain/cross_chain.py). The simulation reads, per chain, the router allowance
and the wallet's balance of the leg's input: legs are sized to the inventory actually held, and
a leg whose allowance is short is preceded by an approval. Every leg is recorded in
``execution_legs`` and tracked on its own chain; the execution settles when the last leg does."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from mevaas_execution.domain import cross_chain, unwind
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
class CrossChainExecutor:
    kind: ClassVar[str] = "cross_chain"

    def plan(self, job: Job, chains: ChainConfigs) -> Plan:
        plans = cross_chain.plan_legs(job.opportunity.cross_chain, job.limits.max_slippage_bps)
        routers = {leg.index: swap_router(leg, chains) for leg in plans}
        reads = {leg.chain_id: inventory_reads(leg, job.wallet, routers[leg.index]) for leg in plans}
        return Plan(
            chain_ids=tuple(leg.chain_id for leg in plans),
            reads=reads,
            calls_executor=False,
            detail=(plans, routers),
        )

    def assess(self, job: Job, plan: Plan, seen: Seen, chains: ChainConfigs) -> list[LegIntent]:
        plans, routers = plan.detail
        inventories = [inventory_seen(seen, leg.chain_id, session_error=True) for leg in plans]
        try:
            sized = cross_chain.size_to_inventory(plans, [inventory.held for inventory in inventories])
        except PlanError as exc:
            raise Refusal(st.FAILED, f"inventory short: {exc}", session_error=True) from None
        intents = []
        for leg, inventory in zip(sized, inventories, strict=True):
            router = routers[leg.index]
            calldata = cross_chain.swap_calldata(leg, job.wallet, router_deadline(seen, leg.chain_id))
            rate = cross_chain.leg_gas_rate(job.opportunity, leg, chains.config(leg.chain_id))
            intents.append(
                LegIntent(
                    index=leg.index,
                    chain_id=leg.chain_id,
                    transactions=inventory_swap_transactions(leg, router, inventory.allowance, calldata),
                    detail=(leg, rate),
                )
            )
        return intents

    def record(self, job: Job, plan: Plan, legs: Sequence[SignedLeg]) -> Recorded:
        _plans, routers = plan.detail
        rows: list[dict[str, Any]] = []
        for leg in legs:
            sized, rate = leg.intent.detail
            rows.append(inventory_swap_leg(job, leg, sized.index, sized, routers[sized.index], rate))
        return Recorded(
            execution={
                "gas_rate_num": rows[0]["gas_rate_num"],
                "gas_rate_den": rows[0]["gas_rate_den"],
                "leg_tx_hashes": [row["tx_hash"] for row in rows],
                "target_block": legs[0].target_block,
                "attempts": 1,
            },
            legs=rows,
        )

    def book(self, row: RowLike, receipts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return book_inventory_swap(row, receipts)

    def unwinds(self, legs: Sequence[RowLike], max_loss_bps: int) -> list[unwind.UnwindPlan]:
        return unwind.unwind_plans([dict(leg) for leg in legs], max_loss_bps)

    def settle(self, legs: Sequence[RowLike]) -> dict[str, Any]:
        rows = [dict(leg) for leg in legs]
        unwound = any(row["unwinds"] is not None for row in rows)
        settled = unwind.settle_unwound(rows) if unwound else cross_chain.settle(rows)
        return {
            "status": settled.status,
            "error": settled.error[:2000],
            "block_number": settled.block_number,
            "gas_used": settled.gas_used,
            "gas_cost": settled.gas_cost,
            "realized_gross_profit": settled.gross_profit,
            "realized_profit": settled.realized_profit,
        }
