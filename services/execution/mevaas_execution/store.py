"""Execution's SQL. Every function takes a connection already inside a transaction with the
tenant (or platform) scope set, so row-level security applies to each statement."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from mevaas_core.erasure import TRADE_RETENTION, Erase, ErasurePlan

Row = asyncpg.Record

WALLET_COLUMNS = (
    "wallet_id, tenant_id, address, label, imported, is_default, kek_id, wrapped_dek, ciphertext, created_at"
)
SESSION_COLUMNS = (
    "session_id, tenant_id, strategy_id, strategy_version, strategy_type, state, wallet_address, chain_ids, "
    "submission_mode, settings, sequence, state_reason, last_error, last_error_at, started_at, updated_at, "
    "stopped_at"
)
EXECUTION_COLUMNS = (
    "execution_id, tenant_id, opportunity_id, session_id, strategy_id, strategy_version, reservation_id, "
    "chain_id, status, submission_mode, wallet_address, executor_address, nonce, tx_hash, raw_tx, "
    "bundle_hash, target_block, deadline_block, attempts, max_attempts, block_number, expected_profit, "
    "expected_gross_profit, realized_profit, realized_gross_profit, gas_rate_num, gas_rate_den, "
    "profit_token, gas_used, effective_gas_price, gas_cost, error, timestamps, block_to_submission_ms, "
    "created_at, submitted_at, finalized_at, leg_tx_hashes, action_kind, rebalance_id"
)
LEG_COLUMNS = (
    "tenant_id, execution_id, opportunity_id, leg_index, chain_id, wallet_address, status, submission_mode, "
    "router_address, token_in, token_out, amount_in, amount_out_min, approve_tx_hash, approve_raw_tx, nonce, "
    "tx_hash, raw_tx, target_block, last_block, attempts, block_number, amount_out, gas_used, gas_cost, "
    "gas_rate_num, gas_rate_den, error, created_at, finalized_at, unwinds"
)


# ------------------------------------------------------------------------------------------ wallets


async def insert_wallet(
    conn: asyncpg.Connection,
    *,
    wallet_id: str,
    tenant_id: str,
    address: str,
    label: str,
    imported: bool,
    make_default: bool,
    kek_id: str,
    wrapped_dek: bytes,
    ciphertext: bytes,
) -> Row | None:
    """The new wallet (the tenant's default when asked, or when it is the first); None when the
    address is already a wallet of the tenant."""
    has_default = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM execution.wallets WHERE tenant_id = $1 AND is_default)", tenant_id
    )
    if make_default and has_default:
        await conn.execute(
            "UPDATE execution.wallets SET is_default = false WHERE tenant_id = $1 AND is_default "
            "AND address <> $2",
            tenant_id,
            address,
        )
    return await conn.fetchrow(
        "INSERT INTO execution.wallets (wallet_id, tenant_id, address, label, imported, is_default, kek_id, "
        "wrapped_dek, ciphertext) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
        f"ON CONFLICT (tenant_id, address) DO NOTHING RETURNING {WALLET_COLUMNS}",
        wallet_id,
        tenant_id,
        address,
        label,
        imported,
        make_default or not has_default,
        kek_id,
        wrapped_dek,
        ciphertext,
    )


async def get_wallet(conn: asyncpg.Connection, tenant_id: str, address: str) -> Row | None:
    return await conn.fetchrow(
        f"SELECT {WALLET_COLUMNS} FROM execution.wallets WHERE tenant_id = $1 AND lower(address) = lower($2)",
        tenant_id,
        address,
    )


async def get_default_wallet(conn: asyncpg.Connection, tenant_id: str) -> Row | None:
    return await conn.fetchrow(
        f"SELECT {WALLET_COLUMNS} FROM execution.wallets WHERE tenant_id = $1 AND is_default", tenant_id
    )


async def list_wallets(
    conn: asyncpg.Connection, tenant_id: str, *, after: tuple[datetime, str] | None, limit: int
) -> list[Row]:
    return await conn.fetch(
        f"SELECT {WALLET_COLUMNS} FROM execution.wallets WHERE tenant_id = $1 "
        "AND ($2::timestamptz IS NULL OR (created_at, wallet_id) > ($2, $3)) "
        "ORDER BY created_at, wallet_id LIMIT $4",
        tenant_id,
        after[0] if after else None,
        after[1] if after else "",
        limit,
    )


async def rewrap_wallets(conn: asyncpg.Connection, updates: Sequence[tuple[str, str, str, bytes]]) -> None:
    """(wallet_id, old kek_id, new kek_id, new wrapped_dek): each row only while it is still under
    the KEK it was read with, so two rotations at once never overwrite each other."""
    await conn.executemany(
        "UPDATE execution.wallets SET kek_id = $3, wrapped_dek = $4 WHERE wallet_id = $1 AND kek_id = $2",
        updates,
    )


# ----------------------------------------------------------------------------------------- sessions


async def insert_session(conn: asyncpg.Connection, **values: Any) -> Row | None:
    """The new session; None when the strategy already has a live one."""
    columns = ", ".join(values)
    placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    return await conn.fetchrow(
        f"INSERT INTO execution.sessions ({columns}) VALUES ({placeholders}) "
        f"ON CONFLICT DO NOTHING RETURNING {SESSION_COLUMNS}",
        *values.values(),
    )


async def get_session(
    conn: asyncpg.Connection, tenant_id: str, session_id: str, *, lock: str = ""
) -> Row | None:
    suffix = f" FOR {lock}" if lock else ""
    return await conn.fetchrow(
        f"SELECT {SESSION_COLUMNS} FROM execution.sessions WHERE tenant_id = $1 AND session_id = $2{suffix}",
        tenant_id,
        session_id,
    )


async def update_session_state(
    conn: asyncpg.Connection, tenant_id: str, session_id: str, state: str, reason: str
) -> Row:
    row = await conn.fetchrow(
        "UPDATE execution.sessions SET state = $3, state_reason = $4, sequence = sequence + 1, "
        "updated_at = now(), stopped_at = CASE WHEN $3 IN ('stopped', 'failed') THEN now() END "
        f"WHERE tenant_id = $1 AND session_id = $2 RETURNING {SESSION_COLUMNS}",
        tenant_id,
        session_id,
        state,
        reason,
    )
    assert row is not None
    return row


async def set_session_error(conn: asyncpg.Connection, tenant_id: str, session_id: str, error: str) -> None:
    await conn.execute(
        "UPDATE execution.sessions SET last_error = $3, last_error_at = now() "
        "WHERE tenant_id = $1 AND session_id = $2",
        tenant_id,
        session_id,
        error[:2000],
    )


async def live_sessions(
    conn: asyncpg.Connection, tenant_id: str | None, strategy_id: str = "", *, lock: bool = False
) -> list[Row]:
    """Live sessions of a tenant (or of every tenant when ``tenant_id`` is None)."""
    return await conn.fetch(
        f"SELECT {SESSION_COLUMNS} FROM execution.sessions "
        "WHERE state IN ('starting', 'running', 'paused', 'stopping') "
        "AND ($1::text IS NULL OR tenant_id = $1) AND ($2 = '' OR strategy_id = $2) "
        f"ORDER BY session_id{' FOR UPDATE' if lock else ''}",
        tenant_id,
        strategy_id,
    )


async def starting_sessions(conn: asyncpg.Connection) -> list[Row]:
    return await conn.fetch(f"SELECT {SESSION_COLUMNS} FROM execution.sessions WHERE state = 'starting'")


async def list_sessions(
    conn: asyncpg.Connection,
    tenant_id: str,
    *,
    strategy_id: str,
    state: str | None,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[Row]:
    return await conn.fetch(
        f"SELECT {SESSION_COLUMNS} FROM execution.sessions WHERE tenant_id = $1 "
        "AND ($2 = '' OR strategy_id = $2) AND ($3::text IS NULL OR state = $3) "
        "AND ($4::timestamptz IS NULL OR (started_at, session_id) < ($4, $5)) "
        "ORDER BY started_at DESC, session_id DESC LIMIT $6",
        tenant_id,
        strategy_id,
        state,
        before[0] if before else None,
        before[1] if before else "",
        limit,
    )


async def session_counts(conn: asyncpg.Connection, tenant_id: str, session_id: str) -> dict[str, int]:
    """Decisions by status, plus ``executed`` (ever submitted)."""
    rows = await conn.fetch(
        "SELECT status, count(*) AS n, count(submitted_at) AS submitted FROM execution.executions "
        "WHERE tenant_id = $1 AND session_id = $2 GROUP BY status",
        tenant_id,
        session_id,
    )
    counts = {row["status"]: int(row["n"]) for row in rows}
    counts["executed"] = sum(int(row["submitted"]) for row in rows)
    return counts


async def session_totals(conn: asyncpg.Connection, tenant_id: str, session_id: str) -> Row:
    row = await conn.fetchrow(
        "SELECT coalesce(sum(realized_profit), 0) AS realized_profit, coalesce(sum(gas_cost), 0) AS gas_cost, "
        "max(created_at) AS last_opportunity_at, max(submitted_at) AS last_execution_at, "
        "(array_agg(profit_token ORDER BY created_at DESC) FILTER (WHERE length(profit_token) > 0))[1] "
        "AS profit_token FROM execution.executions WHERE tenant_id = $1 AND session_id = $2",
        tenant_id,
        session_id,
    )
    assert row is not None
    return row


# --------------------------------------------------------------------------------------- executions


async def insert_execution(conn: asyncpg.Connection, values: Mapping[str, Any]) -> Row | None:
    """The new row, or None when the opportunity already has one (a redelivered decision)."""
    columns = ", ".join(values)
    placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    return await conn.fetchrow(
        f"INSERT INTO execution.executions ({columns}) VALUES ({placeholders}) "
        f"ON CONFLICT (tenant_id, opportunity_id) DO NOTHING RETURNING {EXECUTION_COLUMNS}",
        *values.values(),
    )


async def decision_context(
    conn: asyncpg.Connection, tenant_id: str, opportunity_id: str, strategy_id: str
) -> Row:
    """One round trip for the hot path: ``seen`` (the opportunity already has an execution: a
    redelivery) and the strategy's live session columns (NULL when it has none)."""
    row = await conn.fetchrow(
        "SELECT EXISTS (SELECT 1 FROM execution.executions WHERE tenant_id = $1 AND opportunity_id = $2) "
        f"AS seen, s.* FROM (SELECT) AS one LEFT JOIN LATERAL (SELECT {SESSION_COLUMNS} FROM "
        "execution.sessions WHERE tenant_id = $1 AND strategy_id = $3 "
        "AND state IN ('starting', 'running', 'paused', 'stopping')) AS s ON true",
        tenant_id,
        opportunity_id,
        strategy_id,
    )
    assert row is not None
    return row


async def execution_seen(conn: asyncpg.Connection, tenant_id: str, opportunity_id: str) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM execution.executions WHERE tenant_id = $1 AND opportunity_id = $2)",
            tenant_id,
            opportunity_id,
        )
    )


