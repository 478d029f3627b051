"""The treasury's SQL. Every function takes a connection inside a tenant- (or platform-) scoped
transaction, so row-level security applies to each statement."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from mevaas_execution.treasury.domain.ledger import HolderKind, Holding, Movement, Reconciliation

HOLDING_COLUMNS = (
    "tenant_id, chain_id, holder_address, holder_kind, wallet_address, token, opened_block, chain_amount, "
    "ledger_amount, read_block, status, read_at"
)


def holding_of(row: asyncpg.Record) -> Holding:
    return Holding(
        row["chain_id"],
        row["holder_address"],
        HolderKind(row["holder_kind"]),
        row["wallet_address"],
        row["token"],
    )


async def lock_wallet(conn: asyncpg.Connection, tenant_id: str, chain_id: int, wallet: str) -> None:
    """Books of one wallet's holdings are written one receipt at a time, across replicas too."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"treasury:{tenant_id}:{chain_id}:{wallet}"
    )


async def holdings(
    conn: asyncpg.Connection, tenant_id: str, *, chain_id: int = 0, wallet: str = ""
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"SELECT {HOLDING_COLUMNS} FROM execution.treasury_holdings WHERE tenant_id = $1 "
            "AND ($2 = 0 OR chain_id = $2) AND ($3 = '' OR wallet_address = $3) "
            "ORDER BY chain_id, wallet_address, holder_kind DESC, holder_address, token",
            tenant_id,
            chain_id,
            wallet,
        )
    )


async def insert_movements(conn: asyncpg.Connection, tenant_id: str, movements: Sequence[Movement]) -> None:
    """Each movement once: a block's delta already booked by another receipt of the block stays."""
    await conn.executemany(
        "INSERT INTO execution.treasury_ledger (tenant_id, chain_id, holder_address, holder_kind, "
        "wallet_address, token, kind, amount, reference, block_number) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
        [
            (
                tenant_id,
                m.holding.chain_id,
                m.holding.holder_address,
                m.holding.holder_kind.value,
                m.holding.wallet_address,
                m.holding.token,
                m.kind.value,
                m.amount,
                m.reference,
                m.block_number,
            )
            for m in movements
        ],
    )


async def ledger_sums(
    conn: asyncpg.Connection, tenant_id: str, chain_id: int, holders: Sequence[str]
) -> dict[tuple[str, str], tuple[int, int]]:
    """(holder, token) -> (ledger amount, opening block) of every booked holding of ``holders``."""
    rows = await conn.fetch(
        "SELECT holder_address, token, sum(amount) AS amount, "
        "min(block_number) FILTER (WHERE kind = 'opening') AS opened "
        "FROM execution.treasury_ledger WHERE tenant_id = $1 AND chain_id = $2 "
        "AND holder_address = ANY($3::text[]) GROUP BY holder_address, token",
        tenant_id,
        chain_id,
        list(holders),
    )
    return {(r["holder_address"], r["token"]): (int(r["amount"]), int(r["opened"] or 0)) for r in rows}


async def upsert_holding(
    conn: asyncpg.Connection,
    tenant_id: str,
    holding: Holding,
    *,
    opened_block: int,
    chain_amount: int,
    ledger_amount: int,
    read_block: int,
    status: Reconciliation,
) -> Reconciliation | None:
    """Record the holding's reading; returns its previous status (None when it is new). A reading
    older than the one recorded is ignored (an out-of-order receipt), returning the current status."""
    previous: str | None = await conn.fetchval(
        "SELECT status FROM execution.treasury_holdings WHERE tenant_id = $1 AND chain_id = $2 "
        "AND holder_address = $3 AND token = $4 FOR UPDATE",
        tenant_id,
        holding.chain_id,
        holding.holder_address,
        holding.token,
    )
    await conn.execute(
        "INSERT INTO execution.treasury_holdings (tenant_id, chain_id, holder_address, holder_kind, "
        "wallet_address, token, opened_block, chain_amount, ledger_amount, read_block, status) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
        "ON CONFLICT (tenant_id, chain_id, holder_address, token) DO UPDATE SET "
        "chain_amount = excluded.chain_amount, ledger_amount = excluded.ledger_amount, "
        "read_block = excluded.read_block, status = excluded.status, read_at = now() "
        "WHERE treasury_holdings.read_block <= excluded.read_block",
        tenant_id,
        holding.chain_id,
        holding.holder_address,
        holding.holder_kind.value,
        holding.wallet_address,
        holding.token,
        opened_block,
        chain_amount,
        ledger_amount,
        read_block,
        status.value,
    )
    return Reconciliation(previous) if previous is not None else None


