"""`python -m mevaas_execution.keys <tenant-id>`: print the tenant's data key as a dedicated
worker's EXECUTION_KEK (`tdk-<hex>:<base64>`), creating it if the tenant has none. Run it where
the platform's execution runs (it needs the KEK ring and PLATFORM_DATABASE_URL) and pipe it into
the tenant's Secret; it is the one place the data key leaves the platform in the clear."""

from __future__ import annotations

import argparse
import asyncio
import sys

from mevaas_chain.keystore import KeystoreError
from mevaas_core.config import ConfigError, load_settings
from mevaas_core.db import create_pool, platform_transaction
from mevaas_execution.keys import TenantKeys, is_tenant_ring, ring_spec
from mevaas_execution.server import ExecutionSettings
from mevaas_execution.wallets import keyring_from_settings


async def export(settings: ExecutionSettings, tenant_id: str) -> str:
    keyring = keyring_from_settings(settings.execution_kek, settings.execution_kek_id)
    if is_tenant_ring(keyring):
        raise KeystoreError("EXECUTION_KEK holds a tenant data key, not the platform's KEKs")
    pool = await create_pool(settings.platform_database_url, max_size=1, application_name="mevaas-tenant-key")
    try:
        async with platform_transaction(pool) as conn:
            key = await TenantKeys(keyring).tenant_key(conn, tenant_id, create=True)
    finally:
        await pool.close()
    return ring_spec(key)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mevaas_execution.keys", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("tenant_id")
    args = parser.parse_args()
    try:
        settings = load_settings(ExecutionSettings)
        if not settings.platform_database_url:
            raise ConfigError("PLATFORM_DATABASE_URL is not set")
        print(asyncio.run(export(settings, args.tenant_id)))
    except (ConfigError, ValueError, KeystoreError) as exc:
        print(f"mevaas_execution.keys: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
