"""The relay's ``eth_callBundle``: a bundle simulated at the top of the next block without touching
the chain (``eth_simulateV1`` on the head's state, pinned by number)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_utils.crypto import keccak

from mevaas_chain.client import ChainClient, RpcError
from mevaas_chain.rawtx import DecodedTransaction, RawTransactionError, decode_signed


class BundleRejected(ValueError):
    pass


async def simulate_bundle(
    client: ChainClient, txs: Sequence[bytes], block_number: int | None = None
) -> dict[str, Any]:
    """Simulate ``txs`` in order at the top of the block after the head, without touching the
    chain: ``eth_simulateV1`` on the head's state, pinned by number. (Mining the bundle on a
    snapshot and rewinding showed every concurrent reader a block that then vanished, e.g.
    "BlockOutOfRangeError: block height is 9 but requested was 10", and rewound whatever
    anyone else wrote meanwhile.) What the node does not validate in a simulation is checked
    here first, each a clear refusal: decodable, nonces in order from the sender's next, the
    block not in the past, max fee not below the simulated block's base fee."""
    if not txs:
        raise BundleRejected("empty bundle")
    try:
        decoded = [decode_signed(t) for t in txs]
    except RawTransactionError as exc:
        raise BundleRejected(f"not a signed transaction: {exc}") from None
    head = await client.block_number()
    if block_number is not None and block_number <= head:
        raise BundleRejected(f"block {block_number} is in the past (head {head})")
    senders = list(dict.fromkeys(tx.sender for tx in decoded))
    counts = await client.batch([("eth_getTransactionCount", [s, hex(head)]) for s in senders])
    next_nonce: dict[str, int] = {}
    for sender, count in zip(senders, counts, strict=True):
        if isinstance(count, RpcError):
            raise count
        next_nonce[sender] = int(count, 16)
    for tx in decoded:
        if tx.nonce != next_nonce[tx.sender]:
            raise BundleRejected(
                f"transaction {tx.tx_hash} has nonce {tx.nonce}: {tx.sender}'s next is "
                f"{next_nonce[tx.sender]}"
            )
        next_nonce[tx.sender] += 1
    state = {
        "blockOverrides": {"number": hex(head + 1)},
        "calls": [_simulated_call(tx) for tx in decoded],
    }
    (block,) = await client.request(
        "eth_simulateV1", [{"blockStateCalls": [state], "validation": True}, hex(head)]
    )
    base_fee = int(block.get("baseFeePerGas") or "0x0", 16)
    results: list[dict[str, Any]] = []
    total_gas = 0
    hashes = ["0x" + keccak(t).hex() for t in txs]
    for h, tx, call in zip(hashes, decoded, block["calls"], strict=True):
        gas = int(call["gasUsed"], 16)
        entry: dict[str, Any] = {
            "txHash": h,
            "gasUsed": gas,
            "fromAddress": tx.sender,
            "toAddress": tx.to or None,
            "logs": len(call.get("logs", [])),
        }
        total_gas += gas
        if tx.max_fee_per_gas < base_fee:
            entry["error"] = f"max fee per gas {tx.max_fee_per_gas} is below the block's base fee {base_fee}"
        elif int(call["status"], 16) != 1:
            error = call.get("error") or {}
            entry["error"] = "execution reverted"
            entry["revert"] = str(error.get("message") or "execution reverted")
            if error.get("data"):
                entry["revertData"] = error["data"]
        results.append(entry)
    return {
        "bundleHash": "0x" + keccak(b"".join(keccak(t) for t in txs)).hex(),
        "results": results,
        "stateBlockNumber": head,
        "totalGasUsed": total_gas,
    }


def _simulated_call(tx: DecodedTransaction) -> dict[str, Any]:
    """A signed transaction as an ``eth_simulateV1`` call, with its nonce, gas and fees (the node
    validates the sender's funds for them; nonces are checked before)."""
    call: dict[str, Any] = tx.call_object() | {"nonce": hex(tx.nonce)}
    if tx.max_fee_per_gas == tx.max_priority_fee_per_gas:  # legacy / EIP-2930: one gas price
        call["gasPrice"] = hex(tx.max_fee_per_gas)
    else:
        call["maxFeePerGas"] = hex(tx.max_fee_per_gas)
        call["maxPriorityFeePerGas"] = hex(tx.max_priority_fee_per_gas)
    return call
