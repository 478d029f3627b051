"""Sign-in's SQL: credentials, enrolments, user sessions and OIDC providers. Each function runs
on a connection already in a transaction scoped by row-level security."""

from __future__ import annotations

from datetime import datetime

import asyncpg

Row = asyncpg.Record


async def find_user_by_email(conn: asyncpg.Connection, tenant_slug: str, email: str) -> Row | None:
    """A live user of an active tenant with this email (case-insensitive), row-locked with its
    credentials: concurrent attempts on one account count one after another."""
    return await conn.fetchrow(
        "SELECT u.user_id, u.tenant_id, u.email, u.roles, t.status, c.password_hash, c.totp_secret, "
        "c.totp_last_step, c.failed_attempts, c.locked_until FROM tenancy.users u "
        "JOIN tenancy.tenants t USING (tenant_id) LEFT JOIN tenancy.user_credentials c USING (user_id) "
        "WHERE t.slug = $1 AND lower(u.email) = lower($2) AND u.deleted_at IS NULL "
        "FOR UPDATE OF u",
        tenant_slug,
        email,
    )


async def record_failure(conn: asyncpg.Connection, user_id: str, lock_seconds: int) -> int:
    """One more failure in a row; returns the count. A user without credentials counts nothing."""
    failures = await conn.fetchval(
        "UPDATE tenancy.user_credentials SET failed_attempts = failed_attempts + 1, "
        "locked_until = CASE WHEN $2 > 0 THEN clock_timestamp() + make_interval(secs => $2) "
        "ELSE locked_until END, updated_at = now() WHERE user_id = $1 RETURNING failed_attempts",
        user_id,
        lock_seconds,
    )
    return int(failures or 0)


async def record_success(conn: asyncpg.Connection, user_id: str, totp_step: int) -> None:
    await conn.execute(
        "UPDATE tenancy.user_credentials SET failed_attempts = 0, locked_until = NULL, "
        "totp_last_step = $2, updated_at = now() WHERE user_id = $1",
        user_id,
        totp_step,
    )


async def upsert_credentials(
    conn: asyncpg.Connection,
    *,
    user_id: str,
    tenant_id: str,
    password_hash: str,
    totp_secret: str,
    totp_step: int,
) -> None:
    await conn.execute(
        "INSERT INTO tenancy.user_credentials (user_id, tenant_id, password_hash, totp_secret, totp_last_step) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id) DO UPDATE SET password_hash = EXCLUDED.password_hash, "
        "totp_secret = EXCLUDED.totp_secret, totp_last_step = EXCLUDED.totp_last_step, failed_attempts = 0, "
        "locked_until = NULL, updated_at = now()",
        user_id,
        tenant_id,
        password_hash,
        totp_secret,
        totp_step,
    )


# enrolments -----------------------------------------------------------------------------------


async def insert_enrolment(
    conn: asyncpg.Connection,
    *,
    enrolment_id: str,
    tenant_id: str,
    user_id: str,
    secret_hash: str,
    totp_secret: str,
    created_by: str,
    ttl_seconds: int,
) -> datetime:
    """A new enrolment; earlier unspent ones of the user are spent (only the newest link works)."""
    await conn.execute(
        "UPDATE tenancy.enrolments SET used_at = now() WHERE user_id = $1 AND used_at IS NULL", user_id
    )
    expires: datetime = await conn.fetchval(
        "INSERT INTO tenancy.enrolments (enrolment_id, tenant_id, user_id, secret_hash, totp_secret, created_by, "
        "expires_at) VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7)) RETURNING expires_at",
        enrolment_id,
        tenant_id,
        user_id,
        secret_hash,
        totp_secret,
        created_by,
        ttl_seconds,
    )
    return expires


async def live_enrolment(conn: asyncpg.Connection, enrolment_id: str) -> Row | None:
    """An unspent, unexpired enrolment of a live user, locked, with the user's email and tenant."""
    return await conn.fetchrow(
        "SELECT e.enrolment_id, e.tenant_id, e.user_id, e.secret_hash, e.totp_secret, u.email, t.slug, "
        "coalesce(nullif(b.display_name, ''), t.display_name) AS display_name FROM tenancy.enrolments e "
        "JOIN tenancy.users u USING (user_id) JOIN tenancy.tenants t ON t.tenant_id = e.tenant_id "
        "LEFT JOIN tenancy.branding b ON b.tenant_id = e.tenant_id "
        "WHERE e.enrolment_id = $1 AND e.used_at IS NULL AND e.expires_at > now() "
        "AND u.deleted_at IS NULL AND t.status = 'active' FOR UPDATE OF e",
        enrolment_id,
    )


async def spend_enrolment(conn: asyncpg.Connection, enrolment_id: str) -> None:
    await conn.execute("UPDATE tenancy.enrolments SET used_at = now() WHERE enrolment_id = $1", enrolment_id)


