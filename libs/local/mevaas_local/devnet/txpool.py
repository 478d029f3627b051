"""How the relay shows the public transactions it holds for the next block: as a node shows pending
ones (``eth_pendingTransactions``, geth's ``txpool_content``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mevaas_chain.rawtx import RawTransactionError, decode_signed


def pending_json(raw: bytes) -> dict[str, Any] | None:
    """A held transaction as a node shows a pending one (no block fields)."""
    try:
        tx = decode_signed(raw)
    except RawTransactionError:
        return None
    return {
        "hash": tx.tx_hash,
        "from": tx.sender,
        "to": tx.to or None,
        "nonce": hex(tx.nonce),
        "value": hex(tx.value),
        "input": "0x" + tx.data.hex(),
        "gas": hex(tx.gas),
        "gasPrice": hex(tx.max_fee_per_gas),
    }


def txpool_content(txs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """geth's ``txpool_content`` shape: pending transactions by sender and nonce (none queued: the
    relay holds whatever it is sent, gaps included)."""
    pending: dict[str, dict[str, Any]] = {}
    for tx in txs:
        pending.setdefault(tx["from"], {})[str(int(tx["nonce"], 16))] = tx
    return {"pending": pending, "queued": {}}
