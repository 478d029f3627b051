"""A small versioned SQL migration runner, one history per service schema.

Files: ``<service package>/migrations/V<version>__<description>.sql`` (``V001__tenants.sql``,
``V002__add_branding.sql``; the version is an integer, zero-padding optional and ignored). Each
file is plain SQL, may hold several statements, and is applied in its own transaction together
with its row in ``<schema>.schema_migrations`` (version, description, sha256 checksum, when, how
long), so a failing migration leaves nothing behind. Statements that cannot run inside a
transaction (``CREATE INDEX CONCURRENTLY``) are not supported.

Rules the runner enforces:

* an applied migration is never edited: a changed checksum stops the run before anything is
  applied (``MigrationChecksumError``); add a new version instead;
* versions are applied in order and never inserted below the last applied one
  (``MigrationOrderError``), so every environment has the same history;
* a file whose name does not follow the pattern is an error, not silently skipped;
* migrations run as the schema's owner role (``<service>_owner``, see ``mevaas_core.db``), so the
  tables belong to it and the app role gets its default privileges; running as anyone else is an
  error, unless ``role=`` names the owner to ``SET ROLE`` to;
* concurrent runners (a Kubernetes Job and a developer's ``mevaas up``, or two replicas) are
  serialised by a Postgres advisory lock per schema; the second one waits, then finds nothing
  to do. Re-running is always safe (idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from dataclasses import dataclass
from importlib.resources import as_file, files
from pathlib import Path

import asyncpg

__all__ = [
    "Migration",
    "MigrationChecksumError",
    "MigrationError",
    "MigrationOrderError",
    "apply_migrations",
    "load_migrations",
    "package_migrations_dir",
]

log = logging.getLogger("mevaas.migrations")

_FILE_RE = re.compile(r"^V(\d+)__([A-Za-z0-9_\-]+)\.sql$")


class MigrationError(Exception):
    """The migrations cannot be applied as they are."""


class MigrationChecksumError(MigrationError):
    """An applied migration's file has changed since it was applied."""


class MigrationOrderError(MigrationError):
    """A pending migration's version is below the last applied one."""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    filename: str
    sql: str
    checksum: str


def _checksum(sql: str) -> str:
    # Line endings normalised, so a checkout with CRLF does not look like an edit.
    return hashlib.sha256(sql.replace("\r\n", "\n").encode()).hexdigest()


def load_migrations(directory: Path | str) -> list[Migration]:
    """The migrations in ``directory``, ordered by version."""
    directory = Path(directory)
    if not directory.is_dir():
        raise MigrationError(f"no migrations directory at {directory}")
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql":
            continue
        match = _FILE_RE.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named V<version>__<description>.sql")
        version = int(match.group(1))
        if version in migrations:
            raise MigrationError(
                f"version {version} appears twice: {migrations[version].filename} and {path.name}"
            )
        sql = path.read_text(encoding="utf-8")
        migrations[version] = Migration(
            version, match.group(2).replace("_", " "), path.name, sql, _checksum(sql)
        )
    return [migrations[v] for v in sorted(migrations)]


def package_migrations_dir(package: str) -> Path:
    """The ``migrations`` folder shipped inside an installed service package (e.g. ``mevaas_tenancy``)."""
    with as_file(files(package) / "migrations") as path:
        return Path(path)


async def apply_migrations(
    owner_dsn: str,
    schema: str,
    migrations_dir: Path | str,
    *,
    role: str | None = None,
    lock_timeout: float = 300.0,
) -> list[Migration]:
    """Apply the pending migrations of ``migrations_dir`` to ``schema``; returns those applied now."""
    migrations = load_migrations(migrations_dir)
    conn = await asyncpg.connect(owner_dsn)
    try:
        if role:
            await conn.execute(f"SET ROLE {_ident(role)}")
        await _check_owner(conn, schema)
        await conn.execute(f"SET search_path TO {_ident(schema)}")
        await _lock(conn, schema, lock_timeout)
        try:
            return await _apply(conn, schema, migrations)
        finally:
            # Closing the connection releases it too; this only matters if unlocking fails on a dead one.
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", _lock_key(schema))
    finally:
        await conn.close()


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lock_key(schema: str) -> str:
    return f"mevaas:migrations:{schema}"