async def wallet_session_states(
    conn: asyncpg.Connection, tenant_id: str, wallet: str, *, lock: bool = False
) -> list[str]:
    """The states of the wallet's live sessions; ``lock`` holds them FOR SHARE, so a pause of one
    of them waits for this transaction (or it waits for the pause)."""
    rows = await conn.fetch(
        "SELECT state FROM execution.sessions WHERE tenant_id = $1 AND lower(wallet_address) = lower($2) "
        "AND state IN ('starting', 'running', 'paused', 'stopping')" + (" FOR SHARE" if lock else ""),
        tenant_id,
        wallet,
    )
    return [str(row["state"]) for row in rows]


async def insert_execution_while_running(
    conn: asyncpg.Connection, session_id: str, values: Mapping[str, Any]
) -> Row | None:
    """Insert while the session, locked FOR SHARE, is running (so a pause committed first wins);
    None when it is not running or the opportunity already has an execution."""
    placeholders = ", ".join(f"${i}" for i in range(3, len(values) + 3))
    return await conn.fetchrow(
        "WITH live AS (SELECT 1 FROM execution.sessions WHERE tenant_id = $1 AND session_id = $2 "
        "AND state = 'running' FOR SHARE) "
        f"INSERT INTO execution.executions ({', '.join(values)}) SELECT {placeholders} "
        "WHERE EXISTS (SELECT 1 FROM live) ON CONFLICT (tenant_id, opportunity_id) DO NOTHING "
        f"RETURNING {EXECUTION_COLUMNS}",
        values["tenant_id"],
        session_id,
        *values.values(),
    )


