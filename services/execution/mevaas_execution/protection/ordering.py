"""Fair ordering: each FAIR_ORDERING transaction gets a signed, timestamped receipt with the next
sequence number of its chain, appended to the chain's hash-chained ordering log in the same
transaction that records it (so a recorded fair transaction always has its receipt and a receipt
never exists without its record). At every new head, the chain's fair transactions in flight are
sent as ONE bundle in receipt order; the relay keeps a bundle's order, so they land in it.

A fair transaction that cannot go in its turn (its simulation reverts now, or its nonce was taken)
loses its place: it expires with the reason instead of being held and landing later, after
transactions that arrived behind it (which would be a swap). Waiting for it would let one bad
transaction hold every other client's up for its whole window.

The log is published: each tenant's receipts on ``exec.<tenant>.ordering`` and the whole log of a
chain, with the public key, at ``GET /ordering/<chain id>`` (served by the Protect RPC's HTTP
server), which is what ``mevaas verify-ordering`` reads."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mevaas.execution.v1 import execution_pb2
from mevaas_chain.client import RpcError, TransientRpcError
from mevaas_core.db import platform_transaction
from mevaas_execution.chains import ChainGateway
from mevaas_execution.protection import store
from mevaas_execution.protection.domain.ordering import Entry, key_id, next_entry, public_key_hex
from mevaas_execution.protection.domain.statuses import sources
from mevaas_execution.protection.publishing import publish_protected

log = logging.getLogger(__name__)

FAIR = execution_pb2.PROTECTION_MODE_FAIR_ORDERING
PAST_RETARGETS = 3
MAX_PAGE = 1000


def signing_key(seed_hex: str) -> Ed25519PrivateKey:
    """The log's key from its 32-byte seed (hex); none configured: a fresh one for this process
    (fine for a devnet; entries it signed no longer verify once the process restarts with
    another, so production configures FAIR_ORDERING_SIGNING_KEY)."""
    if not seed_hex:
        log.warning("FAIR_ORDERING_SIGNING_KEY is not set: the ordering log is signed with an ephemeral key")
        return Ed25519PrivateKey.generate()
    seed = bytes.fromhex(seed_hex.removeprefix("0x"))
    if len(seed) != 32:
        raise ValueError("FAIR_ORDERING_SIGNING_KEY must be 32 bytes of hex (an Ed25519 seed)")
    return Ed25519PrivateKey.from_private_bytes(seed)


def entry_of(row: asyncpg.Record) -> Entry:
    return Entry(
        chain_id=row["chain_id"],
        sequence=row["sequence"],
        tx_hash=row["tx_hash"],
        received_at_unix_nanos=row["received_at_unix_nanos"],
        prev_hash=row["prev_hash"],
        entry_hash=row["entry_hash"],
        signature=row["signature"],
        key_id=row["key_id"],
    )


class OrderingLog:
    def __init__(self, pool: asyncpg.Pool, key: Ed25519PrivateKey) -> None:
        self.pool = pool
        self.key = key
        self.public_key = public_key_hex(key.public_key())
        self.key_id = key_id(key.public_key())

    async def lock(self, conn: asyncpg.Connection, chain_id: int) -> None:
        await store.lock_ordering(conn, chain_id)

    async def append(self, conn: asyncpg.Connection, chain_id: int, tx_hash: str) -> Entry:
        """The receipt of ``tx_hash``, appended inside the caller's transaction (the one recording
        the transaction). The same transaction sent again (by another tenant too) keeps its
        first receipt."""
        await store.lock_ordering(conn, chain_id)
        existing = await store.ordering_entry_of(conn, chain_id, tx_hash)
        if existing is not None:
            return entry_of(existing)
        last = await store.last_ordering_entry(conn, chain_id)
        entry = next_entry(
            None if last is None else entry_of(last), chain_id, tx_hash, time.time_ns(), self.key
        )
        await store.insert_ordering_entry(
            conn,
            {
                "chain_id": entry.chain_id,
                "sequence": entry.sequence,
                "tx_hash": entry.tx_hash,
                "received_at_unix_nanos": entry.received_at_unix_nanos,
                "prev_hash": entry.prev_hash,
                "entry_hash": entry.entry_hash,
                "signature": entry.signature,
                "key_id": entry.key_id,
            },
        )
        return entry

    async def receipt(self, conn: asyncpg.Connection, chain_id: int, tx_hash: str) -> Entry | None:
        row = await store.ordering_entry_of(conn, chain_id, tx_hash)
        return None if row is None else entry_of(row)

    async def page(self, chain_id: int, after: int, limit: int) -> dict[str, Any]:
        """A page of the chain's log as ``GET /ordering/<chain id>`` answers it."""
        limit = max(1, min(limit, MAX_PAGE))
        async with platform_transaction(self.pool, readonly=True) as conn:
            rows = await store.ordering_entries(conn, chain_id, after, limit)
        entries = [entry_of(row).view() for row in rows]
        return {
            "chainId": chain_id,
            "algorithm": "Ed25519",
            "publicKey": self.public_key,
            "keyId": self.key_id,
            "entries": entries,
            "next": entries[-1]["sequence"] if len(entries) == limit else None,
        }