async def _check_owner(conn: asyncpg.Connection, schema: str) -> None:
    row = await conn.fetchrow(
        "SELECT n.nspowner::regrole::text AS owner, current_user AS me "
        "FROM pg_namespace n WHERE n.nspname = $1",
        schema,
    )
    if row is None:
        raise MigrationError(f"schema {schema!r} does not exist: provision the service's database first")
    if row["owner"] != row["me"]:
        raise MigrationError(
            f"migrations of {schema!r} must run as its owner {row['owner']!r}, not {row['me']!r} "
            "(use the owner DSN, or role=)"
        )


async def _lock(conn: asyncpg.Connection, schema: str, within: float) -> None:
    deadline = time.monotonic() + within
    announced = False
    while not await conn.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", _lock_key(schema)):
        if time.monotonic() > deadline:
            raise MigrationError(f"another migration runner held the lock on {schema!r} for over {within}s")
        if not announced:
            log.info("waiting for another migration runner on schema %s", schema)
            announced = True
        await asyncio.sleep(0.1)


async def _apply(conn: asyncpg.Connection, schema: str, migrations: list[Migration]) -> list[Migration]:
    table = f"{_ident(schema)}.schema_migrations"
    created = await conn.fetchval("SELECT to_regclass($1) IS NULL", f"{schema}.schema_migrations")
    if created:
        await conn.execute(
            f"CREATE TABLE {table} ("
            "version integer PRIMARY KEY, description text NOT NULL, checksum text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now(), execution_ms integer NOT NULL)"
        )
        # Only the owner may touch the history, whatever default privileges the schema grants.
        grantees = await conn.fetch(
            "SELECT DISTINCT grantee FROM information_schema.role_table_grants "
            "WHERE table_schema = $1 AND table_name = 'schema_migrations' AND grantee <> current_user",
            schema,
        )
        for grantee in grantees:
            await conn.execute(f"REVOKE ALL ON {table} FROM {_ident(grantee['grantee'])}")
    applied = {
        r["version"]: r for r in await conn.fetch(f"SELECT version, checksum, description FROM {table}")
    }

    by_version = {m.version: m for m in migrations}
    for version, row in sorted(applied.items()):
        migration = by_version.get(version)
        if migration is None:
            log.warning(
                "schema %s: applied migration V%s (%s) has no file here", schema, version, row["description"]
            )
        elif migration.checksum != row["checksum"]:
            raise MigrationChecksumError(
                f"schema {schema}: {migration.filename} changed after it was applied "
                f"(checksum {row['checksum'][:12]}... now {migration.checksum[:12]}...); add a new migration instead"
            )
    pending = [m for m in migrations if m.version not in applied]
    last = max(applied, default=0)
    if pending and pending[0].version < last:
        raise MigrationOrderError(
            f"schema {schema}: {pending[0].filename} is below the last applied version {last}; renumber it"
        )

    done: list[Migration] = []
    for migration in pending:
        started = time.perf_counter()
        try:
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    f"INSERT INTO {table} (version, description, checksum, execution_ms) VALUES ($1, $2, $3, $4)",
                    migration.version,
                    migration.description,
                    migration.checksum,
                    int((time.perf_counter() - started) * 1000),
                )
        except asyncpg.PostgresError as exc:
            raise MigrationError(f"schema {schema}: {migration.filename} failed: {exc}") from exc
        log.info(
            "schema %s: applied %s in %.0f ms",
            schema,
            migration.filename,
            (time.perf_counter() - started) * 1e3,
        )
        done.append(migration)
    return done