async def update_execution(
    conn: asyncpg.Connection, tenant_id: str, execution_id: str, changes: Mapping[str, Any]
) -> Row | None:
    """Apply ``changes`` while the execution is still in flight; None when it already is final
    (another replica or an earlier pass finished it)."""
    assignments = ", ".join(f"{column} = ${i}" for i, column in enumerate(changes, start=3))
    return await conn.fetchrow(
        f"UPDATE execution.executions SET {assignments} WHERE tenant_id = $1 AND execution_id = $2 "
        f"AND status IN ('signed', 'submitted') RETURNING {EXECUTION_COLUMNS}",
        tenant_id,
        execution_id,
        *changes.values(),
    )


async def get_execution(
    conn: asyncpg.Connection, tenant_id: str, execution_id: str, *, lock: bool = False
) -> Row | None:
    return await conn.fetchrow(
        f"SELECT {EXECUTION_COLUMNS} FROM execution.executions WHERE tenant_id = $1 AND execution_id = $2 "
        "AND status <> 'rejected'" + (" FOR UPDATE" if lock else ""),
        tenant_id,
        execution_id,
    )


async def in_flight_executions(conn: asyncpg.Connection, chain_id: int) -> list[Row]:
    return await conn.fetch(
        f"SELECT {EXECUTION_COLUMNS} FROM execution.executions WHERE chain_id = $1 "
        "AND status IN ('signed', 'submitted') AND cardinality(leg_tx_hashes) = 0 ORDER BY created_at",
        chain_id,
    )


