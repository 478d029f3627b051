"""Roles, schemas and row-level security against a real PostgreSQL, proven with raw SQL as the
service's own app role: no tenant set -> no rows; tenant A never sees or writes B's rows; the app
role cannot switch RLS off by any route an owner or superuser would have."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from mevaas_core.db import (
    ServiceDsns,
    create_pool,
    platform_transaction,
    provision_service_database,
    rls_policy_sql,
    tenant_transaction,
)
from mevaas_core.migrations import apply_migrations

pytestmark = pytest.mark.integration

APP_PASSWORD = "app-pw-'quoted\"-ok"
OWNER_PASSWORD = "owner-pw"


def migration_sql(schema: str) -> str:
    return (
        f"CREATE TABLE {schema}.things (\n"
        "    tenant_id text NOT NULL, id bigserial PRIMARY KEY, name text NOT NULL,\n"
        "    UNIQUE (tenant_id, name));\n"
        + rls_policy_sql(f"{schema}.things")
        + f"CREATE TABLE {schema}.uuid_things (tenant_id uuid NOT NULL, name text NOT NULL);\n"
        + rls_policy_sql(f"{schema}.uuid_things", column_type="uuid")
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service(postgres_database: str, tmp_path_factory: pytest.TempPathFactory) -> ServiceDsns:
    name = f"svc_{uuid.uuid4().hex[:8]}"
    dsns = await provision_service_database(postgres_database, name, APP_PASSWORD, OWNER_PASSWORD)
    migrations = tmp_path_factory.mktemp("migrations")
    (migrations / "V001__things.sql").write_text(migration_sql(name))
    await apply_migrations(dsns.owner_dsn, dsns.schema, migrations)
    return dsns


TENANT_A, TENANT_B = "tenant-a", "tenant-b"
UUID_A = "0a0a0a0a-0000-0000-0000-000000000001"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def seeded(service: ServiceDsns) -> ServiceDsns:
    pool = await create_pool(service.app_dsn, platform_dsn=service.platform_dsn, max_size=2)
    try:
        async with platform_transaction(pool) as conn:
            await conn.executemany(
                "INSERT INTO things (tenant_id, name) VALUES ($1, $2)",
                [(TENANT_A, "a1"), (TENANT_A, "a2"), (TENANT_B, "b1")],
            )
            await conn.execute("INSERT INTO uuid_things VALUES ($1, 'u1')", uuid.UUID(UUID_A))
    finally:
        await pool.close()
    return service


@pytest_asyncio.fixture(loop_scope="session")
async def app_conn(seeded: ServiceDsns) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(seeded.app_dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def test_without_a_tenant_the_app_role_sees_no_rows(app_conn: asyncpg.Connection) -> None:
    assert await app_conn.fetchval("SELECT count(*) FROM things") == 0
    assert await app_conn.fetchval("SELECT count(*) FROM uuid_things") == 0  # and no cast error
    async with app_conn.transaction():  # a setting from an earlier transaction is gone too
        await app_conn.execute("SELECT set_config('app.tenant_id', $1, true)", TENANT_A)
    assert await app_conn.fetchval("SELECT count(*) FROM things") == 0


async def test_a_tenant_sees_and_writes_only_its_own_rows(seeded: ServiceDsns) -> None:
    # One connection: settings must not leak.
    pool = await create_pool(seeded.app_dsn, platform_dsn=seeded.platform_dsn, max_size=1)
    try:
        async with tenant_transaction(pool, TENANT_A) as conn:
            assert sorted(r["name"] for r in await conn.fetch("SELECT name FROM things")) == ["a1", "a2"]
            assert await conn.fetchval("SELECT count(*) FROM things WHERE tenant_id = $1", TENANT_B) == 0
            assert (
                await conn.execute("UPDATE things SET name = 'stolen' WHERE tenant_id = $1", TENANT_B)
                == "UPDATE 0"
            )
            assert await conn.execute("DELETE FROM things WHERE name = 'b1'") == "DELETE 0"
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            async with tenant_transaction(pool, TENANT_A) as conn:
                await conn.execute("INSERT INTO things (tenant_id, name) VALUES ($1, 'planted')", TENANT_B)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            async with tenant_transaction(pool, TENANT_A) as conn:
                await conn.execute("UPDATE things SET tenant_id = $1 WHERE name = 'a1'", TENANT_B)
        async with tenant_transaction(pool, TENANT_B, readonly=True) as conn:
            assert [r["name"] for r in await conn.fetch("SELECT name FROM things")] == ["b1"]
        async with tenant_transaction(pool, UUID_A) as conn:
            assert await conn.fetchval("SELECT count(*) FROM uuid_things") == 1
        async with pool.acquire() as conn:  # the same pooled connection, outside any helper
            assert await conn.fetchval("SELECT count(*) FROM things") == 0
        async with platform_transaction(pool) as conn:
            assert await conn.fetchval("SELECT count(*) FROM things") == 3
    finally:
        await pool.close()
    with pytest.raises(ValueError):
        tenant_transaction(pool, "")


async def test_the_app_role_cannot_bypass_row_level_security(
    app_conn: asyncpg.Connection, seeded: ServiceDsns
) -> None:
    role = await app_conn.fetchrow(
        "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user"
    )
    assert role is not None and not any(role.values())
    is_member = await app_conn.fetchval("SELECT pg_has_role(current_user, $1, 'MEMBER')", seeded.owner_role)
    assert is_member is False
    forbidden = [
        "ALTER TABLE things DISABLE ROW LEVEL SECURITY",
        "ALTER TABLE things NO FORCE ROW LEVEL SECURITY",
        "DROP POLICY tenant_isolation ON things",
        "CREATE POLICY sneaky ON things USING (true)",
        f"SET ROLE {seeded.owner_role}",
        "ALTER ROLE CURRENT_USER BYPASSRLS",
        "DROP TABLE things",
        "CREATE TABLE things_copy (x int)",
    ]
    for statement in forbidden:
        with pytest.raises(asyncpg.PostgresError):
            await app_conn.execute(statement)
    # Turning row_security off makes a policy-bound query fail rather than show everything.
    await app_conn.execute("SET row_security = off")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        await app_conn.fetchval("SELECT count(*) FROM things")


async def test_no_setting_gives_the_app_role_platform_scope(
    app_conn: asyncpg.Connection, seeded: ServiceDsns
) -> None:
    async with app_conn.transaction():
        await app_conn.execute("SELECT set_config('app.scope', 'platform', true)")
        assert await app_conn.fetchval("SELECT count(*) FROM things") == 0
        await app_conn.execute("SELECT set_config('app.tenant_id', $1, true)", TENANT_A)
        assert await app_conn.fetchval("SELECT count(*) FROM things WHERE tenant_id <> $1", TENANT_A) == 0
    is_member = await app_conn.fetchval(
        "SELECT pg_has_role(current_user, $1, 'MEMBER')", seeded.platform_role
    )
    assert is_member is False
    with pytest.raises(asyncpg.PostgresError):
        await app_conn.execute(f"SET ROLE {seeded.platform_role}")
    platform = await asyncpg.connect(seeded.platform_dsn)
    try:
        role = await platform.fetchrow(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        )
        assert role is not None and not any(role.values())
        assert await platform.fetchval("SELECT count(*) FROM things") == 3
    finally:
        await platform.close()


async def test_force_rls_binds_the_owner_too(seeded: ServiceDsns) -> None:
    conn = await asyncpg.connect(seeded.owner_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM things") == 0
        async with tenant_transaction(conn, TENANT_B) as tx:
            assert await tx.fetchval("SELECT count(*) FROM things") == 1
    finally:
        await conn.close()


async def test_provisioning_is_idempotent_and_concurrent_safe(postgres_database: str) -> None:
    name = f"svc_{uuid.uuid4().hex[:8]}"
    results = await asyncio.gather(
        *(provision_service_database(postgres_database, name, f"app{i}", "owner") for i in range(3))
    )
    assert {r.app_role for r in results} == {f"{name}_app"}
    final = await provision_service_database(postgres_database, name, "final-app", "owner")
    conn = await asyncpg.connect(final.app_dsn)  # the last password set wins
    try:
        assert await conn.fetchval("SELECT current_user") == f"{name}_app"
        assert await conn.fetchval("SHOW search_path") == name
    finally:
        await conn.close()
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(final.app_dsn.replace("final-app", "wrong"))
    with pytest.raises(ValueError):
        await provision_service_database(postgres_database, "Bad-Name", "a", "b")


async def test_services_cannot_read_each_others_schemas(seeded: ServiceDsns, postgres_database: str) -> None:
    other = await provision_service_database(postgres_database, f"svc_{uuid.uuid4().hex[:8]}", "x", "y")
    conn = await asyncpg.connect(other.app_dsn)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval(f"SELECT count(*) FROM {seeded.schema}.things")
    finally:
        await conn.close()


async def test_the_app_role_cannot_rewrite_migration_history(app_conn: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await app_conn.execute("DELETE FROM schema_migrations")


async def test_new_tables_and_sequences_are_granted_to_the_app_role(
    seeded: ServiceDsns, tmp_path: Path
) -> None:
    (tmp_path / "V001__things.sql").write_text(migration_sql(seeded.schema))
    (tmp_path / "V002__more.sql").write_text(
        f"CREATE TABLE {seeded.schema}.later (tenant_id text NOT NULL, id bigserial PRIMARY KEY);\n"
        + rls_policy_sql(f"{seeded.schema}.later")
    )
    await apply_migrations(seeded.owner_dsn, seeded.schema, tmp_path)
    pool = await create_pool(seeded.app_dsn, max_size=1)
    try:
        async with tenant_transaction(pool, TENANT_A) as conn:
            new_id = await conn.fetchval("INSERT INTO later (tenant_id) VALUES ($1) RETURNING id", TENANT_A)
            assert new_id >= 1
    finally:
        await pool.close()
