"""The migration runner against a real PostgreSQL: applies once, idempotent, refuses an edited
migration or one inserted below the history, rolls a failing one back whole, and concurrent
runners apply each migration exactly once."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
import pytest

from mevaas_core.db import ServiceDsns, provision_service_database
from mevaas_core.migrations import (
    MigrationChecksumError,
    MigrationError,
    MigrationOrderError,
    apply_migrations,
)

pytestmark = pytest.mark.integration


async def provision(admin_dsn: str) -> ServiceDsns:
    return await provision_service_database(admin_dsn, f"mig_{uuid.uuid4().hex[:8]}", "app", "owner")


def write(directory: Path, name: str, sql: str) -> None:
    (directory / name).write_text(sql)


async def history(dsns: ServiceDsns) -> list[tuple[int, str]]:
    conn = await asyncpg.connect(dsns.owner_dsn)
    try:
        rows = await conn.fetch(
            f"SELECT version, checksum FROM {dsns.schema}.schema_migrations ORDER BY version"
        )
        return [(r["version"], r["checksum"]) for r in rows]
    finally:
        await conn.close()


async def test_applies_once_and_is_idempotent(postgres_database: str, tmp_path: Path) -> None:
    dsns = await provision(postgres_database)
    write(tmp_path, "V001__create.sql", "CREATE TABLE widgets (id int PRIMARY KEY);")
    write(tmp_path, "V002__seed.sql", "INSERT INTO widgets VALUES (1); INSERT INTO widgets VALUES (2);")
    applied = await apply_migrations(dsns.owner_dsn, dsns.schema, tmp_path)
    assert [m.version for m in applied] == [1, 2]
    assert await apply_migrations(dsns.owner_dsn, dsns.schema, tmp_path) == []
    rows = await history(dsns)
    assert [v for v, _ in rows] == [1, 2] and all(len(c) == 64 for _, c in rows)

    write(tmp_path, "V003__more.sql", "INSERT INTO widgets VALUES (3);")
    assert [m.version for m in await apply_migrations(dsns.owner_dsn, dsns.schema, tmp_path)] == [3]
    conn = await asyncpg.connect(dsns.owner_dsn)
    try:
        assert await conn.fetchval(f"SELECT count(*) FROM {dsns.schema}.widgets") == 3
        owner = await conn.fetchval("SELECT tableowner FROM pg_tables WHERE tablename = 'widgets'")
        assert owner == dsns.owner_role
    finally:
        await conn.close()


async def test_refuses_an_edited_migration(postgres_database: str, tmp_path: Path) -> None:
    dsns = await provision(postgres_database)
    write(tmp_path, "V001__create.sql", "CREATE TABLE t (id int);")
    await apply_migrations(dsns.owner_dsn, dsns.schema, tmp_path)
    write(tmp_path, "V001__create.sql", "CREATE TABLE t (id bigint);")
    write(tmp_path, "V002__next.sql", "CREATE TABLE u (id int);")
    with pytest.raises(MigrationChecksumError, match=r"V001__create\.sql changed"):
        await apply_migrations(dsns.owner_dsn, dsns.schema, tmp_path)
    assert [v for v, _ in await history(dsns)] == [1]  # V002 was not applied either


async def test_refuses_a_version_below_the_history(postgres_database: str, tmp_path: Path) -> None:
    dsns = await provision(postgres_database)
    write(tmp_path, "V002__create.sql", "CREATE TABLE t (id int);")
    await apply_migrations(dsns.owner_dsn, dsns.schema, tmp_path)
    write(tmp_path, "V001__late.sql", "CREATE TABLE late (id int);")
    with pytest.raises(MigrationOrderError):
        await apply_migrations(dsns.owner_dsn, dsns.schema, tmp_path)


async def test_a_failing_migration_leaves_nothing_behind(postgres_database: str, tmp_path: Path) -> None:
    dsns = await provision(postgres_database)
    write(tmp_path, "V001__ok.sql", "CREATE TABLE t (id int);")
    write(tmp_path, "V002__broken.sql", "CREATE TABLE half (id int); SELECT * FROM no_such_table;")
    with pytest.raises(MigrationError, match=r"V002__broken\.sql failed"):
        await apply_migrations(dsns.owner_dsn, dsns.schema, tmp_path)
    assert [v for v, _ in await history(dsns)] == [1]
    conn = await asyncpg.connect(dsns.owner_dsn)
    try:
        assert await conn.fetchval("SELECT to_regclass($1)", f"{dsns.schema}.half") is None
    finally:
        await conn.close()
    write(tmp_path, "V002__broken.sql", "CREATE TABLE half (id int);")  # fixed before it ever applied
    assert [m.version for m in await apply_migrations(dsns.owner_dsn, dsns.schema, tmp_path)] == [2]


async def test_concurrent_runners_apply_each_migration_exactly_once(
    postgres_database: str, tmp_path: Path
) -> None:
    dsns = await provision(postgres_database)
    write(tmp_path, "V001__slow.sql", "SELECT pg_sleep(0.3); CREATE TABLE counter (n int);")
    write(tmp_path, "V002__insert.sql", "INSERT INTO counter VALUES (1);")  # twice would show as 2 rows
    results = await asyncio.gather(
        *(apply_migrations(dsns.owner_dsn, dsns.schema, tmp_path) for _ in range(4))
    )
    assert sorted(m.version for run in results for m in run) == [1, 2]
    conn = await asyncpg.connect(dsns.owner_dsn)
    try:
        assert await conn.fetchval(f"SELECT count(*) FROM {dsns.schema}.counter") == 1
    finally:
        await conn.close()


async def test_runs_only_as_the_schema_owner(postgres_database: str, tmp_path: Path) -> None:
    dsns = await provision(postgres_database)
    write(tmp_path, "V001__t.sql", "CREATE TABLE t (id int);")
    with pytest.raises(MigrationError, match="must run as its owner"):
        await apply_migrations(postgres_database, dsns.schema, tmp_path)  # superuser
    applied = await apply_migrations(postgres_database, dsns.schema, tmp_path, role=dsns.owner_role)
    assert [m.version for m in applied] == [1]
    with pytest.raises(MigrationError, match="does not exist"):
        await apply_migrations(dsns.owner_dsn, "no_such_schema", tmp_path)
