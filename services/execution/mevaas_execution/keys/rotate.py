"""`mevaas-execution-rotate-data-key <tenant-id>`: rotate one tenant's own data key (a suspected
leak of a dedicated worker's Secret, an offboarded SRE, a policy's schedule).

Run it with the execution service's own environment (EXECUTION_KEK, PLATFORM_DATABASE_URL), like
mevaas-execution-rekey: a new version of the tenant's data key is made and wrapped under the
current KEK, every wallet of the tenant is re-wrapped under it (no private key is decrypted), and
the old version is retired and its key erased, all in one transaction with its audit record
(keys.data_key_rotation). Pass `--from <key id>` (what `--dry-run` prints) to make a re-run after
a crash or a timeout safe: once that version is retired nothing changes. A dedicated tenant's
execution worker gets the new version at the operator's next reconcile of its Tenant (its Secret
rewritten, its pods rolled); until then it cannot open the tenant's wallets.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

import asyncpg

from mevaas_chain.keystore import KeystoreError
from mevaas_core.config import ConfigError, load_settings
from mevaas_core.db import create_pool
from mevaas_execution.keys import data_key_rotation
from mevaas_execution.server import ExecutionSettings
from mevaas_execution.wallets import keyring_from_settings

PROG = "mevaas-execution-rotate-data-key"


async def _run(
    settings: ExecutionSettings, tenant_id: str, from_key_id: str | None, actor: str, dry_run: bool
) -> int:
    keyring = keyring_from_settings(settings.execution_kek, settings.execution_kek_id)
    pool = await create_pool(settings.platform_database_url, max_size=1, application_name=PROG)
    try:
        if dry_run:
            found = await data_key_rotation.current(pool, tenant_id)
            if found is None:
                print(f"tenant {tenant_id} has no data key")
                return 1
            print(
                f"{found.key_id} (version {found.version}) wraps {found.wallets} wallet(s) of tenant {tenant_id}"
            )
            return 0
        try:
            result = await data_key_rotation.rotate_tenant_key(
                pool, keyring, tenant_id, actor=actor, from_key_id=from_key_id
            )
        except (KeystoreError, asyncpg.LockNotAvailableError) as exc:
            # One transaction: nothing changed; the command can be run again.
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 1
    finally:
        await pool.close()
    if result.already_rotated:
        print(
            f"{result.from_key_id} is already retired; {result.key_id} (version {result.version}) is current"
        )
    else:
        print(
            f"rotated tenant {tenant_id}'s data key {result.from_key_id} -> {result.key_id} "
            f"(version {result.version}); re-wrapped {result.rewrapped} wallet(s); {result.from_key_id} retired"
        )
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("tenant_id")
    parser.add_argument("--from", dest="from_key_id", help="rotate only while this version is current")
    parser.add_argument("--actor", default=None, help="who rotates, for the audit record (default: $USER)")
    parser.add_argument("--dry-run", action="store_true", help="print the current version; change nothing")
    args = parser.parse_args()
    try:
        settings = load_settings(ExecutionSettings)
        keyring_from_settings(settings.execution_kek, settings.execution_kek_id)
        if not settings.platform_database_url:
            raise ConfigError("PLATFORM_DATABASE_URL is not set")
    except (ConfigError, ValueError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        sys.exit(2)
    actor = args.actor or getpass.getuser()
    sys.exit(asyncio.run(_run(settings, args.tenant_id, args.from_key_id, actor, args.dry_run)))
