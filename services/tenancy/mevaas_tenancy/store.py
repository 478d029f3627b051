"""Tenancy's SQL. Every function takes a connection that is already inside a transaction with the
tenant (or platform scope) set, so row-level security applies to each statement."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

import asyncpg

Row = asyncpg.Record

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


async def get_tenant(conn: asyncpg.Connection, tenant_id: str, *, for_update: bool = False) -> Row | None:
    lock = " FOR UPDATE" if for_update else ""
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


async def touch_api_key(conn: asyncpg.Connection, key_id: str) -> None:
    await conn.execute("UPDATE tenancy.api_keys SET last_used_at = now() WHERE key_id = $1", key_id)


BRANDING_COLUMNS = "tenant_id, display_name, logo_url, primary_color, secondary_color, custom_domain"


async def get_branding(conn: asyncpg.Connection, tenant_id: str) -> Row | None:
    return await conn.fetchrow(
        f"SELECT {BRANDING_COLUMNS} FROM tenancy.branding WHERE tenant_id = $1", tenant_id
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


async def insert_audit_record(
    conn: asyncpg.Connection,
    *,
    event_id: str,
    tenant_id: str,
    actor_kind: str,
    actor_id: str,
    actor_tenant_id: str,
    action: str,
    resource: str,
    outcome: str,
    details: dict[str, str],
    idempotency_key: str,
) -> Row:
    row = await conn.fetchrow(
        "INSERT INTO tenancy.audit_records (event_id, tenant_id, actor_kind, actor_id, actor_tenant_id, action, "
        "resource, outcome, details, idempotency_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10) "
        "RETURNING record_id, occurred_at",
        event_id,
        tenant_id,
        actor_kind,
        actor_id,
        actor_tenant_id,
        action,
        resource,
        outcome,
        json.dumps(details),
        idempotency_key,
    )
    assert row is not None
    return row


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
        "details, idempotency_key, occurred_at FROM tenancy.audit_records "
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
