"""PostgreSQL access: pools, per-service roles and schemas, and tenant-scoped transactions.

Layout (ARCHITECTURE.md section 5): one database, one schema per service. For service ``svc``:

* schema ``svc``, owned by role ``svc_owner``;
* ``svc_owner`` (LOGIN) owns every table and runs the migrations (``mevaas_core.migrations``);
* ``svc_app`` (LOGIN, NOSUPERUSER, NOBYPASSRLS, not a member of ``svc_owner``) is what the service
  connects as. It may use the schema and, through default privileges of ``svc_owner``, read and
  write the rows of every table (and use every sequence) the owner creates, but never alter,
  drop or disable anything. Being neither superuser nor owner, it is subject to row-level security.

``provision_service_database(admin_dsn, service, app_password, owner_password)`` creates all of
that idempotently (run it before the migrations, e.g. in the migration Job or by ``mevaas up``).

Row-level security convention (every tenant table, in the service's migration)::

    ALTER TABLE svc.things ENABLE ROW LEVEL SECURITY;
    ALTER TABLE svc.things FORCE ROW LEVEL SECURITY;   -- the owner too: no accidental bypass
    CREATE POLICY tenant_isolation ON svc.things
        USING (tenant_id = current_setting('app.tenant_id', true)
               OR current_setting('app.scope', true) = 'platform');

(``rls_policy_sql("svc.things")`` prints exactly this; it also covers uuid ``tenant_id`` columns.)
``USING`` without ``WITH CHECK`` applies the same condition to written rows, so a tenant can
neither read nor write another tenant's rows. The settings are transaction-local and set only by:

* ``async with tenant_transaction(pool, tenant_id) as conn:`` — ``app.tenant_id`` for one
  tenant's work (every request on behalf of a tenant);
* ``async with platform_transaction(pool) as conn:`` — ``app.scope = 'platform'`` for
  platform-admin work and for consumers/relays that legitimately span tenants.

Outside these helpers neither setting is present, so a query returns no tenant rows at all: a
forgotten ``WHERE tenant_id = ...`` or a query run on a bare connection leaks nothing. (RLS here
guards against query bugs; the service code that chooses the scope is trusted.)

Handlers of NATS events make redeliveries harmless with unique keys
(``INSERT ... ON CONFLICT (tenant_id, event_id) DO NOTHING``), inside the same transaction as the
state change.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

__all__ = [
    "PLATFORM_SCOPE",
    "Connection",
    "ServiceDsns",
    "create_pool",
    "dsn_with",
    "platform_transaction",
    "provision_service_database",
    "rls_policy_sql",
    "tenant_transaction",
]

log = logging.getLogger("mevaas.db")

PLATFORM_SCOPE = "platform"
_SERVICE_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

# A pooled connection is a proxy that behaves as a Connection; the helpers type it as one.
Connection = asyncpg.Connection
Executor = asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy
IsolationLevel = Literal["read_committed", "repeatable_read", "serializable"]


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    application_name: str | None = None,
    command_timeout: float | None = 60.0,
    **kwargs: Any,
) -> asyncpg.Pool:
    """An asyncpg pool. Connections are reset on release by asyncpg (and our tenant settings are
    transaction-local anyway), so nothing leaks from one use of a connection to the next."""
    server_settings: dict[str, str] = dict(kwargs.pop("server_settings", None) or {})
    if application_name:
        server_settings.setdefault("application_name", application_name)
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        command_timeout=command_timeout,
        server_settings=server_settings or None,
        **kwargs,
    )
    assert pool is not None
    return pool


# ---------------------------------------------------------------------------------------- tenancy


@asynccontextmanager
async def _scoped_transaction(
    executor: Executor,
    settings: tuple[tuple[str, str], ...],
    *,
    readonly: bool,
    isolation: IsolationLevel,
) -> AsyncIterator[Connection]:
    if isinstance(executor, asyncpg.Pool):
        async with (
            executor.acquire() as pooled,
            _scoped_transaction(pooled, settings, readonly=readonly, isolation=isolation) as conn,
        ):
            yield conn
        return
    conn = cast(asyncpg.Connection, executor)
    async with conn.transaction(isolation=isolation, readonly=readonly):
        # One round trip; `true` = local to this transaction, gone at COMMIT/ROLLBACK.
        await conn.execute(
            "SELECT set_config($1, $2, true), set_config($3, $4, true)",
            settings[0][0],
            settings[0][1],
            settings[1][0],
            settings[1][1],
        )
        yield conn


def tenant_transaction(
    executor: Executor,
    tenant_id: str,
    *,
    readonly: bool = False,
    isolation: IsolationLevel = "read_committed",
) -> AbstractAsyncContextManager[Connection]:
    """``async with tenant_transaction(pool, tenant_id) as conn:`` — a transaction in which row-level
    security shows only ``tenant_id``'s rows (``executor`` may be a pool or a connection)."""
    if not tenant_id:
        raise ValueError("tenant_transaction needs a tenant_id")
    return _scoped_transaction(
        executor, (("app.tenant_id", tenant_id), ("app.scope", "")), readonly=readonly, isolation=isolation
    )


def platform_transaction(
    executor: Executor,
    *,
    readonly: bool = False,
    isolation: IsolationLevel = "read_committed",
) -> AbstractAsyncContextManager[Connection]:
    """``async with platform_transaction(pool) as conn:`` — a transaction across all tenants, for
    platform-admin operations and cross-tenant background work."""
    return _scoped_transaction(
        executor,
        (("app.tenant_id", ""), ("app.scope", PLATFORM_SCOPE)),
        readonly=readonly,
        isolation=isolation,
    )


