"""SQL of leverage protection (strategy.protections, and strategy.protection_deleverages: the
deleverages in flight); callers choose the transaction's RLS scope."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg

PROTECTIONS_CHANNEL = "strategy_protections"
_COLUMNS = (
    "protection_id, tenant_id, chain_id, account, executor_address, trigger_health_factor, "
    "target_health_factor, emergency_enabled, emergency_health_factor, collateral_asset, debt_asset, "
    "registered_health_factor, state, created_at, updated_at"
)
_IN_FLIGHT = "protection_id, tenant_id, chain_id, opportunity_id, deadline_block, result, created_at"


async def insert(conn: asyncpg.Connection, values: Mapping[str, Any]) -> asyncpg.Record | None:
    """None when the account already has a live protection on the chain."""
    placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    row: asyncpg.Record | None = await conn.fetchrow(
        f"INSERT INTO strategy.protections ({', '.join(values)}) VALUES ({placeholders}) "
        f"ON CONFLICT DO NOTHING RETURNING {_COLUMNS}",
        *values.values(),
    )
    if row is not None:
        await conn.execute("SELECT pg_notify($1, $2)", PROTECTIONS_CHANNEL, row["tenant_id"])
    return row


async def get(
    conn: asyncpg.Connection, protection_id: str, *, for_update: bool = False
) -> asyncpg.Record | None:
    lock = " FOR UPDATE" if for_update else ""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM strategy.protections WHERE protection_id = $1{lock}", protection_id
    )
    return row


async def update(conn: asyncpg.Connection, protection_id: str, changes: Mapping[str, Any]) -> asyncpg.Record:
    sets = ", ".join(f"{column} = ${i}" for i, column in enumerate(changes, start=2))
    row: asyncpg.Record | None = await conn.fetchrow(
        f"UPDATE strategy.protections SET {sets}, updated_at = now() WHERE protection_id = $1 "
        f"RETURNING {_COLUMNS}",
        protection_id,
        *changes.values(),
    )
    assert row is not None
    await conn.execute("SELECT pg_notify($1, $2)", PROTECTIONS_CHANNEL, row["tenant_id"])
    return row


async def list_page(
    conn: asyncpg.Connection, *, include_removed: bool, after: tuple[datetime, str] | None, limit: int
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT {_COLUMNS} FROM strategy.protections WHERE ($1 OR state <> 'removed') "
        "AND ($2::timestamptz IS NULL OR (created_at, protection_id) > ($2, $3)) "
        "ORDER BY created_at, protection_id LIMIT $4",
        include_removed,
        after[0] if after else None,
        after[1] if after else "",
        limit,
    )
    return rows


async def watched(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every active protection of every tenant (platform scope: the engine's monitor)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT {_COLUMNS} FROM strategy.protections WHERE state = 'active'"
    )
    return rows


async def in_flight(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every deleverage in flight (platform scope: the engine's monitor)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT {_IN_FLIGHT} FROM strategy.protection_deleverages ORDER BY created_at, protection_id"
    )
    return rows


async def claim_deleverage(
    conn: asyncpg.Connection,
    *,
    protection_id: str,
    tenant_id: str,
    chain_id: int,
    opportunity_id: str,
    deadline_block: int,
) -> asyncpg.Record:
    """The protection's deleverage in flight: this one when the protection had none (or it is
    this one already), else the one that was there first."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "INSERT INTO strategy.protection_deleverages "
        "(protection_id, tenant_id, chain_id, opportunity_id, deadline_block) VALUES ($1, $2, $3, $4, $5) "
        f"ON CONFLICT DO NOTHING RETURNING {_IN_FLIGHT}",
        protection_id,
        tenant_id,
        chain_id,
        opportunity_id,
        deadline_block,
    )
    if row is None:
        row = await conn.fetchrow(
            f"SELECT {_IN_FLIGHT} FROM strategy.protection_deleverages WHERE protection_id = $1",
            protection_id,
        )
    assert row is not None, "an opportunity id in flight for another protection"
    return row


async def record_result(conn: asyncpg.Connection, opportunity_id: str, result: bytes) -> None:
    """Keeps execution's final result on its deleverage, if one is in flight for it, and tells the
    monitors (the replica evaluating the tenant may not be the one that received the result)."""
    tenant_id: str | None = await conn.fetchval(
        "UPDATE strategy.protection_deleverages SET result = $2 WHERE opportunity_id = $1 AND result IS NULL "
        "RETURNING tenant_id",
        opportunity_id,
        result,
    )
    if tenant_id is not None:
        await conn.execute("SELECT pg_notify($1, $2)", PROTECTIONS_CHANNEL, tenant_id)


async def settle_deleverage(conn: asyncpg.Connection, protection_id: str, opportunity_id: str) -> None:
    await conn.execute(
        "DELETE FROM strategy.protection_deleverages WHERE protection_id = $1 AND opportunity_id = $2",
        protection_id,
        opportunity_id,
    )
