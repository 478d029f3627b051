"""``rebalance_trade``: one trade of a portfolio rebalance, a Router02 swap along the trade's hops
sent from the tenant's wallet and paid from its inventory (domain/rebalance.py). The simulation
reads the router allowance and the wallet's balance of the input token: a wallet holding less
than the trade spends refuses it (FAILED, nothing sent); a short allowance is preceded by an
approval. The swap is recorded as the execution's one leg (approval and swap are two
transactions) and tracked like any leg; the execution settles when it is final."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from mevaas_chain.client import RpcError
from mevaas_execution.domain import cross_chain, planning, rebalance
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
class RebalanceTradeExecutor:
    kind: ClassVar[str] = "rebalance_trade"

    def plan(self, job: Job, chains: ChainConfigs) -> Plan:
        trade = rebalance.plan_trade(job.opportunity.chain_id, job.opportunity.rebalance_trade)
        router = chains.config(trade.chain_id).dex(trade.dex).router
        if router is None:
            raise PlanError(f"DEX {trade.dex} on chain {trade.chain_id} has no router")
        allowance = {
            "to": trade.token_in,
            "data": "0x" + cross_chain.allowance_call(job.wallet, router).hex(),
        }
        return Plan(
            chain_ids=(trade.chain_id,),
            reads={
                trade.chain_id: [
                    ("eth_call", [allowance, "latest"]),
                    ("eth_call", [cross_chain.balance_call(trade.token_in, job.wallet), "latest"]),
                ]
            },
            calls_executor=False,
            detail=(trade, router),
        )

    def assess(self, job: Job, plan: Plan, seen: Seen, chains: ChainConfigs) -> list[LegIntent]:
        trade, router = plan.detail
        answers = seen.answers[trade.chain_id]
        if any(isinstance(answer, RpcError) or not isinstance(answer, str) for answer in answers):
            raise Refusal(st.FAILED, f"RPC failed on chain {trade.chain_id}: {answers!r}")
        allowance, held = (int(answer or "0x0", 16) for answer in answers)
        try:
            rebalance.check_inventory(trade, held)
        except PlanError as exc:
            raise Refusal(st.FAILED, str(exc)) from None
        deadline = int(seen.heads[trade.chain_id]["timestamp"], 16) + cross_chain.ROUTER_DEADLINE_S
        swap = TxIntent(
            to=router, data=rebalance.swap_calldata(trade, job.wallet, deadline), gas=cross_chain.SWAP_GAS
        )
        transactions: tuple[TxIntent, ...] = (swap,)
        if allowance < trade.amount_in:
            approve = TxIntent(
                to=trade.token_in, data=cross_chain.approve_calldata(router), gas=cross_chain.APPROVE_GAS
            )
            transactions = (approve, swap)
        rate = planning.gas_rate(job.opportunity, chains.config(trade.chain_id))
        return [LegIntent(index=0, chain_id=trade.chain_id, transactions=transactions, detail=rate)]

    def record(self, job: Job, plan: Plan, legs: Sequence[SignedLeg]) -> Recorded:
        trade, router = plan.detail
        (leg,) = legs
        rate = leg.intent.detail
        approve = leg.signed[0] if len(leg.signed) == 2 else None
        swap = leg.signed[-1]
        row = {
            "tenant_id": job.tenant_id,
            "execution_id": job.execution_id,
            "opportunity_id": job.opportunity_id,
            "leg_index": 0,
            "chain_id": trade.chain_id,
            "wallet_address": job.wallet,
            "status": st.SIGNED,
            "submission_mode": job.limits.submission_mode,
            "router_address": router,
            "token_in": trade.token_in,
            "token_out": trade.token_out,
            "amount_in": trade.amount_in,
            "amount_out_min": trade.amount_out_min,
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
