"""``deleverage``: leverage protection's repay-with-collateral of the tenant's own Aave V3 position,
run by the wallet's executor contract in one transaction (``Executor.deleverage``: a flash loan of
the debt repays it on the account's behalf, the account's aTokens are pulled and withdrawn, the
collateral sold along the action's route repays the loan, and the contract reverts unless the
pool then reports at least the target health factor).

The account is the wallet itself (platform wallets); the wallet owns the action
(``owners.WalletOwnership``: no strategy session; the wallet's paused sessions stop it unless it is
an emergency). The simulation reads the aToken allowance the account gave its
executor: when it is short, an approval is sent first (the wallet's key is the platform's) and the
deleverage follows in the same leg, its outcome then checked by the contract on chain only; with
the allowance in place the deleverage itself is simulated and a revert refuses it with the reason.
One leg, settled at minus its gas in the debt asset (a deleverage costs, it earns nothing)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from eth_abi.abi import decode
from eth_utils.address import is_address, to_checksum_address

from mevaas.events.v1 import events_pb2
from mevaas_chain import abi
from mevaas_chain.client import RpcError
from mevaas_chain.executor import ExecutorDeleverage, decode_deleveraged, encode_deleverage
from mevaas_execution.domain import cross_chain, planning
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
from mevaas_execution.executors.liquidation_plan import explain_revert, swap_hops
from mevaas_execution.executors.registry import register_executor
from mevaas_execution.owners import WalletOwnership, register_ownership

_TOO_LOW = abi.selector("HealthFactorTooLow(uint256,uint256)")


def _int(text: str, field: str) -> int:
    try:
        value = int(text or "0")
    except ValueError:
        raise PlanError(f"deleverage.{field} {text!r} is not an integer") from None
    if value <= 0:
        raise PlanError(f"deleverage.{field} must be positive")
    return value


def _address(text: str, field: str) -> str:
    if not is_address(text):
        raise PlanError(f"deleverage.{field} {text!r} is not an address")
    return to_checksum_address(text)


def plan_call(job: Job, configured_pool: str | None) -> tuple[ExecutorDeleverage, str]:
    """The contract's call and the aToken to approve, checked against the wallet and the chain."""
    action = job.opportunity.deleverage
    pool = _address(action.pool, "pool")
    if configured_pool is None or configured_pool.lower() != pool.lower():
        raise PlanError(f"deleverage.pool {pool} is not the chain's Aave pool ({configured_pool})")
    account = _address(action.account, "account")
    if account.lower() != job.wallet.lower():
        raise PlanError(f"deleverage.account {account} is not the wallet {job.wallet}")
    # The route is checked like a liquidation's: from the collateral to the debt asset.
    as_liquidation = events_pb2.LiquidationAction(
        collateral_asset=action.collateral_asset,
        debt_asset=action.debt_asset,
        collateral_swap=action.collateral_swap,
    )
    call = ExecutorDeleverage(
        pool=pool,
        account=account,
        collateral=_address(action.collateral_asset.address, "collateral_asset"),
        debt=_address(action.debt_asset.address, "debt_asset"),
        repay=_int(action.repay_amount, "repay_amount"),
        collateral_amount=_int(action.collateral_amount, "collateral_amount"),
        swap=swap_hops(as_liquidation),
        min_health_factor=_int(action.target_health_factor, "target_health_factor"),
    )
    if (call.collateral == call.debt) != (not call.swap):
        raise PlanError("deleverage.collateral_swap must lead from the collateral to a different debt asset")
    return call, _address(action.collateral_a_token, "collateral_a_token")


def explain(data: object, account: str) -> tuple[str, str]:
    text = str(data or "").lower().removeprefix("0x")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if raw[:4] == _TOO_LOW:
        hf, floor = decode(["uint256", "uint256"], raw[4:68])
        return st.DROPPED, f"HealthFactorTooLow: the deleverage would leave {hf}, below the target {floor}"
    status, reason, _theirs = explain_revert(data, account)
    return status, reason.replace("liquidation", "deleverage")