class FairBundler:
    """Sends a chain's fair transactions in flight as one bundle, in receipt order."""

    def __init__(self, pool: asyncpg.Pool, gateway: ChainGateway) -> None:
        self.pool = pool
        self.gateway = gateway

    async def send(self, chain_id: int, nonces: Mapping[str, int], head: int) -> None:
        """``nonces``: the fair transactions that may go now (booked, simulated) by id, with
        their senders' next nonce on chain. The bundle targets the block after ``head``; a
        refusal "in the past" re-targets at once, any other refusal or an unreachable relay is
        retried at the next head (all of them together, in order). A transaction whose sender's
        earlier one lost its turn loses its turn too (the nonce gap would make the chain refuse
        the whole bundle)."""
        async with platform_transaction(self.pool, readonly=True) as conn:
            candidates = [
                r
                for r in await store.fair_in_flight(conn, chain_id, FAIR)
                if r["protected_transaction_id"] in nonces
            ]
        rows, gaps = [], []
        expected: dict[str, int] = {}
        for row in candidates:
            sender = row["sender"].lower()
            if row["nonce"] == expected.get(sender, nonces[row["protected_transaction_id"]]):
                rows.append(row)
                expected[sender] = row["nonce"] + 1
            else:
                gaps.append(row)
        if gaps:
            await self._lose_turn(gaps, head)
        if not rows:
            return
        last_block = min(row["max_block_number"] for row in rows)
        target = head + 1
        status: str | None = None
        error = ""
        for _ in range(PAST_RETARGETS + 1):
            if target > last_block:
                # The earliest window closes first; the head watcher expires it and the rest go on.
                error = f"no block left in the window of every fair transaction (last block {last_block})"
                break
            try:
                await self.gateway.send_bundle(chain_id, [bytes(row["raw_tx"]) for row in rows], target)
            except RpcError as exc:
                error = f"relay refused the fair-ordering bundle for block {target}: {exc.message}"
                if "in the past" not in exc.message:
                    break
                target = await self.gateway.chain(chain_id).rpc.block_number() + 1
                continue
            except (TransientRpcError, OSError, TimeoutError) as exc:
                error = f"relay unreachable for block {target}: {exc}"
                break
            status, error = "submitted", ""
            break
        now = datetime.now(UTC)
        async with platform_transaction(self.pool) as conn:
            for row in rows:
                changes: dict[str, Any] = {"attempts": row["attempts"] + 1, "error": error}
                if status is not None:
                    changes.update(status=status, last_target_block=target)
                    if row["submitted_at"] is None:
                        changes["submitted_at"] = now
                await store.update_protected(
                    conn, row["protected_transaction_id"], changes, from_statuses=sources(status)
                )

    async def _lose_turn(self, rows: Sequence[asyncpg.Record], head: int) -> None:
        async with platform_transaction(self.pool) as conn:
            for row in rows:
                reason = (
                    f"lost its fair-ordering turn at block {head + 1}: its sender's transaction "
                    f"before nonce {row['nonce']} is not in this bundle"
                )
                updated = await store.update_protected(
                    conn,
                    row["protected_transaction_id"],
                    {"status": "expired", "error": reason},
                    from_statuses=sources("expired"),
                )
                if updated is not None:
                    await publish_protected(conn, updated)
