"""A protected transaction as the Protect RPC's ``mevaas_getTransactionStatus`` answers it."""

from __future__ import annotations

from typing import Any

import asyncpg

from mevaas_execution.protection.domain import relays
from mevaas_execution.protection.domain.revert import is_revert


def status_view(row: asyncpg.Record) -> dict[str, Any]:
    error = row["error"]
    return {
        "hash": row["tx_hash"],
        "status": row["status"].upper(),
        "sender": row["sender"],
        "nonce": hex(row["nonce"]),
        "maxBlockNumber": hex(row["max_block_number"]),
        "blockNumber": hex(row["block_number"]) if row["block_number"] else None,
        "attempts": row["attempts"],
        "lastTargetBlock": hex(row["last_target_block"]) if row["last_target_block"] else None,
        "reason": error or None,
        "revertReason": error.split(": ", 1)[1]
        if error.startswith("reverted") and is_revert(0, error)
        else None,
        "receivedAt": row["received_at"].isoformat(),
        "fast": row["fast"],
        # Fast mode: each relay's answer at the last attempt ({relay, accepted, targetBlock, reason}).
        "relays": relays.decode(row["relay_outcomes"]) if row["fast"] else None,
        "refund": {
            "backrunTxHash": row["backrun_tx_hash"],
            "backrunProfit": str(row["backrun_profit"]),
            "token": row["refund_token"],
            "amount": str(row["refund_amount"]),
            "gasRefund": str(row["gas_refund"]),
            "shareBps": row["refund_share_bps"],
        }
        if row["backrun_tx_hash"]
        else None,
        # The share of a backrun's profit it is refunded (its tenant's plan when accepted).
        "refundShareBps": row["refund_share_bps"],
        # Billed for it (mevaas_core.protection_fees), priced with the plan when it was accepted.
        "protectionFee": {
            "amount": str(row["protection_fee"] + row["fair_ordering_fee"]),
            "currency": row["fee_currency"],
            "protection": str(row["protection_fee"]),
            "fairOrdering": str(row["fair_ordering_fee"]),
            "plan": row["fee_plan"],
        }
        if row["fee_currency"]
        else None,
    }