# sessions -------------------------------------------------------------------------------------


async def insert_session(
    conn: asyncpg.Connection,
    *,
    session_id: str,
    tenant_id: str,
    user_id: str,
    secret_hash: str,
    method: str,
    ttl_seconds: int,
) -> datetime:
    expires: datetime = await conn.fetchval(
        "INSERT INTO tenancy.user_sessions (session_id, tenant_id, user_id, secret_hash, method, expires_at) "
        "VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6)) RETURNING expires_at",
        session_id,
        tenant_id,
        user_id,
        secret_hash,
        method,
        ttl_seconds,
    )
    return expires


async def live_session(conn: asyncpg.Connection, session_id: str) -> Row | None:
    """A session that has not ended or expired, share-locked with its live user's roles and the
    tenant (an ending committed meanwhile is seen, or comes after the token issued here)."""
    return await conn.fetchrow(
        "SELECT s.session_id, s.tenant_id, s.user_id, s.secret_hash, s.expires_at, u.roles, t.status, t.tier, "
        "t.plan FROM tenancy.user_sessions s JOIN tenancy.users u USING (user_id) "
        "JOIN tenancy.tenants t ON t.tenant_id = s.tenant_id "
        "WHERE s.session_id = $1 AND s.ended_at IS NULL AND s.expires_at > now() AND u.deleted_at IS NULL "
        "FOR SHARE OF s, u, t",
        session_id,
    )


async def touch_session(conn: asyncpg.Connection, session_id: str) -> None:
    await conn.execute(
        "UPDATE tenancy.user_sessions SET last_used_at = now() WHERE session_id = $1", session_id
    )


async def get_session(conn: asyncpg.Connection, session_id: str) -> Row | None:
    return await conn.fetchrow(
        "SELECT session_id, tenant_id, user_id, secret_hash, ended_at FROM tenancy.user_sessions "
        "WHERE session_id = $1 FOR UPDATE",
        session_id,
    )


async def end_sessions(conn: asyncpg.Connection, *, session_id: str = "", user_id: str = "") -> list[str]:
    """End one session, or every open session of a user; returns the ids ended now."""
    rows = await conn.fetch(
        "UPDATE tenancy.user_sessions SET ended_at = now() WHERE ended_at IS NULL "
        "AND ((session_id = $1 AND $1 <> '') OR (user_id = $2 AND $2 <> '')) RETURNING session_id",
        session_id,
        user_id,
    )
    return [r["session_id"] for r in rows]


# OIDC providers -------------------------------------------------------------------------------

OIDC_COLUMNS = "tenant_id, issuer, client_id, client_secret, email_claim"


async def upsert_oidc_provider(
    conn: asyncpg.Connection,
    tenant_id: str,
    *,
    issuer: str,
    client_id: str,
    client_secret: str,
    email_claim: str,
) -> Row:
    row: Row | None = await conn.fetchrow(
        "INSERT INTO tenancy.oidc_providers (tenant_id, issuer, client_id, client_secret, email_claim) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id) DO UPDATE SET issuer = EXCLUDED.issuer, "
        "client_id = EXCLUDED.client_id, client_secret = EXCLUDED.client_secret, "
        f"email_claim = EXCLUDED.email_claim, updated_at = now() RETURNING {OIDC_COLUMNS}",
        tenant_id,
        issuer,
        client_id,
        client_secret,
        email_claim,
    )
    assert row is not None
    return row


async def delete_oidc_provider(conn: asyncpg.Connection, tenant_id: str) -> None:
    await conn.execute("DELETE FROM tenancy.oidc_providers WHERE tenant_id = $1", tenant_id)


async def get_oidc_provider(conn: asyncpg.Connection, tenant_id: str) -> Row | None:
    return await conn.fetchrow(
        f"SELECT {OIDC_COLUMNS} FROM tenancy.oidc_providers WHERE tenant_id = $1", tenant_id
    )


async def oidc_provider_by_slug(conn: asyncpg.Connection, tenant_slug: str) -> Row | None:
    """The provider of an active tenant, by its slug (platform scope: the caller has no token)."""
    return await conn.fetchrow(
        "SELECT o.tenant_id, o.issuer, o.client_id, o.client_secret, o.email_claim FROM tenancy.oidc_providers o "
        "JOIN tenancy.tenants t USING (tenant_id) WHERE t.slug = $1 AND t.status = 'active'",
        tenant_slug,
    )


async def find_user_in_tenant(conn: asyncpg.Connection, tenant_id: str, email: str) -> Row | None:
    return await conn.fetchrow(
        "SELECT user_id, tenant_id, email, roles FROM tenancy.users "
        "WHERE tenant_id = $1 AND lower(email) = lower($2) AND deleted_at IS NULL",
        tenant_id,
        email,
    )
