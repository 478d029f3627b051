"""SQL of the strategy schema (callers choose the row-level-security scope of the transaction)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from mevaas_core.erasure import Erase, ErasurePlan

SESSIONS_CHANNEL = "strategy_sessions"

_STRATEGY_COLUMNS = (
    "s.strategy_id, s.tenant_id, s.name, s.type, s.current_version, s.status, s.created_at, "
    "s.deleted_at, v.version, v.config, v.created_at AS version_created_at, v.created_by, v.change_note"
)


async def insert_strategy(
    conn: asyncpg.Connection,
    *,
    strategy_id: str,
    tenant_id: str,
    name: str,
    type_: int,
    alloc_chain_id: int,
    alloc_token: str,
    alloc_amount: int,
) -> bool:
    """False when the name is taken by a non-deleted strategy of the tenant."""
    row = await conn.fetchrow(
        "INSERT INTO strategy.strategies (strategy_id, tenant_id, name, type, current_version, "
        "alloc_chain_id, alloc_token, alloc_amount) VALUES ($1, $2, $3, $4, 1, $5, $6, $7) "
        "ON CONFLICT DO NOTHING RETURNING strategy_id",
        strategy_id,
        tenant_id,
        name,
        type_,
        alloc_chain_id,
        alloc_token,
        alloc_amount,
    )
    return row is not None


async def insert_version(
    conn: asyncpg.Connection,
    *,
    strategy_id: str,
    tenant_id: str,
    version: int,
    config: bytes,
    created_by: str,
    change_note: str = "",
) -> None:
    await conn.execute(
        "INSERT INTO strategy.strategy_versions (strategy_id, version, tenant_id, config, created_by, change_note) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        strategy_id,
        version,
        tenant_id,
        config,
        created_by,
        change_note,
    )


async def get_strategy(
    conn: asyncpg.Connection, strategy_id: str, version: int = 0, *, for_update: bool = False
) -> asyncpg.Record | None:
    """The strategy joined with one version (0 = its current version)."""
    return await conn.fetchrow(
        f"SELECT {_STRATEGY_COLUMNS} FROM strategy.strategies s JOIN strategy.strategy_versions v "
        "ON v.strategy_id = s.strategy_id AND v.version = CASE WHEN $2 > 0 THEN $2 ELSE s.current_version END "
        "WHERE s.strategy_id = $1" + (" FOR UPDATE OF s" if for_update else ""),
        strategy_id,
        version,
    )


async def list_strategies(
    conn: asyncpg.Connection,
    *,
    type_: int,
    include_deleted: bool,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT {_STRATEGY_COLUMNS} FROM strategy.strategies s JOIN strategy.strategy_versions v "
        "ON v.strategy_id = s.strategy_id AND v.version = s.current_version "
        "WHERE ($1 = 0 OR s.type = $1) AND ($2 OR s.status = 'active') "
        "AND ($3::timestamptz IS NULL OR (s.created_at, s.strategy_id) > ($3, $4)) "
        "ORDER BY s.created_at, s.strategy_id LIMIT $5",
        type_,
        include_deleted,
        after[0] if after else None,
        after[1] if after else "",
        limit,
    )
    return rows


async def list_versions(
    conn: asyncpg.Connection, strategy_id: str, *, before: int | None, limit: int
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT strategy_id, version, config, created_at, created_by, change_note "
        "FROM strategy.strategy_versions WHERE strategy_id = $1 AND ($2::bigint IS NULL OR version < $2) "
        "ORDER BY version DESC LIMIT $3",
        strategy_id,
        before,
        limit,
    )
    return rows


async def set_current_version(
    conn: asyncpg.Connection,
    strategy_id: str,
    *,
    version: int,
    name: str,
    alloc_chain_id: int,
    alloc_token: str,
    alloc_amount: int,
) -> bool:
    """False when the new name collides with another non-deleted strategy."""
    try:
        async with conn.transaction():
            await conn.execute(
                "UPDATE strategy.strategies SET current_version = $2, name = $3, alloc_chain_id = $4, "
                "alloc_token = $5, alloc_amount = $6, updated_at = now() WHERE strategy_id = $1",
                strategy_id,
                version,
                name,
                alloc_chain_id,
                alloc_token,
                alloc_amount,
            )
    except asyncpg.UniqueViolationError:
        return False
    return True


async def mark_deleted(conn: asyncpg.Connection, strategy_id: str) -> None:
    await conn.execute(
        "UPDATE strategy.strategies SET status = 'deleted', deleted_at = now(), updated_at = now() "
        "WHERE strategy_id = $1 AND status = 'active'",
        strategy_id,
    )


async def name_taken(conn: asyncpg.Connection, name: str, *, except_id: str = "") -> bool:
    return bool(
        await conn.fetchval(
            "SELECT 1 FROM strategy.strategies WHERE lower(name) = lower($1) AND status = 'active' "
            "AND strategy_id <> $2",
            name,
            except_id,
        )
    )


async def active_allocations(conn: asyncpg.Connection, *, except_id: str = "") -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT alloc_chain_id, alloc_token, alloc_amount FROM strategy.strategies "
        "WHERE status = 'active' AND strategy_id <> $1",
        except_id,
    )
    return rows


async def count_active(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM strategy.strategies WHERE status = 'active'"))


async def lock_tenant(conn: asyncpg.Connection, tenant_id: str) -> None:
    """Serialise a tenant's creations so plan quotas hold under concurrent requests."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 1))", f"strategy:{tenant_id}")


