"""PostgreSQL access: pools, per-service roles and schemas, and tenant-scoped transactions.

Layout (ARCHITECTURE.md section 5): one database, one schema per service. For service ``svc``:

* schema ``svc``, owned by role ``svc_owner``;
* ``svc_owner`` (LOGIN) owns every table and runs the migrations (``mevaas_core.migrations``);
* ``svc_app`` (LOGIN, NOSUPERUSER, NOBYPASSRLS, not a member of ``svc_owner``) is what the service
  connects as for everything done on behalf of one tenant. It may use the schema and, through
  default privileges of ``svc_owner``, read and write the rows of every table (and use every
  sequence) the owner creates, but never alter, drop or disable anything. Being neither
  superuser nor owner, it is subject to row-level security, and no setting it can change widens
  what it sees beyond the tenant it names;
* ``svc_platform`` (LOGIN, NOBYPASSRLS, a member of neither) is a second, separate login with the
  same table privileges, used only for the service's few cross-tenant jobs (outbox relay,
  consumers spanning tenants, platform-admin calls). The policies let it see every row; nothing
  the tenant-scoped role can do (``set_config``, ``SET ROLE``) turns it into this role.

``provision_service_database(admin_dsn, service, app_password, owner_password, platform_password)``
creates all of that idempotently (run it before the migrations, e.g. in the migration Job or by
``mevaas up``).

Row-level security convention (every tenant table, in the service's migration)::

    ALTER TABLE svc.things ENABLE ROW LEVEL SECURITY;
    ALTER TABLE svc.things FORCE ROW LEVEL SECURITY;   -- the owner too: no accidental bypass
    CREATE POLICY tenant_isolation ON svc.things
        USING (tenant_id = current_setting('app.tenant_id', true));
    CREATE POLICY platform_access ON svc.things TO svc_platform USING (true);

(``rls_policy_sql("svc.things")`` prints exactly this; it also covers uuid ``tenant_id`` columns.)
``USING`` without ``WITH CHECK`` applies the same condition to written rows, so a tenant can
neither read nor write another tenant's rows. Scopes are chosen only by:

* ``async with tenant_transaction(pool, tenant_id) as conn:`` — ``app.tenant_id`` (transaction
  local) for one tenant's work (every request on behalf of a tenant), as ``svc_app``;
* ``async with platform_transaction(pool) as conn:`` — a transaction on the pool's platform-role
  partner (``create_pool(app_dsn, platform_dsn=...)``), for platform-admin work and for
  consumers/relays that legitimately span tenants. On a pool without a partner it runs on the
  pool itself, so a pool opened straight as ``svc_platform`` (a CLI's) works, and one opened as
  ``svc_app`` sees no tenant's rows at all.

Outside ``tenant_transaction`` no tenant is set, so a query as ``svc_app`` returns no tenant rows
at all: a forgotten ``WHERE tenant_id = ...`` or a query run on a bare connection leaks nothing.
(RLS here guards against query bugs; the service code that chooses the tenant is trusted.)

Handlers of NATS events make redeliveries harmless with unique keys
(``INSERT ... ON CONFLICT (tenant_id, event_id) DO NOTHING``), inside the same transaction as the
state change.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

__all__ = [
    "Connection",
    "ServiceDsns",
    "ServicePool",
    "create_pool",
    "dsn_with",
    "platform_transaction",
    "provision_service_database",
    "rls_policy_sql",
    "tenant_transaction",
]

log = logging.getLogger("mevaas.db")

_SERVICE_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

# A pooled connection is a proxy that behaves as a Connection; the helpers type it as one.
Connection = asyncpg.Connection
Executor = asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy
IsolationLevel = Literal["read_committed", "repeatable_read", "serializable"]


class ServicePool(asyncpg.Pool):
    """A pool of the tenant-scoped role that knows its platform-role partner (closed with it)."""

    platform: asyncpg.Pool | None = None

    async def close(self) -> None:
        await super().close()
        if self.platform is not None:
            await self.platform.close()

    def terminate(self) -> None:
        super().terminate()
        if self.platform is not None:
            self.platform.terminate()


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    application_name: str | None = None,
    command_timeout: float | None = 60.0,
    platform_dsn: str | None = None,
    platform_max_size: int | None = None,
    **kwargs: Any,
) -> asyncpg.Pool:
    """An asyncpg pool; with ``platform_dsn`` it also opens the platform role's pool (as large,
    unless ``platform_max_size`` says otherwise: consumers spanning tenants, such as analytics'
    ingest, do most of some services' work) that ``platform_transaction`` uses. Connections are reset on release by asyncpg (and our
    tenant settings are transaction-local anyway), so nothing leaks from one use to the next."""
    server_settings: dict[str, str] = dict(kwargs.pop("server_settings", None) or {})
    if application_name:
        server_settings.setdefault("application_name", application_name)
    options: dict[str, Any] = {
        "command_timeout": command_timeout,
        # A dead server fails a new connection in seconds, not at the client's deadline.
        "timeout": 5.0,
        "server_settings": server_settings or None,
        "max_queries": 50000,
        "max_inactive_connection_lifetime": 300.0,
        "loop": None,
        "connection_class": asyncpg.Connection,
        "record_class": asyncpg.Record,
        **kwargs,
    }
    pool = ServicePool(dsn, min_size=min_size, max_size=max_size, **options)
    await pool
    if platform_dsn:
        try:
            platform = ServicePool(
                platform_dsn, min_size=1, max_size=platform_max_size or max_size, **options
            )
            await platform
        except BaseException:
            await pool.close()
            raise
        pool.platform = platform
    return pool


# ---------------------------------------------------------------------------------------- tenancy


@asynccontextmanager
async def _scoped_transaction(
    executor: Executor,
    tenant_id: str,
    *,
    readonly: bool,
    isolation: IsolationLevel,
) -> AsyncIterator[Connection]:
    if isinstance(executor, asyncpg.Pool):
        async with (
            executor.acquire() as pooled,
            _scoped_transaction(pooled, tenant_id, readonly=readonly, isolation=isolation) as conn,
        ):
            yield conn
        return
    conn = cast(asyncpg.Connection, executor)
    async with conn.transaction(isolation=isolation, readonly=readonly):
        # `true` = local to this transaction, gone at COMMIT/ROLLBACK.
        await conn.execute("SELECT set_config('app.tenant_id', $1, true)", tenant_id)
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
    return _scoped_transaction(executor, tenant_id, readonly=readonly, isolation=isolation)


def platform_transaction(
    executor: Executor,
    *,
    readonly: bool = False,
    isolation: IsolationLevel = "read_committed",
) -> AbstractAsyncContextManager[Connection]:
    """``async with platform_transaction(pool) as conn:`` — a transaction across all tenants, for
    platform-admin operations and cross-tenant background work, as the platform role."""
    if isinstance(executor, ServicePool) and executor.platform is not None:
        executor = executor.platform
    return _scoped_transaction(executor, "", readonly=readonly, isolation=isolation)


def platform_role(schema: str) -> str:
    return f"{schema}_platform"


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
    schema = table.split(".", 1)[0]
    return (
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;\n"
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY;\n"
        f"CREATE POLICY {policy} ON {table}\n"
        f"    USING ({column} = {tenant});\n"
        f"CREATE POLICY platform_access ON {table} TO {platform_role(schema)} USING (true);\n"
    )


# ----------------------------------------------------------------------------------- provisioning


@dataclass(frozen=True)
class ServiceDsns:
    """Where and as whom a service connects: ``app_dsn`` (tenant-scoped) and ``platform_dsn``
    (cross-tenant jobs) for the service, ``owner_dsn`` for migrations."""

    service: str
    schema: str
    owner_role: str
    app_role: str
    owner_dsn: str
    app_dsn: str
    platform_role: str
    platform_dsn: str


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
    admin_dsn: str,
    service: str,
    app_password: str,
    owner_password: str,
    platform_password: str | None = None,
) -> ServiceDsns:
    """Create (or bring up to date) the roles, schema and grants of ``service`` in the database of
    ``admin_dsn`` (a role allowed to create roles: superuser locally, the admin of a managed
    server in Kubernetes). Idempotent and safe to run concurrently; passwords are (re)set each run
    (without ``platform_password`` a random one, returned in ``platform_dsn``).
    """
    if not _SERVICE_RE.match(service):
        raise ValueError(f"service name {service!r} must match {_SERVICE_RE.pattern}")
    if not app_password or not owner_password:
        raise ValueError("both passwords are required")
    if platform_password is None:
        platform_password = secrets.token_hex(16)
    owner, app, platform = f"{service}_owner", f"{service}_app", platform_role(service)
    conn = await asyncpg.connect(admin_dsn)
    try:
        for attempt in range(_PROVISION_ATTEMPTS):
            try:
                await _provision(
                    conn,
                    service,
                    owner,
                    {owner: owner_password, app: app_password, platform: platform_password},
                )
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
        platform_role=platform,
        platform_dsn=dsn_with(admin_dsn, user=platform, password=platform_password),
    )


_PROVISION_ATTEMPTS = 5


async def _provision(conn: asyncpg.Connection, service: str, owner: str, passwords: dict[str, str]) -> None:
    """Everything in one transaction, serialised with other runners in this database. Every role
    but the owner is a user of the schema with the same row privileges."""
    users = [role for role in passwords if role != owner]
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"mevaas:provision:{service}"
        )
        for role, password in passwords.items():
            await _ensure_login_role(conn, role, password)
        database = await conn.fetchval("SELECT current_database()")
        await conn.execute(_quote("GRANT CONNECT ON DATABASE {} TO {}", database, owner))
        await conn.execute(_quote("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}", service, owner))
        await conn.execute(_quote("ALTER SCHEMA {} OWNER TO {}", service, owner))
        await conn.execute(_quote("REVOKE ALL ON SCHEMA {} FROM PUBLIC", service))
        for user in users:
            await conn.execute(_quote("GRANT CONNECT ON DATABASE {} TO {}", database, user))
            await conn.execute(_quote("GRANT USAGE ON SCHEMA {} TO {}", service, user))
            for statement in (
                "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} "
                "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {user}",
                "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} "
                "GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {user}",
                "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} "
                "GRANT EXECUTE ON FUNCTIONS TO {user}",
            ):
                await conn.execute(
                    statement.format(owner=_ident(owner), schema=_ident(service), user=_ident(user))
                )
        for role in passwords:
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
