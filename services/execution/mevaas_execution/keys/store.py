"""The SQL of tenant data keys (their versions), and of moving wallets under them."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

Row = asyncpg.Record


_KEY_COLUMNS = "key_id, tenant_id, version, kek_id, wrapped_key"


async def get_current_key(conn: asyncpg.Connection, tenant_id: str, *, share: bool = False) -> Row | None:
    """The tenant's current data key; `share` locks it FOR SHARE, so that a wallet sealed under it
    commits before a rotation retires it (the rotation locks it FOR UPDATE)."""
    return await conn.fetchrow(
        f"SELECT {_KEY_COLUMNS} FROM execution.tenant_data_keys WHERE tenant_id = $1 AND retired_at IS NULL"
        + (" FOR SHARE" if share else ""),
        tenant_id,
    )


async def get_live_key(conn: asyncpg.Connection, tenant_id: str, key_id: str) -> Row | None:
    """Version `key_id` of the tenant's data key, unless it is retired."""
    return await conn.fetchrow(
        f"SELECT {_KEY_COLUMNS} FROM execution.tenant_data_keys "
        "WHERE tenant_id = $1 AND key_id = $2 AND retired_at IS NULL",
        tenant_id,
        key_id,
    )


async def get_key_version(conn: asyncpg.Connection, tenant_id: str, key_id: str) -> Row | None:
    """Version `key_id` of the tenant's data key, retired or not (what a rotation's caller names)."""
    return await conn.fetchrow(
        "SELECT key_id, version, retired_at FROM execution.tenant_data_keys WHERE tenant_id = $1 AND key_id = $2",
        tenant_id,
        key_id,
    )


async def insert_tenant_key(
    conn: asyncpg.Connection, tenant_id: str, key_id: str, kek_id: str, wrapped_key: bytes, version: int = 1
) -> bool:
    """A current data key of the tenant; a concurrent one wins and this one is dropped (False; the
    caller reads back the one stored)."""
    status: str = await conn.execute(
        "INSERT INTO execution.tenant_data_keys (key_id, tenant_id, version, kek_id, wrapped_key) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        key_id,
        tenant_id,
        version,
        kek_id,
        wrapped_key,
    )
    return status == "INSERT 0 1"


async def lock_current_key(conn: asyncpg.Connection, tenant_id: str, lock_timeout: str) -> Row | None:
    await conn.execute(f"SET LOCAL lock_timeout = '{lock_timeout}'")
    return await conn.fetchrow(
        f"SELECT {_KEY_COLUMNS} FROM execution.tenant_data_keys "
        "WHERE tenant_id = $1 AND retired_at IS NULL FOR UPDATE",
        tenant_id,
    )


async def retire_key(conn: asyncpg.Connection, key_id: str) -> None:
    """The version stops being current and its key is erased (its row stays, for the record)."""
    await conn.execute(
        "UPDATE execution.tenant_data_keys SET retired_at = now(), wrapped_key = NULL "
        "WHERE key_id = $1 AND retired_at IS NULL",
        key_id,
    )


async def lock_wallets_under(conn: asyncpg.Connection, tenant_id: str, key_id: str) -> list[Row]:
    """Every wallet of the tenant wrapped under `key_id`, locked as the KEK rotation locks them."""
    return list(
        await conn.fetch(
            "SELECT wallet_id, tenant_id, address, kek_id, wrapped_dek, ciphertext FROM execution.wallets "
            "WHERE tenant_id = $1 AND kek_id = $2 ORDER BY wallet_id FOR NO KEY UPDATE",
            tenant_id,
            key_id,
        )
    )


async def count_wallets_under(conn: asyncpg.Connection, tenant_id: str, key_id: str) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM execution.wallets WHERE tenant_id = $1 AND kek_id = $2", tenant_id, key_id
    )
    return count


async def tenant_key_counts_by_kek(conn: asyncpg.Connection) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT kek_id, count(*) AS n FROM execution.tenant_data_keys WHERE retired_at IS NULL GROUP BY kek_id"
    )
    return {row["kek_id"]: row["n"] for row in rows}


async def count_wallets_off_tenant_key(conn: asyncpg.Connection) -> dict[str, int]:
    """Wallets not (yet) under their tenant's data key, per the KEK they are wrapped under."""
    rows = await conn.fetch(
        "SELECT w.kek_id, count(*) AS n FROM execution.wallets w "
        "LEFT JOIN execution.tenant_data_keys k "
        "ON k.tenant_id = w.tenant_id AND k.key_id = w.kek_id AND k.retired_at IS NULL "
        "WHERE k.key_id IS NULL GROUP BY w.kek_id"
    )
    return {row["kek_id"]: row["n"] for row in rows}


async def lock_tenant_keys_not_under(
    conn: asyncpg.Connection, kek_id: str, limit: int, lock_timeout: str
) -> list[Row]:
    await conn.execute(f"SET LOCAL lock_timeout = '{lock_timeout}'")
    return list(
        await conn.fetch(
            f"SELECT {_KEY_COLUMNS} FROM execution.tenant_data_keys "
            "WHERE kek_id <> $1 AND retired_at IS NULL ORDER BY key_id LIMIT $2 FOR UPDATE",
            kek_id,
            limit,
        )
    )


async def rewrap_tenant_keys(
    conn: asyncpg.Connection, updates: Sequence[tuple[str, str, str, bytes]]
) -> None:
    """(key_id, old kek_id, new kek_id, new wrapped_key), each only while still under the old KEK."""
    await conn.executemany(
        "UPDATE execution.tenant_data_keys SET kek_id = $3, wrapped_key = $4 "
        "WHERE key_id = $1 AND kek_id = $2 AND retired_at IS NULL",
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
            "LEFT JOIN execution.tenant_data_keys k "
            "ON k.tenant_id = w.tenant_id AND k.key_id = w.kek_id AND k.retired_at IS NULL "
            "WHERE k.key_id IS NULL ORDER BY w.wallet_id LIMIT $1 FOR NO KEY UPDATE OF w SKIP LOCKED",
            limit,
        )
    )