async def session_state(conn: asyncpg.Connection, strategy_id: str) -> int | None:
    value = await conn.fetchval("SELECT state FROM strategy.sessions WHERE strategy_id = $1", strategy_id)
    return None if value is None else int(value)


async def apply_session(
    conn: asyncpg.Connection,
    *,
    tenant_id: str,
    strategy_id: str,
    session_id: str,
    strategy_version: int,
    state: int,
    sequence: int,
    occurred_at: datetime,
    wallet_address: str = "",
) -> bool:
    """Record a session state change unless it is older than what is stored; True if applied."""
    row = await conn.fetchrow(
        "INSERT INTO strategy.sessions AS x (strategy_id, tenant_id, session_id, strategy_version, state, sequence, "
        "occurred_at, wallet_address) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (strategy_id) DO UPDATE SET "
        "session_id = EXCLUDED.session_id, strategy_version = EXCLUDED.strategy_version, state = EXCLUDED.state, "
        "sequence = EXCLUDED.sequence, occurred_at = EXCLUDED.occurred_at, "
        "wallet_address = CASE WHEN EXCLUDED.wallet_address <> '' THEN EXCLUDED.wallet_address "
        "ELSE x.wallet_address END, updated_at = now() "
        "WHERE (x.session_id = EXCLUDED.session_id AND EXCLUDED.sequence > x.sequence) "
        "OR (x.session_id <> EXCLUDED.session_id AND EXCLUDED.occurred_at >= x.occurred_at) "
        "RETURNING strategy_id",
        strategy_id,
        tenant_id,
        session_id,
        strategy_version,
        state,
        sequence,
        occurred_at,
        wallet_address,
    )
    if row is not None:
        await conn.execute(f"NOTIFY {SESSIONS_CHANNEL}")
    return row is not None


async def wallet_tenants(conn: asyncpg.Connection) -> dict[str, str]:
    """Lower-case wallet address -> the tenant whose sessions sign with it (platform scope)."""
    rows = await conn.fetch(
        "SELECT DISTINCT lower(wallet_address) AS wallet, tenant_id FROM strategy.sessions WHERE wallet_address <> ''"
    )
    return {r["wallet"]: r["tenant_id"] for r in rows}


async def apply_tenant(
    conn: asyncpg.Connection, *, tenant_id: str, version: int, tier: int, status: int, plan: bytes
) -> bool:
    row = await conn.fetchrow(
        "INSERT INTO strategy.tenant_plans AS t (tenant_id, version, tier, status, plan) VALUES ($1, $2, $3, $4, $5) "
        "ON CONFLICT (tenant_id) DO UPDATE SET version = EXCLUDED.version, tier = EXCLUDED.tier, "
        "status = EXCLUDED.status, plan = EXCLUDED.plan, updated_at = now() WHERE EXCLUDED.version > t.version "
        "RETURNING tenant_id",
        tenant_id,
        version,
        tier,
        status,
        plan,
    )
    if row is not None:
        await conn.execute(f"NOTIFY {SESSIONS_CHANNEL}")
    return row is not None


async def tenant_plan(conn: asyncpg.Connection, tenant_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT tier, status, plan FROM strategy.tenant_plans WHERE tenant_id = $1", tenant_id
    )


async def running_strategies(
    conn: asyncpg.Connection, running_state: int, excluded_tenant_statuses: Sequence[int]
) -> list[asyncpg.Record]:
    """Every strategy version an active session runs (the session's version, else the current one),
    of tenants not suspended or deleted."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT s.tenant_id, s.strategy_id, v.version, v.config FROM strategy.sessions x "
        "JOIN strategy.strategies s ON s.strategy_id = x.strategy_id AND s.tenant_id = x.tenant_id "
        "AND s.status = 'active' "
        "JOIN strategy.strategy_versions v ON v.strategy_id = s.strategy_id AND v.version = "
        "CASE WHEN x.strategy_version > 0 THEN x.strategy_version ELSE s.current_version END "
        "LEFT JOIN strategy.tenant_plans t ON t.tenant_id = s.tenant_id "
        "WHERE x.state = $1 AND (t.status IS NULL OR t.status <> ALL($2::integer[])) "
        "ORDER BY s.tenant_id, s.strategy_id",
        running_state,
        excluded_tenant_statuses,
    )
    return rows


# What DeleteTenant leaves of a tenant here (mevaas_core.erasure): strategy definitions are the
# tenant's own, not trade records, so all go; the plan snapshot stays as a tombstone.
ERASURE = ErasurePlan(
    schema="strategy",
    erase=(
        Erase("protection_deleverages"),
        Erase("protections"),
        Erase("strategy_versions"),
        Erase("sessions"),
        Erase("strategies"),
        Erase("idempotency_keys"),
        Erase("outbox", "published_at IS NOT NULL"),
    ),
    keep={
        "tenant_plans": "tombstone: the tenant's status (deleted) and plan, so it stays refused; no personal data"
    },
)