async def insert_legs(conn: asyncpg.Connection, legs: Sequence[Mapping[str, Any]]) -> None:
    """A cross-chain execution's legs, in the transaction that records the execution."""
    for values in legs:
        placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
        await conn.execute(
            f"INSERT INTO execution.execution_legs ({', '.join(values)}) VALUES ({placeholders})",
            *values.values(),
        )


async def in_flight_legs(conn: asyncpg.Connection, chain_id: int) -> list[Row]:
    """In-flight legs on the chain, each with its execution's action kind."""
    columns = ", ".join(f"l.{c.strip()}" for c in LEG_COLUMNS.split(","))
    return await conn.fetch(
        f"SELECT {columns}, e.action_kind FROM execution.execution_legs l JOIN execution.executions e "
        "ON e.execution_id = l.execution_id WHERE l.chain_id = $1 AND l.status IN ('signed', 'submitted') "
        "ORDER BY l.created_at, l.leg_index",
        chain_id,
    )


async def legs_of(conn: asyncpg.Connection, tenant_id: str, execution_id: str) -> list[Row]:
    return await conn.fetch(
        f"SELECT {LEG_COLUMNS} FROM execution.execution_legs WHERE tenant_id = $1 AND execution_id = $2 "
        "ORDER BY leg_index",
        tenant_id,
        execution_id,
    )


async def update_leg(
    conn: asyncpg.Connection, tenant_id: str, execution_id: str, leg_index: int, changes: Mapping[str, Any]
) -> Row | None:
    """Apply ``changes`` while the leg is in flight; None when it already is final."""
    assignments = ", ".join(f"{column} = ${i}" for i, column in enumerate(changes, start=4))
    return await conn.fetchrow(
        f"UPDATE execution.execution_legs SET {assignments} WHERE tenant_id = $1 AND execution_id = $2 "
        f"AND leg_index = $3 AND status IN ('signed', 'submitted') RETURNING {LEG_COLUMNS}",
        tenant_id,
        execution_id,
        leg_index,
        *changes.values(),
    )


