"""Unwinding cross-chain legs that landed alone: each reverse swap (domain/unwind.py) is signed
from the wallet on the leg's chain (after a router approval when the allowance is short),
recorded as one more leg of the execution, and sent; the tracker then follows it like any leg
and the execution settles once it is final (unwound, or an open position when it cannot land
within the loss bound)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from mevaas_chain.client import RpcError
from mevaas_chain.signer import SignedTransaction
from mevaas_execution.chains import ChainGateway, sign_call
from mevaas_execution.domain import cross_chain, planning
from mevaas_execution.domain import statuses as st
from mevaas_execution.domain.unwind import UnwindPlan, unwind_unsent
from mevaas_execution.recording import Recorder
from mevaas_execution.submission import Sent, Submitter
from mevaas_execution.wallets import WalletKeys

log = logging.getLogger("mevaas.execution.unwinding")

# Unwind legs are numbered after the trade's own legs: 100 + the index of the leg they reverse.
UNWIND_INDEX_BASE = 100


class Unwinder:
    def __init__(
        self,
        gateway: ChainGateway,
        keys: WalletKeys,
        recorder: Recorder,
        submitter: Submitter,
        *,
        max_loss_bps: int,
        window_blocks: int,
    ) -> None:
        self.gateway = gateway
        self.keys = keys
        self.recorder = recorder
        self.submitter = submitter
        self.max_loss_bps = max_loss_bps
        self.window_blocks = window_blocks

    async def unwind(self, plans: Sequence[UnwindPlan]) -> list[dict[str, Any]]:
        """Sign, record and send each unwind; the ones that could not even be recorded, as
        unsent unwind legs (the execution then settles at once, naming them open positions)."""
        unsent: list[dict[str, Any]] = []
        for plan in plans:
            try:
                await self._unwind_one(plan.leg, plan)
            except Exception as exc:
                log.warning(
                    "unwinding leg %d failed",
                    plan.unwinds,
                    exc_info=True,
                    extra={"tenant_id": plan.leg["tenant_id"]},
                )
                unsent.append(unwind_unsent(plan, UNWIND_INDEX_BASE + plan.unwinds, f"not sent: {exc}"))
        return unsent

    async def _unwind_one(self, leg: Mapping[str, Any], plan: UnwindPlan) -> None:
        chain_id, wallet = plan.chain_id, leg["wallet_address"]
        rpc = self.gateway.chain(chain_id).rpc
        allowance_call = {
            "to": plan.token_in,
            "data": "0x" + cross_chain.allowance_call(wallet, plan.router).hex(),
        }
        block, allowance = await rpc.batch(
            [("eth_getBlockByNumber", ["latest", False]), ("eth_call", [allowance_call, "latest"])]
        )
        if not isinstance(block, dict) or isinstance(allowance, RpcError):
            raise RpcError(-32603, f"no head block or allowance on chain {chain_id}")
        base_fee = planning.next_base_fee(block)
        max_fee = 2 * base_fee + planning.DEFAULT_PRIORITY_FEE_WEI
        priority = planning.DEFAULT_PRIORITY_FEE_WEI
        head = int(block["number"], 16)
        secret = await self.keys.key(leg["tenant_id"], wallet)
        swap_plan = cross_chain.LegPlan(
            index=UNWIND_INDEX_BASE + plan.unwinds,
            chain_id=chain_id,
            dex="",
            token_in=plan.token_in,
            token_out=plan.token_out,
            amount_in=plan.amount_in,
            amount_out_min=plan.amount_out_min,
        )
        deadline = int(block["timestamp"], 16) + cross_chain.ROUTER_DEADLINE_S
        nonces = self.gateway.nonces
        async with self.gateway.wallet_lock(chain_id, wallet):
            signed: list[SignedTransaction] = []
            reserved: list[int] = []
            calls = [
                (plan.router, cross_chain.swap_calldata(swap_plan, wallet, deadline), cross_chain.SWAP_GAS)
            ]
            if int(allowance or "0x0", 16) < plan.amount_in:
                calls.insert(
                    0, (plan.token_in, cross_chain.approve_calldata(plan.router), cross_chain.APPROVE_GAS)
                )
            for to, data, gas in calls:
                nonce = await nonces.reserve(chain_id, wallet)
                reserved.append(nonce)
                signed.append(
                    sign_call(
                        chain_id=chain_id,
                        nonce=nonce,
                        key=secret,
                        to=to,
                        data=data,
                        gas=gas,
                        max_fee=max_fee,
                        priority_fee=priority,
                    )
                )
            approve = signed[0] if len(signed) == 2 else None
            swap = signed[-1]
            row = {
                "tenant_id": leg["tenant_id"],
                "execution_id": leg["execution_id"],
                "opportunity_id": leg["opportunity_id"],
                "leg_index": swap_plan.index,
                "chain_id": chain_id,
                "wallet_address": wallet,
                "status": st.SIGNED,
                "submission_mode": leg["submission_mode"],
                "router_address": plan.router,
                "token_in": plan.token_in,
                "token_out": plan.token_out,
                "amount_in": plan.amount_in,
                "amount_out_min": plan.amount_out_min,
                "approve_tx_hash": "0x" + approve.hash.hex() if approve else "",
                "approve_raw_tx": approve.raw if approve else None,
                "nonce": reserved[-1],
                "tx_hash": "0x" + swap.hash.hex(),
                "raw_tx": swap.raw,
                "target_block": head + 1,
                "last_block": head + self.window_blocks,
                "attempts": 1,
                "gas_rate_num": leg["gas_rate_num"],
                "gas_rate_den": leg["gas_rate_den"],
                "unwinds": plan.unwinds,
            }
            if not await self.recorder.add_leg(row):
                for nonce in reversed(reserved):
                    await nonces.release(chain_id, wallet, nonce)
                return
            try:
                sent: Sent | None = await self.submitter.send(
                    chain_id, [tx.raw for tx in signed], leg["submission_mode"], head + 1, row["last_block"]
                )
            except Exception as exc:
                # Recorded as signed: the tracker resends it while its window lasts.
                log.info("unwind send refused: %s", exc, extra={"tenant_id": leg["tenant_id"]})
                sent = None
            for nonce in reversed(reserved):
                if sent is not None:
                    await nonces.confirm(chain_id, wallet, nonce)
                else:
                    await nonces.release(chain_id, wallet, nonce, maybe_sent=True)
        if sent is not None:
            await self.recorder.update_leg(row, {"status": st.SUBMITTED, "target_block": sent.target_block})