def rls_policy_sql(
    table: str,
    *,
    column: str = "tenant_id",
    column_type: Literal["text", "uuid"] = "text",
    policy: str = "tenant_isolation",
) -> str:
    """The SQL that puts ``table`` (schema-qualified) under the tenant-isolation convention."""
    if column_type == "uuid":
        tenant = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"
    else:
        tenant = "current_setting('app.tenant_id', true)"
    return (
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;\n"
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY;\n"
        f"CREATE POLICY {policy} ON {table}\n"
        f"    USING ({column} = {tenant}\n"
        f"           OR current_setting('app.scope', true) = '{PLATFORM_SCOPE}');\n"
    )


# ----------------------------------------------------------------------------------- provisioning


@dataclass(frozen=True)
class ServiceDsns:
    """Where and as whom a service connects: ``app_dsn`` for the service, ``owner_dsn`` for migrations."""

    service: str
    schema: str
    owner_role: str
    app_role: str
    owner_dsn: str
    app_dsn: str


def dsn_with(
    dsn: str, *, user: str | None = None, password: str | None = None, database: str | None = None
) -> str:
    """``dsn`` with another user, password and/or database (host, port and options kept)."""
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError("expected a postgresql:// DSN")
    old_user = unquote(parts.username) if parts.username else None
    old_password = unquote(parts.password) if parts.password else None
    new_user = user if user is not None else old_user
    new_password = password if password is not None else (old_password if user is None else None)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    if new_user:
        credentials = quote(new_user, safe="")
        if new_password is not None:
            credentials += ":" + quote(new_password, safe="")
        netloc = f"{credentials}@{netloc}"
    path = "/" + quote(database, safe="") if database is not None else parts.path
    return urlunsplit((parts.scheme, netloc, path, parts.query, parts.fragment))


async def provision_service_database(
    admin_dsn: str, service: str, app_password: str, owner_password: str
) -> ServiceDsns:
    """Create (or bring up to date) the roles, schema and grants of ``service`` in the database of
    ``admin_dsn`` (a role allowed to create roles: superuser locally, the admin of a managed
    server in Kubernetes). Idempotent and safe to run concurrently; passwords are (re)set each run.
    """
    if not _SERVICE_RE.match(service):
        raise ValueError(f"service name {service!r} must match {_SERVICE_RE.pattern}")
    if not app_password or not owner_password:
        raise ValueError("both passwords are required")
    owner, app = f"{service}_owner", f"{service}_app"
    conn = await asyncpg.connect(admin_dsn)
    try:
        for attempt in range(_PROVISION_ATTEMPTS):
            try:
                await _provision(conn, service, owner, app, owner_password, app_password)
                break
            except (
                asyncpg.InternalServerError,
                asyncpg.UniqueViolationError,
                asyncpg.DuplicateObjectError,
            ) as exc:
                # Roles are cluster-wide but advisory locks are per database: a runner in another
                # database can still race us on the same role ("tuple concurrently updated").
                if attempt == _PROVISION_ATTEMPTS - 1:
                    raise
                log.info("provisioning %s raced another runner (%s); retrying", service, exc)
                await asyncio.sleep(0.05 * (attempt + 1))
    finally:
        await conn.close()
    return ServiceDsns(
        service=service,
        schema=service,
        owner_role=owner,
        app_role=app,
        owner_dsn=dsn_with(admin_dsn, user=owner, password=owner_password),
        app_dsn=dsn_with(admin_dsn, user=app, password=app_password),
    )


_PROVISION_ATTEMPTS = 5


async def _provision(
    conn: asyncpg.Connection, service: str, owner: str, app: str, owner_password: str, app_password: str
) -> None:
    """Everything in one transaction, serialised with other runners in this database."""
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"mevaas:provision:{service}"
        )
        for role, password in ((owner, owner_password), (app, app_password)):
            await _ensure_login_role(conn, role, password)
        database = await conn.fetchval("SELECT current_database()")
        await conn.execute(_quote("GRANT CONNECT ON DATABASE {} TO {}, {}", database, owner, app))
        await conn.execute(_quote("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}", service, owner))
        await conn.execute(_quote("ALTER SCHEMA {} OWNER TO {}", service, owner))
        await conn.execute(_quote("REVOKE ALL ON SCHEMA {} FROM PUBLIC", service))
        await conn.execute(_quote("GRANT USAGE ON SCHEMA {} TO {}", service, app))
        for statement in (
            "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} "
            "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app}",
            "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} "
            "GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {app}",
            "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} GRANT EXECUTE ON FUNCTIONS TO {app}",
        ):
            await conn.execute(statement.format(owner=_ident(owner), schema=_ident(service), app=_ident(app)))
        for role in (owner, app):
            await conn.execute(
                _quote("ALTER ROLE {} IN DATABASE {} SET search_path = {}", role, database, service)
            )


async def _ensure_login_role(conn: asyncpg.Connection, role: str, password: str) -> None:
    """CREATE ROLE if missing, then set its password and the attributes that keep it an ordinary,
    RLS-bound role (re-asserted on every run, so a hand-made change is undone)."""
    attributes = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION INHERIT"
    if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
        await conn.execute(_quote("CREATE ROLE {} ", role) + attributes)
    # The password goes through format(%L) on the server: quoted correctly whatever it contains.
    statement = await conn.fetchval(
        "SELECT format('ALTER ROLE %I WITH " + attributes + " PASSWORD %L', $1::text, $2::text)",
        role,
        password,
    )
    await conn.execute(statement)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote(template: str, *identifiers: str) -> str:
    return template.format(*(_ident(i) for i in identifiers))
