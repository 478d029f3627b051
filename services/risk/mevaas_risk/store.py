"""Risk's SQL. Every function runs on a connection inside a tenant or platform transaction
(mevaas_core.db), so row-level security applies to each statement."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import asyncpg

from mevaas_core.erasure import Erase, ErasurePlan

PLATFORM_SWITCH_TENANT = "_platform"

# ------------------------------------------------------------------------------------------ tenants


async def upsert_tenant(
    conn: asyncpg.Connection, *, tenant_id: str, status: str, plan: bytes, version: int
) -> bool:
    """Store a tenant snapshot unless a newer one is already held; True when stored."""
    result = await conn.execute(
        "INSERT INTO risk.tenants (tenant_id, status, plan, version) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (tenant_id) DO UPDATE SET status = EXCLUDED.status, plan = EXCLUDED.plan, "
        "version = EXCLUDED.version, updated_at = now() WHERE risk.tenants.version < EXCLUDED.version",
        tenant_id,
        status,
        plan,
        version,
    )
    return str(result).endswith(" 1")


async def get_tenant(conn: asyncpg.Connection, tenant_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM risk.tenants WHERE tenant_id = $1", tenant_id)


# ------------------------------------------------------------------------------------------- limits


async def get_limits(conn: asyncpg.Connection, tenant_id: str, strategy_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM risk.limits WHERE tenant_id = $1 AND strategy_id = $2", tenant_id, strategy_id
    )


async def put_limits(
    conn: asyncpg.Connection, *, tenant_id: str, strategy_id: str, limits: bytes, updated_by: str
) -> asyncpg.Record:
    row = await conn.fetchrow(
        "INSERT INTO risk.limits (tenant_id, strategy_id, limits, updated_by) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (tenant_id, strategy_id) DO UPDATE SET limits = EXCLUDED.limits, "
        "version = risk.limits.version + 1, updated_at = now(), updated_by = EXCLUDED.updated_by "
        "RETURNING *",
        tenant_id,
        strategy_id,
        limits,
        updated_by,
    )
    assert row is not None
    return row


# ------------------------------------------------------------------------------- decision context


async def lock_risk_state(conn: asyncpg.Connection, tenant_id: str) -> None:
    """Create-or-lock the tenant's risk-state row; held until the transaction ends. An upsert
    locks the row in one statement whether or not it existed."""
    await conn.execute(
        "INSERT INTO risk.risk_state (tenant_id) VALUES ($1) "
        "ON CONFLICT (tenant_id) DO UPDATE SET decisions = risk.risk_state.decisions",
        tenant_id,
    )


async def decision_context(
    conn: asyncpg.Connection,
    tenant_id: str,
    strategy_id: str,
    opportunity_id: str,
    today: date,
    *,
    lock: bool,
) -> asyncpg.Record:
    """One round trip (risk.decision_context, V002): take the tenant's risk-state lock when `lock`,
    then `previous` (the stored decision payload of a redelivered opportunity; nothing else is read
    then), limits, tenant status and plan, kill switches, and `aggregates`: open reservations and
    today's realised PnL grouped by strategy and token, as a JSON list of objects with `kind`
    ('reserved' or 'pnl'), strategy_id, chain_id, token, n and amount (a decimal string)."""
    row = await conn.fetchrow(
        "SELECT * FROM risk.decision_context($1, $2, $3, $4, $5, $6)",
        tenant_id,
        strategy_id,
        opportunity_id,
        PLATFORM_SWITCH_TENANT,
        today,
        lock,
    )
    assert row is not None
    return row


@dataclass(frozen=True, slots=True)
class Reservation:
    """The exposure an approved decision reserves."""

    reservation_id: str
    chain_id: int
    token: str
    amount: int
    expires_at: datetime


async def insert_decision(
    conn: asyncpg.Connection,
    *,
    decision_id: str,
    tenant_id: str,
    opportunity_id: str,
    strategy_id: str,
    approved: bool,
    reason_code: str,
    reason: str,
    payload: bytes,
    decided_at: datetime,
    reservation: Reservation | None,
) -> None:
    """The decision and, when approved, its reservation, in one statement."""
    await conn.execute(
        """
        WITH reserved AS (
            INSERT INTO risk.reservations (reservation_id, tenant_id, strategy_id, opportunity_id,
                                           chain_id, token, amount, created_at, expires_at)
            SELECT $8, $2, $4, $3, $11, $12, $13, $10, $14 WHERE $15
        )
        INSERT INTO risk.decisions (decision_id, tenant_id, opportunity_id, strategy_id, approved,
                                    reason_code, reason, reservation_id, payload, decided_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
        """,
        decision_id,
        tenant_id,
        opportunity_id,
        strategy_id,
        approved,
        reason_code,
        reason,
        reservation.reservation_id if reservation else "",
        payload,
        decided_at,
        reservation.chain_id if reservation else 0,
        reservation.token if reservation else "",
        Decimal(reservation.amount if reservation else 0),
        reservation.expires_at if reservation else decided_at,
        reservation is not None,
    )


# ---------------------------------------------------------------------------------------- release


async def release_reservation(
    conn: asyncpg.Connection,
    *,
    tenant_id: str,
    reservation_id: str,
    opportunity_id: str,
    status: str,
    execution_id: str,
) -> asyncpg.Record | None:
    """Release the reservation (by id, else by opportunity) once; None if already released/unknown."""
    return await conn.fetchrow(
        "UPDATE risk.reservations SET released_at = now(), release_status = $4, execution_id = $5 "
        "WHERE tenant_id = $1 AND released_at IS NULL "
        "AND (($2 <> '' AND reservation_id = $2) OR ($2 = '' AND $3 <> '' AND opportunity_id = $3)) "
        "RETURNING *",
        tenant_id,
        reservation_id,
        opportunity_id,
        status,
        execution_id,
    )


async def insert_pnl_entry(
    conn: asyncpg.Connection,
    *,
    tenant_id: str,
    execution_id: str,
    opportunity_id: str,
    strategy_id: str,
    chain_id: int,
    token: str,
    amount: int,
    status: str,
    day: date,
) -> bool:
    """Book one realised PnL entry; False when this execution was booked before."""
    result = await conn.execute(
        "INSERT INTO risk.pnl_entries (tenant_id, execution_id, opportunity_id, strategy_id, chain_id, token, "
        "amount, status, day) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
        "ON CONFLICT (tenant_id, execution_id) DO NOTHING",
        tenant_id,
        execution_id,
        opportunity_id,
        strategy_id,
        chain_id,
        token,
        Decimal(amount),
        status,
        day,
    )
    return str(result).endswith(" 1")


async def pnl_on_day(
    conn: asyncpg.Connection, tenant_id: str, day: date, chain_id: int, token: str, strategy_id: str = ""
) -> int:
    value = await conn.fetchval(
        "SELECT coalesce(sum(amount), 0) FROM risk.pnl_entries WHERE tenant_id = $1 AND day = $2 "
        "AND chain_id = $3 AND token = $4 AND ($5 = '' OR strategy_id = $5)",
        tenant_id,
        day,
        chain_id,
        token,
        strategy_id,
    )
    return int(value)


async def daily_pnl_series(
    conn: asyncpg.Connection, tenant_id: str, since: date, strategy_id: str
) -> list[asyncpg.Record]:
    """Daily realised PnL per token since `since`, oldest first (days with booked results only)."""
    return await conn.fetch(
        "SELECT chain_id, token, day, sum(amount) AS pnl FROM risk.pnl_entries "
        "WHERE tenant_id = $1 AND day >= $2 AND ($3 = '' OR strategy_id = $3) "
        "GROUP BY chain_id, token, day ORDER BY chain_id, token, day",
        tenant_id,
        since,
        strategy_id,
    )


# --------------------------------------------------------------------------------------- exposure


async def exposure_rows(
    conn: asyncpg.Connection, tenant_id: str, today: date, chain_id: int, strategy_id: str
) -> list[asyncpg.Record]:
    """Per token: reserved amount and count of open reservations, PnL today and in total."""
    return await conn.fetch(
        """
        WITH open AS (
            SELECT chain_id, token, sum(amount) AS reserved, count(*) AS n
              FROM risk.reservations
             WHERE tenant_id = $1 AND released_at IS NULL AND expires_at > now()
               AND ($3 = 0 OR chain_id = $3) AND ($4 = '' OR strategy_id = $4)
             GROUP BY chain_id, token
        ), pnl AS (
            SELECT chain_id, token, sum(amount) FILTER (WHERE day = $2) AS today, sum(amount) AS total
              FROM risk.pnl_entries
             WHERE tenant_id = $1 AND ($3 = 0 OR chain_id = $3) AND ($4 = '' OR strategy_id = $4)
             GROUP BY chain_id, token
        )
        SELECT coalesce(open.chain_id, pnl.chain_id) AS chain_id, coalesce(open.token, pnl.token) AS token,
               coalesce(open.reserved, 0) AS reserved, coalesce(open.n, 0) AS n,
               coalesce(pnl.today, 0) AS pnl_today, coalesce(pnl.total, 0) AS pnl_total
          FROM open FULL OUTER JOIN pnl ON open.chain_id = pnl.chain_id AND open.token = pnl.token
         ORDER BY 1, 2
        """,
        tenant_id,
        today,
        chain_id,
        strategy_id,
    )


# ------------------------------------------------------------------------------------ kill switch


async def get_kill_switch(
    conn: asyncpg.Connection, tenant_id: str, strategy_id: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM risk.kill_switches WHERE tenant_id = $1 AND strategy_id = $2", tenant_id, strategy_id
    )


async def put_kill_switch(
    conn: asyncpg.Connection, *, tenant_id: str, strategy_id: str, engaged: bool, reason: str, changed_by: str
) -> asyncpg.Record:
    row = await conn.fetchrow(
        "INSERT INTO risk.kill_switches (tenant_id, strategy_id, engaged, reason, changed_by) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, strategy_id) DO UPDATE SET "
        "engaged = EXCLUDED.engaged, reason = EXCLUDED.reason, changed_by = EXCLUDED.changed_by, "
        "changed_at = now() RETURNING *",
        tenant_id,
        strategy_id,
        engaged,
        reason,
        changed_by,
    )
    assert row is not None
    return row


# ---------------------------------------------------------------------------------------- breaches


async def insert_breach(
    conn: asyncpg.Connection,
    *,
    breach_id: str,
    tenant_id: str,
    strategy_id: str,
    kind: str,
    dedupe_key: str,
    limit_value: str,
    observed_value: str,
    denomination: bytes,
    action: str,
    message: str,
    execution_id: str,
    opportunity_id: str,
    occurred_at: datetime,
) -> bool:
    """Record a breach unless one with the same dedupe key exists; True when recorded."""
    result = await conn.execute(
        "INSERT INTO risk.breaches (breach_id, tenant_id, strategy_id, kind, dedupe_key, limit_value, "
        "observed_value, denomination, action, message, execution_id, opportunity_id, occurred_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) "
        "ON CONFLICT (tenant_id, dedupe_key) DO NOTHING",
        breach_id,
        tenant_id,
        strategy_id,
        kind,
        dedupe_key,
        limit_value,
        observed_value,
        denomination,
        action,
        message,
        execution_id,
        opportunity_id,
        occurred_at,
    )
    return str(result).endswith(" 1")


async def list_breaches(
    conn: asyncpg.Connection,
    *,
    tenant_id: str,
    strategy_id: str,
    kind: str,
    start: datetime | None,
    end: datetime | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Newest first, keyset-paginated on (occurred_at, breach_id)."""
    return await conn.fetch(
        "SELECT * FROM risk.breaches WHERE tenant_id = $1 AND ($2 = '' OR strategy_id = $2) "
        "AND ($3 = '' OR kind = $3) AND ($4::timestamptz IS NULL OR occurred_at >= $4) "
        "AND ($5::timestamptz IS NULL OR occurred_at < $5) "
        "AND ($6::timestamptz IS NULL OR (occurred_at, breach_id) < ($6, $7)) "
        "ORDER BY occurred_at DESC, breach_id DESC LIMIT $8",
        tenant_id,
        strategy_id,
        kind,
        start,
        end,
        after[0] if after else None,
        after[1] if after else "",
        limit,
    )


# What DeleteTenant leaves of a tenant here (mevaas_core.erasure): limits, state and history go
# (analytics keeps the trade records the retention policy requires); the snapshot is a tombstone.
ERASURE = ErasurePlan(
    schema="risk",
    erase=(
        Erase("limits"),
        Erase("risk_state"),
        Erase("reservations"),
        Erase("decisions"),
        Erase("pnl_entries"),
        Erase("kill_switches"),
        Erase("breaches"),
        Erase("idempotency_keys"),
        Erase("outbox", "published_at IS NOT NULL"),
    ),
    keep={
        "tenants": "tombstone: the tenant's status (deleted) and plan, so it stays refused; no personal data"
    },
)