async def ledger(
    conn: asyncpg.Connection, tenant_id: str, chain_id: int, holder: str
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT movement_id, chain_id, holder_address, holder_kind, wallet_address, token, kind, amount, "
            "reference, block_number, recorded_at FROM execution.treasury_ledger "
            "WHERE tenant_id = $1 AND chain_id = $2 AND holder_address = $3 ORDER BY block_number, movement_id",
            tenant_id,
            chain_id,
            holder,
        )
    )


async def tenants_wallets(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every (tenant, wallet, chain, executor) (platform scope: the periodic reconciliation)."""
    return list(
        await conn.fetch(
            "SELECT tenant_id, wallet_address, chain_id, address FROM execution.executors "
            "ORDER BY tenant_id, wallet_address, chain_id"
        )
    )


async def wallet_executors(
    conn: asyncpg.Connection, tenant_id: str, wallet: str = ""
) -> list[asyncpg.Record]:
    """Every wallet of the tenant (or ``wallet``) with its executor per chain: one row per executor,
    or one row with chain_id and address NULL for a wallet without any."""
    return list(
        await conn.fetch(
            "SELECT w.address AS wallet_address, e.chain_id, e.address, e.created_at "
            "FROM execution.wallets w LEFT JOIN execution.executors e "
            "ON e.tenant_id = w.tenant_id AND e.wallet_address = w.address "
            "WHERE w.tenant_id = $1 AND ($2 = '' OR lower(w.address) = lower($2)) "
            "ORDER BY w.address, e.chain_id",
            tenant_id,
            wallet,
        )
    )


async def drift_counts(conn: asyncpg.Connection) -> dict[tuple[int, str], int]:
    """(chain, holder kind) -> holdings drifting now, over every tenant (platform scope)."""
    rows = await conn.fetch(
        "SELECT chain_id, holder_kind, count(*) FILTER (WHERE status = 'drift') AS n "
        "FROM execution.treasury_holdings GROUP BY chain_id, holder_kind"
    )
    return {(r["chain_id"], r["holder_kind"]): int(r["n"]) for r in rows}


# ------------------------------------------------------------------------------------ transfers

TRANSFER_COLUMNS = (
    "transfer_id, tenant_id, idempotency_key, kind, chain_id, wallet_address, executor_address, token, "
    "to_address, amount, tx_hash, raw_tx, status, block_number, gas_cost, error, created_at, finalized_at"
)


async def get_transfer(
    conn: asyncpg.Connection, tenant_id: str, kind: str, idempotency_key: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {TRANSFER_COLUMNS} FROM execution.treasury_transfers WHERE tenant_id = $1 AND kind = $2 "
        "AND idempotency_key = $3",
        tenant_id,
        kind,
        idempotency_key,
    )


async def insert_transfer(
    conn: asyncpg.Connection,
    *,
    transfer_id: str,
    tenant_id: str,
    idempotency_key: str,
    kind: str,
    chain_id: int,
    wallet: str,
    executor: str,
    token: str,
    to_address: str,
    amount: int,
    tx_hash: str,
    raw_tx: bytes,
) -> asyncpg.Record:
    """The new transfer, or the one already recorded under the same idempotency key."""
    row = await conn.fetchrow(
        "INSERT INTO execution.treasury_transfers (transfer_id, tenant_id, idempotency_key, kind, chain_id, "
        "wallet_address, executor_address, token, to_address, amount, tx_hash, raw_tx, status) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'signed') "
        f"ON CONFLICT (tenant_id, kind, idempotency_key) DO NOTHING RETURNING {TRANSFER_COLUMNS}",
        transfer_id,
        tenant_id,
        idempotency_key,
        kind,
        chain_id,
        wallet,
        executor,
        token,
        to_address,
        amount,
        tx_hash,
        raw_tx,
    )
    if row is None:
        row = await get_transfer(conn, tenant_id, kind, idempotency_key)
    assert row is not None
    return row


async def finish_transfer(
    conn: asyncpg.Connection,
    tenant_id: str,
    transfer_id: str,
    *,
    status: str,
    block_number: int,
    gas_cost: int,
    error: str,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        "UPDATE execution.treasury_transfers SET status = $3, block_number = $4, gas_cost = $5, error = $6, "
        "finalized_at = now() WHERE tenant_id = $1 AND transfer_id = $2 "
        f"RETURNING {TRANSFER_COLUMNS}",
        tenant_id,
        transfer_id,
        status,
        block_number,
        gas_cost,
        error,
    )
    assert row is not None
    return row
