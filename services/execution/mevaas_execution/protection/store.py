"""SQL of protected transactions (clients' transactions sent as private bundles)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg

from mevaas_execution.protection.domain.statuses import IN_FLIGHT

Row = asyncpg.Record

PROTECTED_COLUMNS = (
    "protected_transaction_id, tenant_id, chain_id, tx_hash, sender, nonce, raw_tx, mode, status, "
    "max_block_number, block_number, error, received_at, submitted_at, included_at, attempts, "
    "last_target_block, source, backrun_tx_hash, backrun_profit, refund_token, refund_amount, gas_refund, "
    "protection_fee, fair_ordering_fee, fee_currency, fee_plan, refund_share_bps, fast, relay_outcomes"
)


async def insert_protected(conn: asyncpg.Connection, values: Mapping[str, Any]) -> Row | None:
    columns = ", ".join(values)
    placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    return await conn.fetchrow(
        f"INSERT INTO execution.protected_transactions ({columns}) VALUES ({placeholders}) "
        f"ON CONFLICT (tenant_id, tx_hash) DO NOTHING RETURNING {PROTECTED_COLUMNS}",
        *values.values(),
    )


async def get_protected(
    conn: asyncpg.Connection, tenant_id: str, *, protected_id: str = "", tx_hash: str = ""
) -> Row | None:
    return await conn.fetchrow(
        f"SELECT {PROTECTED_COLUMNS} FROM execution.protected_transactions WHERE tenant_id = $1 "
        "AND (($2 <> '' AND protected_transaction_id = $2) OR ($3 <> '' AND lower(tx_hash) = lower($3)))",
        tenant_id,
        protected_id,
        tx_hash,
    )


async def pending_protected(conn: asyncpg.Connection, chain_id: int) -> list[Row]:
    return await conn.fetch(
        f"SELECT {PROTECTED_COLUMNS} FROM execution.protected_transactions WHERE chain_id = $1 "
        "AND status = ANY($2::text[]) ORDER BY received_at, protected_transaction_id",
        chain_id,
        list(IN_FLIGHT),
    )


async def pending_nonce(conn: asyncpg.Connection, tenant_id: str, chain_id: int, sender: str) -> int | None:
    """The highest nonce of the sender's transactions still in flight here (None if none)."""
    value = await conn.fetchval(
        "SELECT max(nonce) FROM execution.protected_transactions WHERE tenant_id = $1 AND chain_id = $2 "
        "AND lower(sender) = lower($3) AND status = ANY($4::text[])",
        tenant_id,
        chain_id,
        sender,
        list(IN_FLIGHT),
    )
    return None if value is None else int(value)


async def update_protected(
    conn: asyncpg.Connection, protected_id: str, changes: Mapping[str, Any], *, from_statuses: tuple[str, ...]
) -> Row | None:
    """Apply ``changes`` if the row is still in one of ``from_statuses`` (two writers never book
    one transaction twice, and a late resend never overwrites a receipt)."""
    assignments = ", ".join(f"{column} = ${i}" for i, column in enumerate(changes, start=3))
    return await conn.fetchrow(
        f"UPDATE execution.protected_transactions SET {assignments} WHERE protected_transaction_id = $1 "
        f"AND status = ANY($2::text[]) RETURNING {PROTECTED_COLUMNS}",
        protected_id,
        list(from_statuses),
        *changes.values(),
    )


async def record_refund(
    conn: asyncpg.Connection, tx_hash: str, sender: str, refund: Mapping[str, Any]
) -> Row | None:
    """The backrun refund of the protected transaction ``tx_hash`` sent by ``sender`` (platform
    scope: the backrun is another tenant's execution), as it is now; None when there is none such."""
    return await conn.fetchrow(
        "UPDATE execution.protected_transactions SET backrun_tx_hash = $3, backrun_profit = $4, "
        "refund_token = $5, refund_amount = $6, gas_refund = $7 "
        "WHERE lower(tx_hash) = lower($1) AND lower(sender) = lower($2) "
        f"RETURNING {PROTECTED_COLUMNS}",
        tx_hash,
        sender,
        refund["backrun_tx_hash"],
        refund["backrun_profit"],
        refund["refund_token"],
        refund["refund_amount"],
        refund["gas_refund"],
    )


