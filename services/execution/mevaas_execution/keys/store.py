"""The SQL of tenant data keys, and of moving wallets under them."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

Row = asyncpg.Record


async def get_tenant_key(conn: asyncpg.Connection, tenant_id: str) -> Row | None:
    return await conn.fetchrow(
        "SELECT key_id, tenant_id, kek_id, wrapped_key FROM execution.tenant_data_keys WHERE tenant_id = $1",
        tenant_id,
    )


async def insert_tenant_key(
    conn: asyncpg.Connection, tenant_id: str, key_id: str, kek_id: str, wrapped_key: bytes
) -> None:
    """A tenant's first data key; a concurrent first one wins and this one is dropped (the caller
    reads back the one stored)."""
    await conn.execute(
        "INSERT INTO execution.tenant_data_keys (key_id, tenant_id, kek_id, wrapped_key) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id) DO NOTHING",
        key_id,
        tenant_id,
        kek_id,
        wrapped_key,
    )


async def tenant_key_counts_by_kek(conn: asyncpg.Connection) -> dict[str, int]:
    rows = await conn.fetch("SELECT kek_id, count(*) AS n FROM execution.tenant_data_keys GROUP BY kek_id")
    return {row["kek_id"]: row["n"] for row in rows}


async def count_wallets_off_tenant_key(conn: asyncpg.Connection) -> dict[str, int]:
    """Wallets not (yet) under their tenant's data key, per the KEK they are wrapped under."""
    rows = await conn.fetch(
        "SELECT w.kek_id, count(*) AS n FROM execution.wallets w "
        "LEFT JOIN execution.tenant_data_keys k ON k.tenant_id = w.tenant_id AND k.key_id = w.kek_id "
        "WHERE k.key_id IS NULL GROUP BY w.kek_id"
    )
    return {row["kek_id"]: row["n"] for row in rows}


async def lock_tenant_keys_not_under(
    conn: asyncpg.Connection, kek_id: str, limit: int, lock_timeout: str
) -> list[Row]:
    await conn.execute(f"SET LOCAL lock_timeout = '{lock_timeout}'")
    return list(
        await conn.fetch(
            "SELECT key_id, tenant_id, kek_id, wrapped_key FROM execution.tenant_data_keys "
            "WHERE kek_id <> $1 ORDER BY key_id LIMIT $2 FOR UPDATE",
            kek_id,
            limit,
        )
    )


async def rewrap_tenant_keys(
    conn: asyncpg.Connection, updates: Sequence[tuple[str, str, str, bytes]]
) -> None:
    """(key_id, old kek_id, new kek_id, new wrapped_key), each only while still under the old KEK."""
    await conn.executemany(
        "UPDATE execution.tenant_data_keys SET kek_id = $3, wrapped_key = $4 WHERE key_id = $1 AND kek_id = $2",
        updates,
    )


async def lock_wallets_off_tenant_key(conn: asyncpg.Connection, limit: int, lock_timeout: str) -> list[Row]:
    """Up to ``limit`` wallets not under their tenant's data key (wrapped straight under a KEK),
    locked NO KEY UPDATE as the KEK rotation does (store.lock_wallets_not_under). Rows locked
    elsewhere are skipped, so replicas starting together share the work instead of waiting."""
    await conn.execute(f"SET LOCAL lock_timeout = '{lock_timeout}'")
    return list(
        await conn.fetch(
            "SELECT w.wallet_id, w.tenant_id, w.address, w.kek_id, w.wrapped_dek, w.ciphertext "
            "FROM execution.wallets w "
            "LEFT JOIN execution.tenant_data_keys k ON k.tenant_id = w.tenant_id AND k.key_id = w.kek_id "
            "WHERE k.key_id IS NULL ORDER BY w.wallet_id LIMIT $1 FOR NO KEY UPDATE OF w SKIP LOCKED",
            limit,
        )
    )