async def list_executions(
    conn: asyncpg.Connection,
    tenant_id: str,
    *,
    session_id: str,
    strategy_id: str,
    status: str | None,
    chain_id: int,
    start: datetime | None,
    end: datetime | None,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[Row]:
    return await conn.fetch(
        f"SELECT {EXECUTION_COLUMNS} FROM execution.executions WHERE tenant_id = $1 AND status <> 'rejected' "
        "AND ($2 = '' OR session_id = $2) AND ($3 = '' OR strategy_id = $3) "
        "AND ($4::text IS NULL OR status = $4) AND ($5 = 0 OR chain_id = $5) "
        "AND ($6::timestamptz IS NULL OR created_at >= $6) AND ($7::timestamptz IS NULL OR created_at < $7) "
        "AND ($8::timestamptz IS NULL OR (created_at, execution_id) < ($8, $9)) "
        "ORDER BY created_at DESC, execution_id DESC LIMIT $10",
        tenant_id,
        session_id,
        strategy_id,
        status,
        chain_id,
        start,
        end,
        before[0] if before else None,
        before[1] if before else "",
        limit,
    )


# ------------------------------------------------------------------------------------- kill switches


async def record_kill_switch(
    conn: asyncpg.Connection,
    *,
    tenant_id: str,
    strategy_id: str,
    engaged: bool,
    reason: str,
    event_id: str,
    changed_at: datetime,
) -> bool:
    """Store the switch unless a newer change is already known; True when this one applies."""
    row = await conn.fetchrow(
        "INSERT INTO execution.kill_switches AS k (tenant_id, strategy_id, engaged, reason, event_id, changed_at) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, strategy_id) DO UPDATE "
        "SET engaged = excluded.engaged, reason = excluded.reason, event_id = excluded.event_id, "
        "changed_at = excluded.changed_at "
        "WHERE k.changed_at <= excluded.changed_at AND k.event_id <> excluded.event_id RETURNING 1",
        tenant_id,
        strategy_id,
        engaged,
        reason,
        event_id,
        changed_at,
    )
    return row is not None


async def engaged_kill_switch(
    conn: asyncpg.Connection, tenant_id: str, strategy_id: str, platform_tenant: str
) -> str | None:
    """The reason of an engaged switch covering the strategy (tenant, strategy or global), if any."""
    reason: str | None = await conn.fetchval(
        "SELECT reason FROM execution.kill_switches WHERE engaged AND "
        "((tenant_id = $1 AND strategy_id IN ('', $2)) OR tenant_id = $3) LIMIT 1",
        tenant_id,
        strategy_id,
        platform_tenant,
    )
    return reason


# What DeleteTenant leaves of a tenant here (mevaas_core.erasure): wallets (with their key
# material), executors, sessions, rebalances, protected transactions, treasury readings go; executions, their
# legs and the treasury ledger are trade records (public on chain) kept for the trade retention period.
ERASURE = ErasurePlan(
    schema="execution",
    erase=(
        Erase("wallets"),
        # Without its data key a copy of the wallets (a backup) no longer opens either.
        Erase("tenant_data_keys"),
        Erase("executors"),
        Erase("executor_deployments"),
        Erase("treasury_holdings"),
        Erase("sessions"),
        Erase("rebalances"),
        Erase("protected_transactions"),
        Erase("kill_switches"),
        Erase("idempotency_keys"),
        Erase("outbox", "published_at IS NOT NULL"),
    ),
    keep={
        "executions": TRADE_RETENTION,
        "execution_legs": TRADE_RETENTION,
        "treasury_ledger": TRADE_RETENTION,
        "treasury_transfers": TRADE_RETENTION,
    },
)
