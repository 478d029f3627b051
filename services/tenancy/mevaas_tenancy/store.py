"""Tenancy's SQL. Every function takes a connection that is already inside a transaction with the
tenant (or platform scope) set, so row-level security applies to each statement."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_core.auth import Principal
from mevaas_core.db import platform_transaction, tenant_transaction
from mevaas_core.erasure import AUDIT_RETENTION, Erase, ErasurePlan, Scrub

Row = asyncpg.Record


class TenancyStore:
    """Transactions on tenancy's schema with the right row-level-security scope."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @asynccontextmanager
    async def tenant(self, tenant_id: str) -> AsyncIterator[asyncpg.Connection]:
        async with tenant_transaction(self.pool, tenant_id) as conn:
            yield conn

    @asynccontextmanager
    async def caller_scope(self, principal: Principal) -> AsyncIterator[asyncpg.Connection]:
        """Platform admins see every tenant's rows; anyone else only their own."""
        if principal.is_platform_admin:
            async with platform_transaction(self.pool) as conn:
                yield conn
        else:
            async with tenant_transaction(self.pool, principal.tenant_id) as conn:
                yield conn

    @asynccontextmanager
    async def platform(self) -> AsyncIterator[asyncpg.Connection]:
        async with platform_transaction(self.pool) as conn:
            yield conn


