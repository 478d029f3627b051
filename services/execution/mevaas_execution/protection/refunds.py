"""Booking an order-flow auction's refund on the protected transaction it paid back.

A `ReceiptHook`: when a ``backrun`` execution is booked INCLUDED, its receipt's ``Backrun``
event says what the executor contract paid and to whom; the protected transaction is the one
right before it in the block (a backrun is bundled adjacent to its target). The refund is written
on that transaction's row (status by hash, GetProtectedTransaction) only if its sender is the one
the contract paid. The share it was paid at is the one recorded on the transaction when it was
accepted (its tenant's plan's: the lot the executor paid with carried it); a refund the contract
computed at another share is logged as an error (it cannot happen unless the lot was not ours).
"""

from __future__ import annotations

import logging

import asyncpg

from mevaas_chain.executor import decode_backrun
from mevaas_core.db import platform_transaction
from mevaas_execution.chains import ChainGateway
from mevaas_execution.domain import statuses as st
from mevaas_execution.hooks import BookedReceipt
from mevaas_execution.protection import store
from mevaas_execution.protection.publishing import publish_protected

log = logging.getLogger(__name__)
BPS = 10_000


class RefundHook:
    def __init__(self, pool: asyncpg.Pool, gateway: ChainGateway) -> None:
        self.pool = pool
        self.gateway = gateway

    async def after_receipt(self, booked: BookedReceipt) -> None:
        if booked.action_kind != "backrun" or booked.status != st.INCLUDED or len(booked.tx_hashes) != 1:
            return
        (receipt,) = await self.gateway.receipts(booked.chain_id, list(booked.tx_hashes))
        if receipt is None:
            return
        event = decode_backrun(receipt, booked.executor_address)
        index = int(receipt["transactionIndex"], 16)
        if event is None or index == 0:
            return
        block = await self.gateway.chain(booked.chain_id).rpc.get_block(int(receipt["blockNumber"], 16))
        if block is None:
            return
        target = str(block["transactions"][index - 1])
        async with platform_transaction(self.pool) as conn:
            refunded = await store.record_refund(
                conn,
                target,
                event.refund_to,
                {
                    "backrun_tx_hash": booked.tx_hashes[0],
                    "backrun_profit": event.profit,
                    "refund_token": event.token,
                    "refund_amount": event.refund,
                    "gas_refund": event.gas_refund,
                },
            )
            if refunded is None:
                return
            share = refunded["refund_share_bps"]
            if share is None or event.refund - event.gas_refund != event.profit * share // BPS:
                log.error(
                    "backrun %s refunded %s of profit %s (gas %s) to %s, not its recorded share %s bps",
                    booked.tx_hashes[0],
                    event.refund,
                    event.profit,
                    event.gas_refund,
                    target,
                    share,
                )
            await publish_protected(conn, refunded, refunded=True)  # analytics shows it on the invoice
