"""``cross_chain``: one Router02 swap per leg, each on its own chain, paid from the wallet's
inventory there (domain/cross_chain.py). The simulation reads, per chain, the router allowance
and the wallet's balance of the leg's input: legs are sized to the inventory actually held, and
a leg whose allowance is short is preceded by an approval. Every leg is recorded in
``execution_legs`` and tracked on its own chain; the execution settles when the last leg does."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from mevaas_chain.client import RpcError
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
    TxIntent,
)
from mevaas_execution.executors.registry import register_executor


@register_executor
class CrossChainExecutor:
    kind: ClassVar[str] = "cross_chain"

    def plan(self, job: Job, chains: ChainConfigs) -> Plan:
        plans = cross_chain.plan_legs(job.opportunity.cross_chain, job.limits.max_slippage_bps)
        routers: dict[int, str] = {}
        for leg in plans:
            router = chains.config(leg.chain_id).dex(leg.dex).router
            if router is None:
                raise PlanError(f"DEX {leg.dex} on chain {leg.chain_id} has no router")
            routers[leg.index] = router
        reads = {
            leg.chain_id: [
                (
                    "eth_call",
                    [
                        {
                            "to": leg.token_in,
                            "data": "0x" + cross_chain.allowance_call(job.wallet, routers[leg.index]).hex(),
                        },
                        "latest",
                    ],
                ),
                ("eth_call", [cross_chain.balance_call(leg.token_in, job.wallet), "latest"]),
            ]
            for leg in plans
        }
        return Plan(
            chain_ids=tuple(leg.chain_id for leg in plans),
            reads=reads,
            calls_executor=False,
            detail=(plans, routers),
        )

    def assess(self, job: Job, plan: Plan, seen: Seen, chains: ChainConfigs) -> list[LegIntent]:
        plans, routers = plan.detail
        allowances: list[int] = []
        balances: list[int] = []
        for leg in plans:
            answers = seen.answers[leg.chain_id]
            if any(isinstance(answer, RpcError) or not isinstance(answer, str) for answer in answers):
                raise Refusal(
                    st.FAILED, f"RPC failed on chain {leg.chain_id}: {answers!r}", session_error=True
                )
            allowances.append(int(answers[0] or "0x0", 16))
            balances.append(int(answers[1] or "0x0", 16))
        try:
            sized = cross_chain.size_to_inventory(plans, balances)
        except PlanError as exc:
            raise Refusal(st.FAILED, f"inventory short: {exc}", session_error=True) from None
        intents = []
        for leg, allowance in zip(sized, allowances, strict=True):
            router = routers[leg.index]
            deadline = int(seen.heads[leg.chain_id]["timestamp"], 16) + cross_chain.ROUTER_DEADLINE_S
            swap = TxIntent(
                to=router, data=cross_chain.swap_calldata(leg, job.wallet, deadline), gas=cross_chain.SWAP_GAS
            )
            transactions: tuple[TxIntent, ...] = (swap,)
            if allowance < leg.amount_in:
                approve = TxIntent(
                    to=leg.token_in, data=cross_chain.approve_calldata(router), gas=cross_chain.APPROVE_GAS
                )
                transactions = (approve, swap)
            rate = cross_chain.leg_gas_rate(job.opportunity, leg, chains.config(leg.chain_id))
            intents.append(
                LegIntent(
                    index=leg.index, chain_id=leg.chain_id, transactions=transactions, detail=(leg, rate)
                )
            )
        return intents

    def record(self, job: Job, plan: Plan, legs: Sequence[SignedLeg]) -> Recorded:
        _plans, routers = plan.detail
        rows: list[dict[str, Any]] = []
        for leg in legs:
            sized, rate = leg.intent.detail
            approve = leg.signed[0] if len(leg.signed) == 2 else None
            swap = leg.signed[-1]
            rows.append(
                {
                    "tenant_id": job.tenant_id,
                    "execution_id": job.execution_id,
                    "opportunity_id": job.opportunity_id,
                    "leg_index": sized.index,
                    "chain_id": sized.chain_id,
                    "wallet_address": job.wallet,
                    "status": st.SIGNED,
                    "submission_mode": job.limits.submission_mode,
                    "router_address": routers[sized.index],
                    "token_in": sized.token_in,
                    "token_out": sized.token_out,
                    "amount_in": sized.amount_in,
                    "amount_out_min": sized.amount_out_min,
                    "approve_tx_hash": "0x" + approve.hash.hex() if approve else "",
                    "approve_raw_tx": approve.raw if approve else None,
                    "nonce": leg.nonces[-1],
                    "tx_hash": "0x" + swap.hash.hex(),
                    "raw_tx": swap.raw,
                    "target_block": leg.target_block,
                    "last_block": leg.last_block,
                    "attempts": 1,
                    "gas_rate_num": rate[0],
                    "gas_rate_den": rate[1],
                }
            )
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
        receipt = receipts[-1]
        success = int(receipt["status"], 16) == 1
        gas_used, gas_cost = cross_chain.gas_paid(receipts)
        return {
            "status": st.INCLUDED if success else st.REVERTED,
            "block_number": int(receipt["blockNumber"], 16),
            "amount_out": cross_chain.received(receipt, row["token_out"], row["wallet_address"])
            if success
            else 0,
            "gas_used": gas_used,
            "gas_cost": gas_cost,
            "error": "" if success else "swap reverted",
        }

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
