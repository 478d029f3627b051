"""The SQL of rebalances (execution.rebalances, V009) and of the executions their trades own.
Every function takes a connection already inside a transaction with the tenant (or platform)
scope set, so row-level security applies to each statement."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg

from mevaas_execution.store import EXECUTION_COLUMNS

Row = asyncpg.Record

REBALANCE_COLUMNS = (
    "tenant_id, rebalance_id, state, wallet_address, command, trades, trade_summaries, current_trade, "
    "trade_deadline, execution_ids, reason, sequence, created_at, updated_at"
)


async def insert_rebalance(
    conn: asyncpg.Connection, tenant_id: str, rebalance_id: str, wallet_address: str, command: bytes
) -> Row | None:
    """The new rebalance (``submitted``), or None when the id is known (a redelivered command)."""
    return await conn.fetchrow(
        "INSERT INTO execution.rebalances (tenant_id, rebalance_id, state, wallet_address, command) "
        "VALUES ($1, $2, 'submitted', $3, $4) ON CONFLICT (tenant_id, rebalance_id) DO NOTHING "
        f"RETURNING {REBALANCE_COLUMNS}",
        tenant_id,
        rebalance_id,
        wallet_address,
        command,
    )


async def get_rebalance(
    conn: asyncpg.Connection, tenant_id: str, rebalance_id: str, *, lock: str = ""
) -> Row | None:
    """``lock``: "" (none), "SHARE" or "UPDATE"."""
    suffix = f" FOR {lock}" if lock in ("SHARE", "UPDATE") else ""
    return await conn.fetchrow(
        f"SELECT {REBALANCE_COLUMNS} FROM execution.rebalances WHERE tenant_id = $1 AND rebalance_id = $2"
        + suffix,
        tenant_id,
        rebalance_id,
    )


async def active_rebalances(conn: asyncpg.Connection) -> list[Row]:
    """(tenant_id, rebalance_id) of every rebalance not final yet, oldest first (platform scope)."""
    return await conn.fetch(
        "SELECT tenant_id, rebalance_id FROM execution.rebalances "
        "WHERE state IN ('submitted', 'planning', 'executing') ORDER BY created_at"
    )


async def update_rebalance(
    conn: asyncpg.Connection, tenant_id: str, rebalance_id: str, sequence: int, changes: Mapping[str, Any]
) -> Row | None:
    """Apply ``changes`` if the rebalance is still at ``sequence`` (nobody changed it since it was
    read); None otherwise. Every change bumps the sequence."""
    assignments = ", ".join(f"{column} = ${i}" for i, column in enumerate(changes, start=4))
    return await conn.fetchrow(
        f"UPDATE execution.rebalances SET {assignments}, sequence = sequence + 1, updated_at = now() "
        f"WHERE tenant_id = $1 AND rebalance_id = $2 AND sequence = $3 RETURNING {REBALANCE_COLUMNS}",
        tenant_id,
        rebalance_id,
        sequence,
        *changes.values(),
    )


async def list_rebalances(
    conn: asyncpg.Connection,
    tenant_id: str,
    *,
    state: str | None,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[Row]:
    return await conn.fetch(
        f"SELECT {REBALANCE_COLUMNS} FROM execution.rebalances WHERE tenant_id = $1 "
        "AND ($2::text IS NULL OR state = $2) "
        "AND ($3::timestamptz IS NULL OR (created_at, rebalance_id) < ($3, $4)) "
        "ORDER BY created_at DESC, rebalance_id DESC LIMIT $5",
        tenant_id,
        state,
        before[0] if before else None,
        before[1] if before else "",
        limit,
    )


# ------------------------------------------------------------------ the executions of the trades


async def trade_context(
    conn: asyncpg.Connection, tenant_id: str, opportunity_id: str, rebalance_id: str
) -> Row:
    """One round trip for a trade's decision: ``seen`` (the trade already has an execution: a
    redelivery) and the rebalance's columns (NULL when it is unknown)."""
    row = await conn.fetchrow(
        "SELECT EXISTS (SELECT 1 FROM execution.executions WHERE tenant_id = $1 AND opportunity_id = $2) "
        f"AS seen, r.* FROM (SELECT) AS one LEFT JOIN LATERAL (SELECT {REBALANCE_COLUMNS} FROM "
        "execution.rebalances WHERE tenant_id = $1 AND rebalance_id = $3) AS r ON true",
        tenant_id,
        opportunity_id,
        rebalance_id,
    )
    assert row is not None
    return row


async def insert_execution_while_executing(
    conn: asyncpg.Connection, rebalance_id: str, current_trade: int, values: Mapping[str, Any]
) -> Row | None:
    """Insert a trade's execution while its rebalance, locked FOR SHARE, is executing that very
    trade; None when it is not, or the trade already has an execution."""
    placeholders = ", ".join(f"${i}" for i in range(4, len(values) + 4))
    return await conn.fetchrow(
        "WITH live AS (SELECT 1 FROM execution.rebalances WHERE tenant_id = $1 AND rebalance_id = $2 "
        "AND state = 'executing' AND current_trade = $3 FOR SHARE) "
        f"INSERT INTO execution.executions ({', '.join(values)}) SELECT {placeholders} "
        "WHERE EXISTS (SELECT 1 FROM live) ON CONFLICT (tenant_id, opportunity_id) DO NOTHING "
        f"RETURNING {EXECUTION_COLUMNS}",
        values["tenant_id"],
        rebalance_id,
        current_trade,
        *values.values(),
    )


async def trade_execution(conn: asyncpg.Connection, tenant_id: str, opportunity_id: str) -> Row | None:
    """The execution of one trade, a risk rejection included."""
    return await conn.fetchrow(
        "SELECT execution_id, status, error FROM execution.executions "
        "WHERE tenant_id = $1 AND opportunity_id = $2",
        tenant_id,
        opportunity_id,
    )