async def clock_epoch(conn: asyncpg.Connection) -> float:
    """The database's clock (seconds since the epoch): tokens and revocations share one clock."""
    return float(await conn.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8"))


async def clock_now(conn: asyncpg.Connection) -> datetime:
    now: datetime = await conn.fetchval("SELECT clock_timestamp()")
    return now


async def owner_ids(conn: asyncpg.Connection, tenant_id: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT user_id FROM tenancy.users WHERE tenant_id = $1 AND deleted_at IS NULL "
        "AND 'owner' = ANY(roles) ORDER BY user_id",
        tenant_id,
    )
    return [r["user_id"] for r in rows]


TENANT_COLUMNS = (
    "tenant_id, slug, display_name, contact_email, tier, isolation, status, onboarding_phase, plan, "
    "version, created_at, updated_at, deleted_at, suspended_reason"
)


async def insert_tenant(
    conn: asyncpg.Connection,
    *,
    tenant_id: str,
    slug: str,
    display_name: str,
    contact_email: str,
    tier: str,
    isolation: str,
    plan: bytes,
) -> Row | None:
    """The new tenant, or None when the slug is taken."""
    return await conn.fetchrow(
        f"INSERT INTO tenancy.tenants (tenant_id, slug, display_name, contact_email, tier, isolation, plan) "
        f"VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (slug) DO NOTHING RETURNING {TENANT_COLUMNS}",
        tenant_id,
        slug,
        display_name,
        contact_email,
        tier,
        isolation,
        plan,
    )


async def get_tenant(
    conn: asyncpg.Connection, tenant_id: str, *, for_update: bool = False, for_share: bool = False
) -> Row | None:
    lock = " FOR UPDATE" if for_update else " FOR SHARE" if for_share else ""
    return await conn.fetchrow(
        f"SELECT {TENANT_COLUMNS} FROM tenancy.tenants WHERE tenant_id = $1{lock}", tenant_id
    )


async def list_tenants(
    conn: asyncpg.Connection, *, after: str, limit: int, status: str | None, tier: str | None, exclude: str
) -> list[Row]:
    return await conn.fetch(
        f"SELECT {TENANT_COLUMNS} FROM tenancy.tenants "
        "WHERE tenant_id > $1 AND tenant_id <> $2 AND ($3::text IS NULL OR status = $3) "
        "AND ($4::text IS NULL OR tier = $4) ORDER BY tenant_id LIMIT $5",
        after,
        exclude,
        status,
        tier,
        limit,
    )


async def update_tenant(conn: asyncpg.Connection, tenant_id: str, changes: dict[str, object]) -> Row:
    """Apply column changes and bump the version (optimistic concurrency is checked by callers)."""
    assignments = ", ".join(f"{column} = ${i}" for i, column in enumerate(changes, start=2))
    separator = ", " if assignments else ""
    row = await conn.fetchrow(
        f"UPDATE tenancy.tenants SET {assignments}{separator}version = version + 1, updated_at = now() "
        f"WHERE tenant_id = $1 RETURNING {TENANT_COLUMNS}",
        tenant_id,
        *changes.values(),
    )
    assert row is not None, "callers lock the tenant row before updating it"
    return row


USER_COLUMNS = "user_id, tenant_id, email, display_name, roles, created_at, updated_at, deleted_at"


async def insert_user(
    conn: asyncpg.Connection,
    *,
    user_id: str,
    tenant_id: str,
    email: str,
    display_name: str,
    roles: Sequence[str],
) -> Row | None:
    """The new user, or None when the email is already a user of this tenant."""
    return await conn.fetchrow(
        f"INSERT INTO tenancy.users (user_id, tenant_id, email, display_name, roles) VALUES ($1, $2, $3, $4, $5) "
        f"ON CONFLICT DO NOTHING RETURNING {USER_COLUMNS}",
        user_id,
        tenant_id,
        email,
        display_name,
        list(roles),
    )


async def get_user(conn: asyncpg.Connection, user_id: str) -> Row | None:
    return await conn.fetchrow(
        f"SELECT {USER_COLUMNS} FROM tenancy.users WHERE user_id = $1 AND deleted_at IS NULL FOR UPDATE",
        user_id,
    )


async def list_users(conn: asyncpg.Connection, tenant_id: str, *, after: str, limit: int) -> list[Row]:
    return await conn.fetch(
        f"SELECT {USER_COLUMNS} FROM tenancy.users WHERE tenant_id = $1 AND deleted_at IS NULL AND user_id > $2 "
        "ORDER BY user_id LIMIT $3",
        tenant_id,
        after,
        limit,
    )


async def count_owners(conn: asyncpg.Connection, tenant_id: str) -> int:
    count = await conn.fetchval(
        "SELECT count(*) FROM tenancy.users WHERE tenant_id = $1 AND deleted_at IS NULL AND 'owner' = ANY(roles)",
        tenant_id,
    )
    return int(count)


async def set_user_roles(conn: asyncpg.Connection, user_id: str, roles: Sequence[str]) -> Row:
    row = await conn.fetchrow(
        f"UPDATE tenancy.users SET roles = $2, updated_at = now() WHERE user_id = $1 RETURNING {USER_COLUMNS}",
        user_id,
        list(roles),
    )
    assert row is not None
    return row


async def delete_user(conn: asyncpg.Connection, user_id: str) -> None:
    await conn.execute(
        "UPDATE tenancy.users SET deleted_at = now(), email = 'erased-' || user_id, display_name = '' "
        "WHERE user_id = $1",
        user_id,
    )
    # Their password hash and TOTP secret go; their links and sessions end.
    await conn.execute("DELETE FROM tenancy.user_credentials WHERE user_id = $1", user_id)
    await conn.execute("DELETE FROM tenancy.enrolments WHERE user_id = $1", user_id)
    await conn.execute(
        "UPDATE tenancy.user_sessions SET ended_at = coalesce(ended_at, now()) WHERE user_id = $1", user_id
    )


async def erase_tenant_personal_data(conn: asyncpg.Connection, tenant_id: str) -> tuple[int, int]:
    """GDPR erasure: users lose their personal fields, keys are revoked, branding goes.
    Audit records stay (legal retention) and only reference opaque ids."""
    users = await conn.fetchval(
        "WITH erased AS (UPDATE tenancy.users SET deleted_at = coalesce(deleted_at, now()), "
        "email = 'erased-' || user_id, display_name = '' WHERE tenant_id = $1 RETURNING 1) "
        "SELECT count(*) FROM erased",
        tenant_id,
    )
    keys = await conn.fetchval(
        "WITH revoked AS (UPDATE tenancy.api_keys SET revoked_at = now() "
        "WHERE tenant_id = $1 AND revoked_at IS NULL RETURNING 1) SELECT count(*) FROM revoked",
        tenant_id,
    )
    await conn.execute("DELETE FROM tenancy.branding WHERE tenant_id = $1", tenant_id)
    for table in ("user_credentials", "enrolments", "user_sessions", "oidc_providers"):
        await conn.execute(f"DELETE FROM tenancy.{table} WHERE tenant_id = $1", tenant_id)
    return int(users), int(keys)


API_KEY_COLUMNS = (
    "key_id, tenant_id, name, secret_hash, roles, user_id, created_by, created_at, expires_at, "
    "last_used_at, revoked_at"
)


async def insert_api_key(
    conn: asyncpg.Connection,
    *,
    key_id: str,
    tenant_id: str,
    name: str,
    secret_hash: str,
    roles: Sequence[str],
    user_id: str,
    created_by: str,
    expires_at: datetime | None,
) -> Row:
    row = await conn.fetchrow(
        f"INSERT INTO tenancy.api_keys (key_id, tenant_id, name, secret_hash, roles, user_id, created_by, expires_at) "
        f"VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {API_KEY_COLUMNS}",
        key_id,
        tenant_id,
        name,
        secret_hash,
        list(roles),
        user_id,
        created_by,
        expires_at,
    )
    assert row is not None
    return row


async def get_api_key(conn: asyncpg.Connection, key_id: str) -> Row | None:
    return await conn.fetchrow(f"SELECT {API_KEY_COLUMNS} FROM tenancy.api_keys WHERE key_id = $1", key_id)


async def list_api_keys(
    conn: asyncpg.Connection, tenant_id: str, *, after: str, limit: int, include_revoked: bool
) -> list[Row]:
    return await conn.fetch(
        f"SELECT {API_KEY_COLUMNS} FROM tenancy.api_keys WHERE tenant_id = $1 AND key_id > $2 "
        "AND ($3 OR revoked_at IS NULL) ORDER BY key_id LIMIT $4",
        tenant_id,
        after,
        include_revoked,
        limit,
    )


async def revoke_api_key(conn: asyncpg.Connection, key_id: str) -> Row:
    row = await conn.fetchrow(
        f"UPDATE tenancy.api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE key_id = $1 "
        f"RETURNING {API_KEY_COLUMNS}",
        key_id,
    )
    assert row is not None
    return row


async def revoke_descendant_keys(conn: asyncpg.Connection, key_id: str) -> list[str]:
    """Revoke every key minted (directly or through other minted keys) with a token of `key_id`:
    no credential outlives the one it came from. Returns the ids revoked now."""
    rows = await conn.fetch(
        "WITH RECURSIVE minted AS (SELECT key_id FROM tenancy.api_keys WHERE created_by = $1 "
        "UNION SELECT k.key_id FROM tenancy.api_keys k JOIN minted m ON k.created_by = m.key_id) "
        "UPDATE tenancy.api_keys SET revoked_at = now() "
        "WHERE key_id IN (SELECT key_id FROM minted) AND revoked_at IS NULL RETURNING key_id",
        key_id,
    )
    return sorted(r["key_id"] for r in rows)


async def lock_api_key(conn: asyncpg.Connection, key_id: str) -> Row | None:
    """The key, share-locked so that its revocation waits for (and then sees) what this
    transaction mints with it."""
    return await conn.fetchrow(
        f"SELECT {API_KEY_COLUMNS} FROM tenancy.api_keys WHERE key_id = $1 FOR SHARE", key_id
    )


async def live_user_roles(conn: asyncpg.Connection, user_id: str) -> list[str] | None:
    """The roles of a user that is not deleted, or None."""
    roles = await conn.fetchval(
        "SELECT roles FROM tenancy.users WHERE user_id = $1 AND deleted_at IS NULL FOR SHARE", user_id
    )
    return None if roles is None else list(roles)


async def touch_api_key(conn: asyncpg.Connection, key_id: str) -> None:
    await conn.execute("UPDATE tenancy.api_keys SET last_used_at = now() WHERE key_id = $1", key_id)


BRANDING_COLUMNS = "tenant_id, display_name, logo_url, primary_color, secondary_color, custom_domain"


async def get_branding(conn: asyncpg.Connection, tenant_id: str) -> Row | None:
    return await conn.fetchrow(
        f"SELECT {BRANDING_COLUMNS} FROM tenancy.branding WHERE tenant_id = $1", tenant_id
    )


async def find_portal(conn: asyncpg.Connection, *, slug: str = "", custom_domain: str = "") -> Row | None:
    """An active tenant's public portal face, by slug or by custom domain (platform scope)."""
    return await conn.fetchrow(
        "SELECT t.tenant_id, t.slug, coalesce(nullif(b.display_name, ''), t.display_name) AS display_name, "
        "coalesce(b.logo_url, '') AS logo_url, coalesce(b.primary_color, '') AS primary_color, "
        "coalesce(b.secondary_color, '') AS secondary_color, coalesce(b.custom_domain, '') AS custom_domain, "
        "t.onboarding_phase, EXISTS (SELECT 1 FROM tenancy.oidc_providers o WHERE o.tenant_id = t.tenant_id) "
        "AS oidc_enabled FROM tenancy.tenants t LEFT JOIN tenancy.branding b USING (tenant_id) "
        "WHERE t.status = 'active' AND ((t.slug = $1 AND $1 <> '') "
        "OR (lower(b.custom_domain) = lower($2) AND $2 <> ''))",
        slug,
        custom_domain,
    )


async def upsert_branding(
    conn: asyncpg.Connection,
    tenant_id: str,
    *,
    display_name: str,
    logo_url: str,
    primary_color: str,
    secondary_color: str,
    custom_domain: str | None,
) -> Row:
    row = await conn.fetchrow(
        "INSERT INTO tenancy.branding (tenant_id, display_name, logo_url, primary_color, secondary_color, custom_domain) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id) DO UPDATE SET display_name = EXCLUDED.display_name, "
        "logo_url = EXCLUDED.logo_url, primary_color = EXCLUDED.primary_color, "
        "secondary_color = EXCLUDED.secondary_color, custom_domain = EXCLUDED.custom_domain, updated_at = now() "
        f"RETURNING {BRANDING_COLUMNS}",
        tenant_id,
        display_name,
        logo_url,
        primary_color,
        secondary_color,
        custom_domain,
    )
    assert row is not None
    return row


async def insert_audit_record(conn: asyncpg.Connection, record: events_pb2.AuditRecord) -> None:
    """Keep one record of the trail; a redelivered one changes nothing."""
    await conn.execute(
        "INSERT INTO tenancy.audit_records (event_id, tenant_id, actor_kind, actor_id, actor_tenant_id, action, "
        "resource, outcome, details, idempotency_key, occurred_at, service, request_id, actor_roles) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11, $12, $13, $14) "
        "ON CONFLICT (event_id) DO NOTHING",
        record.event_id,
        record.tenant_id,
        events_pb2.ActorKind.Name(record.actor.kind),
        record.actor.id,
        record.actor.tenant_id,
        record.action,
        record.resource,
        events_pb2.AuditOutcome.Name(record.outcome),
        json.dumps(dict(record.details)),
        record.idempotency_key,
        record.occurred_at.ToDatetime(tzinfo=UTC),
        record.service,
        record.request_id,
        [common_pb2.Role.Name(r) for r in record.actor.roles],
    )


async def list_audit_records(
    conn: asyncpg.Connection,
    tenant_id: str,
    *,
    after: int,
    limit: int,
    start: datetime | None,
    end: datetime | None,
    actor_id: str,
    action_prefix: str,
    resource_prefix: str,
) -> list[Row]:
    return await conn.fetch(
        "SELECT record_id, event_id, tenant_id, actor_kind, actor_id, actor_tenant_id, action, resource, outcome, "
        "details, idempotency_key, occurred_at, service, request_id, actor_roles FROM tenancy.audit_records "
        "WHERE tenant_id = $1 AND record_id > $2 AND ($3::timestamptz IS NULL OR occurred_at >= $3) "
        "AND ($4::timestamptz IS NULL OR occurred_at < $4) AND ($5 = '' OR actor_id = $5) "
        "AND starts_with(action, $6) AND starts_with(resource, $7) ORDER BY record_id LIMIT $8",
        tenant_id,
        after,
        start,
        end,
        actor_id,
        action_prefix,
        resource_prefix,
        limit,
    )


# What a deleted tenant leaves here (mevaas_core.erasure, run after DeleteTenant's own erasure):
# ids stay so the audit trail still resolves, nothing personal or secret does.
ERASURE = ErasurePlan(
    schema="tenancy",
    erase=(
        Erase("branding"),
        Erase("idempotency_keys"),
        Erase("outbox", "published_at IS NOT NULL"),
        # A person's password hash and TOTP secret, their links and sessions, the SSO settings.
        Erase("user_credentials"),
        Erase("enrolments"),
        Erase("user_sessions"),
        Erase("oidc_providers"),
    ),
    scrub=(
        Scrub(
            "tenants",
            "contact_email = '', display_name = slug, deleted_at = coalesce(deleted_at, now())",
            "tombstone: id, slug (stays taken) and status (deleted), so the tenant stays refused",
        ),
        Scrub(
            "users",
            "email = 'erased-' || user_id, display_name = '', deleted_at = coalesce(deleted_at, now())",
            "pseudonymised: only the id stays, for the audit trail",
        ),
        Scrub(
            "api_keys",
            "secret_hash = '', name = '', revoked_at = coalesce(revoked_at, now())",
            "revoked, hash and name erased: only the id stays, for the audit trail",
        ),
    ),
    keep={"audit_records": AUDIT_RETENTION},
)
