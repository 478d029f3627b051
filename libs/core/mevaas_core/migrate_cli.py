"""`mevaas-migrate --service NAME`: apply a service's migrations (the Helm pre-install/pre-upgrade
Job and operators run this). DATABASE_URL names the schema owner's connection; with
`--provision` it is an admin connection instead and the roles and schema are created first, with
passwords from DB_OWNER_PASSWORD, DB_APP_PASSWORD and DB_PLATFORM_PASSWORD. Each may also be a
file in SECRETS_DIR (`database_url`, `db_app_password`, ...), as the Helm Job mounts them."""

from __future__ import annotations

import argparse
import asyncio
import sys

from mevaas_core.config import read_secret
from mevaas_core.db import provision_service_database
from mevaas_core.migrations import apply_migrations
from mevaas_core.service import discover_services


async def migrate(service: str, dsn: str, provision: bool) -> int:
    specs = {spec.name: spec for spec in discover_services()}
    spec = specs.get(service)
    if spec is None:
        print(f"unknown service {service!r}; installed: {', '.join(sorted(specs))}", file=sys.stderr)
        return 2
    if spec.schema is None or spec.migrations is None:
        print(f"{service} has no database; nothing to migrate")
        return 0
    owner_dsn = dsn
    if provision:
        passwords = [read_secret(n) for n in ("DB_APP_PASSWORD", "DB_OWNER_PASSWORD", "DB_PLATFORM_PASSWORD")]
        if not all(passwords):
            print(
                "--provision needs DB_APP_PASSWORD, DB_OWNER_PASSWORD and DB_PLATFORM_PASSWORD",
                file=sys.stderr,
            )
            return 2
        dsns = await provision_service_database(dsn, spec.schema, *passwords)
        owner_dsn = dsns.owner_dsn
    applied = await apply_migrations(owner_dsn, spec.schema, spec.migrations)
    print(f"{service}: applied {len(applied)} migration(s)")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--service", required=True)
    parser.add_argument(
        "--provision", action="store_true", help="DATABASE_URL is an admin DSN; create roles first"
    )
    args = parser.parse_args()
    dsn = read_secret("DATABASE_URL")
    if not dsn:
        print("DATABASE_URL is not set", file=sys.stderr)
        sys.exit(2)
    sys.exit(asyncio.run(migrate(args.service, dsn, args.provision)))