@register_executor
class DeleverageExecutor:
    kind: ClassVar[str] = "deleverage"

    def plan(self, job: Job, chains: ChainConfigs) -> Plan:
        chain_id = job.opportunity.chain_id
        config = chains.config(chain_id)
        if job.executor_contract is None:
            raise PlanError(f"wallet {job.wallet} has no executor on chain {chain_id}")
        call, a_token = plan_call(job, config.contracts.get("aave_pool"))
        tx = TxIntent(
            to=job.executor_contract, data=encode_deleverage(call), gas=planning.gas_limit(job.opportunity)
        )
        allowance = {"to": a_token, "data": "0x" + cross_chain.allowance_call(job.wallet, tx.to).hex()}
        simulation = {"from": job.wallet, "to": tx.to, "data": "0x" + tx.data.hex(), "gas": hex(tx.gas)}
        return Plan(
            chain_ids=(chain_id,),
            reads={chain_id: [("eth_call", [allowance, "latest"]), ("eth_call", [simulation, "latest"])]},
            calls_executor=True,
            detail=(tx, call, a_token, planning.gas_rate(job.opportunity, config)),
        )

    def assess(self, job: Job, plan: Plan, seen: Seen, chains: ChainConfigs) -> list[LegIntent]:
        (chain_id,) = plan.chain_ids
        tx, call, a_token, rate = plan.detail
        allowance, simulation = seen.answers[chain_id]
        if isinstance(allowance, RpcError) or not isinstance(allowance, str):
            raise Refusal(st.FAILED, f"RPC failed on chain {chain_id}: {allowance!r}")
        transactions: tuple[TxIntent, ...] = (tx,)
        if int(allowance or "0x0", 16) < call.collateral_amount:
            approve = TxIntent(
                to=a_token, data=cross_chain.approve_calldata(tx.to), gas=cross_chain.APPROVE_GAS
            )
            transactions = (approve, tx)
        elif isinstance(simulation, RpcError):
            status, reason = explain(simulation.data, call.account)
            raise Refusal(status, reason)
        return [LegIntent(index=0, chain_id=chain_id, transactions=transactions, detail=rate)]

    def record(self, job: Job, plan: Plan, legs: Sequence[SignedLeg]) -> Recorded:
        _tx, call, _a_token, rate = plan.detail
        (leg,) = legs
        approve = leg.signed[0] if len(leg.signed) == 2 else None
        main = leg.signed[-1]
        row = {
            "tenant_id": job.tenant_id,
            "execution_id": job.execution_id,
            "opportunity_id": job.opportunity_id,
            "leg_index": 0,
            "chain_id": job.opportunity.chain_id,
            "wallet_address": job.wallet,
            "status": st.SIGNED,
            "submission_mode": job.limits.submission_mode,
            # The leg's contract and what it sells for what (collateral -> debt).
            "router_address": job.executor_contract,
            "token_in": call.collateral,
            "token_out": call.debt,
            "amount_in": call.collateral_amount,
            "amount_out_min": call.repay,
            "approve_tx_hash": "0x" + approve.hash.hex() if approve else "",
            "approve_raw_tx": approve.raw if approve else None,
            "nonce": leg.nonces[-1],
            "tx_hash": "0x" + main.hash.hex(),
            "raw_tx": main.raw,
            "target_block": leg.target_block,
            "last_block": leg.last_block,
            "attempts": 1,
            "gas_rate_num": rate[0],
            "gas_rate_den": rate[1],
        }
        return Recorded(
            execution={
                "executor_address": job.executor_contract,
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
        gas_used, gas_cost = cross_chain.gas_paid(receipts)
        booked = {"block_number": int(receipt["blockNumber"], 16), "gas_used": gas_used, "gas_cost": gas_cost}
        if int(receipt["status"], 16) != 1:
            return {**booked, "status": st.REVERTED, "amount_out": 0, "error": "deleverage reverted"}
        event = decode_deleveraged(dict(receipt), str(row["router_address"]))
        if event is None:
            return {
                **booked,
                "status": st.FAILED,
                "amount_out": 0,
                "error": f"included without the executor's Deleveraged event (is {row['router_address']} an executor?)",
            }
        return {
            **booked,
            "status": st.INCLUDED,
            "amount_out": event.repaid,
            "error": "",
        }

    def unwinds(self, legs: Sequence[RowLike], max_loss_bps: int) -> list[Any]:
        # One transaction on one chain: nothing can land alone.
        return []

    def settle(self, legs: Sequence[RowLike]) -> dict[str, Any]:
        (leg,) = legs
        gas = planning.in_profit_token(
            int(leg["gas_cost"]), (int(leg["gas_rate_num"]), int(leg["gas_rate_den"]))
        )
        status = str(leg["status"])
        return {
            "status": status,
            "error": str(leg["error"])[:2000],
            "block_number": int(leg["block_number"]),
            "gas_used": int(leg["gas_used"]),
            "gas_cost": int(leg["gas_cost"]),
            "realized_gross_profit": 0,
            "realized_profit": -gas,
        }


register_ownership(
    "deleverage",
    WalletOwnership(
        wallet=lambda opportunity: opportunity.deleverage.account,
        urgent=lambda opportunity: opportunity.deleverage.emergency,
    ),
)