# The fair-ordering log (protection/ordering.py) --------------------------------------------------

ORDERING_COLUMNS = (
    "chain_id, sequence, tx_hash, received_at_unix_nanos, prev_hash, entry_hash, signature, key_id"
)


async def lock_ordering(conn: asyncpg.Connection, chain_id: int) -> None:
    """Serialises appends to one chain's log until the transaction ends (a hash chain has one
    writer at a time)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"mevaas:ordering:{chain_id}")


async def last_ordering_entry(conn: asyncpg.Connection, chain_id: int) -> Row | None:
    return await conn.fetchrow(
        f"SELECT {ORDERING_COLUMNS} FROM execution.ordering_log WHERE chain_id = $1 "
        "ORDER BY sequence DESC LIMIT 1",
        chain_id,
    )


async def ordering_entry_of(conn: asyncpg.Connection, chain_id: int, tx_hash: str) -> Row | None:
    return await conn.fetchrow(
        f"SELECT {ORDERING_COLUMNS} FROM execution.ordering_log WHERE chain_id = $1 AND tx_hash = lower($2)",
        chain_id,
        tx_hash,
    )


async def insert_ordering_entry(conn: asyncpg.Connection, values: Mapping[str, Any]) -> None:
    columns = ", ".join(values)
    placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    await conn.execute(
        f"INSERT INTO execution.ordering_log ({columns}) VALUES ({placeholders})", *values.values()
    )


async def ordering_entries(conn: asyncpg.Connection, chain_id: int, after: int, limit: int) -> list[Row]:
    return list(
        await conn.fetch(
            f"SELECT {ORDERING_COLUMNS} FROM execution.ordering_log WHERE chain_id = $1 AND sequence > $2 "
            "ORDER BY sequence LIMIT $3",
            chain_id,
            after,
            limit,
        )
    )


async def fair_in_flight(conn: asyncpg.Connection, chain_id: int, mode: int) -> list[Row]:
    """The chain's fair-ordering transactions in flight, in receipt order."""
    return list(
        await conn.fetch(
            f"SELECT p.{PROTECTED_COLUMNS.replace(', ', ', p.')}, o.sequence FROM execution.protected_transactions p "
            "JOIN execution.ordering_log o ON o.chain_id = p.chain_id AND o.tx_hash = lower(p.tx_hash) "
            "WHERE p.chain_id = $1 AND p.mode = $2 AND p.status = ANY($3::text[]) ORDER BY o.sequence",
            chain_id,
            mode,
            list(IN_FLIGHT),
        )
    )


# A page is a range of the index protected_by_tenant_received (V015), read in its order.
LIST_PROTECTED = (
    f"SELECT {PROTECTED_COLUMNS} FROM execution.protected_transactions WHERE tenant_id = $1 "
    "AND ($2::text IS NULL OR status = $2) AND ($3 = '' OR lower(sender) = lower($3)) "
    "AND ($4 = 0 OR chain_id = $4) "
    "AND ($5::timestamptz IS NULL OR received_at >= $5) AND ($6::timestamptz IS NULL OR received_at < $6) "
    "AND ($7::timestamptz IS NULL OR (received_at, protected_transaction_id) < ($7, $8)) "
    "ORDER BY received_at DESC, protected_transaction_id DESC LIMIT $9"
)


async def list_protected(
    conn: asyncpg.Connection,
    tenant_id: str,
    *,
    status: str | None,
    sender: str,
    chain_id: int,
    start: datetime | None,
    end: datetime | None,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[Row]:
    """Protected transactions newest received first, keyset-paged on (received_at, id)."""
    return await conn.fetch(
        LIST_PROTECTED,
        tenant_id,
        status,
        sender,
        chain_id,
        start,
        end,
        before[0] if before else None,
        before[1] if before else "",
        limit,
    )
