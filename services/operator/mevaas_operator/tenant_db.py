"""Per-tenant database logins for a dedicated tenant's workers, pinned to that tenant by row-level
security whatever the session sets.

A worker of service `svc` for tenant T connects as `svc_tenant_<digest of T>`, a login that
* is a member of `svc_tenant` only (NOLOGIN; itself a member of `mevaas_tenant_pinned`), which
  holds the table privileges `svc_app` has, granted table by table and only on tables that carry
  the pin below (a table a later migration adds is closed to tenant logins until the operator
  pins it at its next reconcile: fail closed, never open);
* is recorded in `mevaas_tenant_pin.logins` (role -> tenant), which only the admin can write.

Every row-level secured table with a `tenant_id` gets a RESTRICTIVE policy `tenant_pin` for
`mevaas_tenant_pinned`: `tenant_id = mevaas_tenant_pin.tenant()`, the tenant recorded for
`session_user` (which neither `set_config` nor `SET ROLE` changes). Restrictive policies are
ANDed with the service's own (`tenant_isolation` on `app.tenant_id`), so a pinned login that sets
`app.tenant_id` to another tenant (or `app.scope` to anything) sees and writes nothing; it is not
`svc_platform`, so `platform_access` never applies to it.

Passwords are derived (HMAC of a seed the platform holds, over the role name), so each reconcile
sets the same password and writes the same Secret without ever reading one back; changing the
seed rotates every tenant login at the next reconcile.

The admin login must be able to create roles and to act as each `svc_owner` (a superuser, or a
managed server's admin that was granted the owner roles): policies can only be created by a
table's owner.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from mevaas_core.db import dsn_with

log = logging.getLogger(__name__)

PIN_SCHEMA = "mevaas_tenant_pin"
PINNED_GROUP = "mevaas_tenant_pinned"
WORKER_SERVICES: tuple[str, ...] = ("strategy", "execution")
_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")


def login_role(service: str, tenant_id: str) -> str:
    # A digest: tenant ids are free text, role names are at most 63 bytes.
    return f"{service}_tenant_{hashlib.sha256(tenant_id.encode()).hexdigest()[:20]}"


def group_role(service: str) -> str:
    return f"{service}_tenant"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class TenantDatabase:
    """Provision and remove tenant logins on the platform database."""

    admin_dsn: str
    password_seed: bytes
    # The DSN workers connect to (host, port, database, options) without credentials; default:
    # the admin DSN's.
    worker_dsn: str = ""
    services: Sequence[str] = WORKER_SERVICES

    def password(self, role: str) -> str:
        digest = hmac.new(self.password_seed, f"mevaas-tenant-db:{role}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def dsn(self, service: str, tenant_id: str) -> str:
        role = login_role(service, tenant_id)
        return dsn_with(self.worker_dsn or self.admin_dsn, user=role, password=self.password(role))

    async def ensure(self, tenant_id: str) -> dict[str, str]:
        """The tenant's login per worker service (created or brought up to date, pins included),
        as the DSN its worker uses. Idempotent; serialised with other reconciles."""
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('mevaas:tenant-pin', 0))")
                await self._ensure_pin_schema(conn)
                for service in self.services:
                    await self._pin_service(conn, service)
                    await self._ensure_login(conn, service, tenant_id)
        finally:
            await conn.close()
        return {service: self.dsn(service, tenant_id) for service in self.services}

    async def drop(self, tenant_id: str) -> list[str]:
        """Remove the tenant's logins (the Tenant is gone, or no longer dedicated). Idempotent."""
        dropped = []
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('mevaas:tenant-pin', 0))")
                for service in self.services:
                    role = login_role(service, tenant_id)
                    if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
                        continue
                    # Its open sessions would keep acting as the tenant until they end.
                    await conn.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role
                    )
                    await conn.execute(f"DROP OWNED BY {_ident(role)}")
                    await conn.execute(f"DROP ROLE {_ident(role)}")
                    await conn.execute(f"DELETE FROM {PIN_SCHEMA}.logins WHERE role = $1", role)
                    dropped.append(role)
        finally:
            await conn.close()
        return dropped

    async def _ensure_pin_schema(self, conn: asyncpg.Connection) -> None:
        if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", PINNED_GROUP):
            await conn.execute(f"CREATE ROLE {PINNED_GROUP} NOLOGIN")
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {PIN_SCHEMA}")
        await conn.execute(f"REVOKE ALL ON SCHEMA {PIN_SCHEMA} FROM PUBLIC")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {PIN_SCHEMA}.logins (role name PRIMARY KEY, tenant_id text NOT NULL)"
        )
        await conn.execute(f"REVOKE ALL ON {PIN_SCHEMA}.logins FROM PUBLIC")
        # SECURITY DEFINER: pinned logins cannot read the table, only ask for their own tenant.
        await conn.execute(
            f"CREATE OR REPLACE FUNCTION {PIN_SCHEMA}.tenant() RETURNS text LANGUAGE sql STABLE "
            f"SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS "
            f"$$ SELECT tenant_id FROM {PIN_SCHEMA}.logins WHERE role = session_user $$"
        )
        await conn.execute(f"REVOKE ALL ON FUNCTION {PIN_SCHEMA}.tenant() FROM PUBLIC")
        await conn.execute(f"GRANT USAGE ON SCHEMA {PIN_SCHEMA} TO {PINNED_GROUP}")
        await conn.execute(f"GRANT EXECUTE ON FUNCTION {PIN_SCHEMA}.tenant() TO {PINNED_GROUP}")

    async def _pin_service(self, conn: asyncpg.Connection, service: str) -> None:
        """Pin every tenant table of the service's schema and grant its group what `svc_app` may
        do on the pinned ones (and on tables without row-level security, which hold no tenant's
        rows by the schema convention)."""
        group, app, owner = group_role(service), f"{service}_app", f"{service}_owner"
        if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", group):
            await conn.execute(f"CREATE ROLE {_ident(group)} NOLOGIN")
        await conn.execute(f"GRANT {PINNED_GROUP} TO {_ident(group)}")
        tables = await conn.fetch(
            "SELECT c.relname, c.relrowsecurity, "
            "EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' "
            "        AND NOT a.attisdropped) AS has_tenant, "
            "EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = 'tenant_pin') AS pinned "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY c.relname",
            service,
        )
        # The owner names the pin function in its policies (it cannot call it).
        await conn.execute(f"GRANT USAGE ON SCHEMA {PIN_SCHEMA} TO {_ident(owner)}")
        # Policies and grants are the table owner's to make; an error aborts the transaction.
        await conn.execute(f"SET LOCAL ROLE {_ident(owner)}")
        await conn.execute(f"GRANT USAGE ON SCHEMA {_ident(service)} TO {_ident(group)}")
        await conn.execute(
            f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {_ident(service)} TO {_ident(group)}"
        )
        for table in tables:
            name = f"{_ident(service)}.{_ident(table['relname'])}"
            if table["relrowsecurity"] and not table["has_tenant"]:
                log.warning("%s has row-level security but no tenant_id: closed to tenant logins", name)
                continue
            if table["relrowsecurity"] and not table["pinned"]:
                check = f"tenant_id::text = {PIN_SCHEMA}.tenant()"
                await conn.execute(
                    f"CREATE POLICY tenant_pin ON {name} AS RESTRICTIVE TO {PINNED_GROUP} "
                    f"USING ({check}) WITH CHECK ({check})"
                )
            allowed = [
                p
                for p in _PRIVILEGES
                if await conn.fetchval("SELECT has_table_privilege($1, $2, $3)", app, name, p)
            ]
            if allowed:
                await conn.execute(f"GRANT {', '.join(allowed)} ON {name} TO {_ident(group)}")
        await conn.execute("RESET ROLE")

    async def _ensure_login(self, conn: asyncpg.Connection, service: str, tenant_id: str) -> None:
        role = login_role(service, tenant_id)
        attributes = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION INHERIT"
        if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
            await conn.execute(f"CREATE ROLE {_ident(role)} {attributes}")
        statement = await conn.fetchval(
            "SELECT format('ALTER ROLE %I WITH " + attributes + " PASSWORD %L', $1::text, $2::text)",
            role,
            self.password(role),
        )
        await conn.execute(statement)
        await conn.execute(f"GRANT {_ident(group_role(service))} TO {_ident(role)}")
        database = await conn.fetchval("SELECT current_database()")
        await conn.execute(f"GRANT CONNECT ON DATABASE {_ident(database)} TO {_ident(role)}")
        await conn.execute(
            f"ALTER ROLE {_ident(role)} IN DATABASE {_ident(database)} SET search_path = {_ident(service)}"
        )
        recorded = await conn.fetchval(
            f"INSERT INTO {PIN_SCHEMA}.logins (role, tenant_id) VALUES ($1, $2) "
            "ON CONFLICT (role) DO UPDATE SET role = EXCLUDED.role RETURNING tenant_id",
            role,
            tenant_id,
        )
        if recorded != tenant_id:
            raise RuntimeError(f"database login {role} is recorded for another tenant")
