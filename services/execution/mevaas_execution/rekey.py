"""`mevaas-execution-rekey`: re-wrap every tenant data key under the current KEK (KEK rotation),
and move every wallet still wrapped straight under a KEK under its tenant's data key.

Run it with the execution service's own environment while EXECUTION_KEK is a ring holding the old
and the new KEK (`old-id:b64,new-id:b64`) and EXECUTION_KEK_ID names the new one: each tenant data
key not yet under the new KEK is unwrapped with the old KEK and wrapped with the new one (one row
per tenant: wallets, their data keys and their ciphertexts do not change, and no private key is
ever decrypted). Work is done in batches, one transaction each; a row is updated only while it is
still under the KEK it was read with, so the command can be interrupted, re-run (a finished run
changes nothing) and run while execution serves traffic. It refuses to start when a key is wrapped
under a KEK the ring does not hold: that key could not be re-wrapped and would be lost when the
old KEK is destroyed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass

import asyncpg

from mevaas_chain.keystore import KeyRing, KeystoreError
from mevaas_core.config import ConfigError, load_settings
from mevaas_core.db import create_pool
from mevaas_execution.keys import rotation
from mevaas_execution.server import ExecutionSettings
from mevaas_execution.wallets import keyring_from_settings

DEFAULT_BATCH_SIZE = 500


@dataclass(frozen=True)
class RekeyResult:
    target_kek_id: str
    # Tenant data keys re-wrapped under the target KEK.
    rewrapped: int
    # Wallets moved from a KEK under their tenant's data key.
    moved: int
    counts: rotation.KeyCounts


async def rekey(pool: asyncpg.Pool, keyring: KeyRing, *, batch_size: int = DEFAULT_BATCH_SIZE) -> RekeyResult:
    """Re-wrap every tenant data key not under ``keyring.current`` and move every wallet under
    its tenant's data key; raises KeystoreError, before changing anything, when a key is under a
    KEK the ring lacks."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    await rotation.check_ring(pool, keyring)
    rewrapped = await rotation.rewrap_tenant_keys(pool, keyring, batch_size=batch_size)
    moved = await rotation.adopt_legacy_wallets(pool, keyring, batch_size=batch_size)
    return RekeyResult(keyring.current, rewrapped, moved, await rotation.counts(pool))


def _describe(counts: rotation.KeyCounts) -> str:
    return (
        f"tenant data keys by KEK: {counts.tenant_keys_by_kek}; "
        f"wallets not under their tenant's data key: {counts.wallets_off_tenant_key}"
    )


async def _run(settings: ExecutionSettings, batch_size: int, dry_run: bool) -> int:
    keyring = keyring_from_settings(settings.execution_kek, settings.execution_kek_id)
    # Re-wrapping spans every tenant's keys: it runs as the service's platform role.
    pool = await create_pool(
        settings.platform_database_url, max_size=1, application_name="mevaas-execution-rekey"
    )
    try:
        if dry_run:
            counts = await rotation.counts(pool)
            pending = sum(n for kek_id, n in counts.tenant_keys_by_kek.items() if kek_id != keyring.current)
            print(
                f"{pending} tenant data key(s) to re-wrap under KEK {keyring.current!r}, "
                f"{sum(counts.wallets_off_tenant_key.values())} wallet(s) to move; {_describe(counts)}"
            )
            return 0
        try:
            result = await rekey(pool, keyring, batch_size=batch_size)
        except (KeystoreError, asyncpg.LockNotAvailableError) as exc:
            # Batches committed before the failure stay re-wrapped; a re-run resumes after them.
            print(f"mevaas-execution-rekey: {exc}", file=sys.stderr)
            return 1
    finally:
        await pool.close()
    print(
        f"re-wrapped {result.rewrapped} tenant data key(s) under KEK {result.target_kek_id!r}, "
        f"moved {result.moved} wallet(s) under their tenant's data key; {_describe(result.counts)}"
    )
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="mevaas-execution-rekey", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="keys or wallets per transaction"
    )
    parser.add_argument("--dry-run", action="store_true", help="count what would change; change nothing")
    args = parser.parse_args()
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    try:
        settings = load_settings(ExecutionSettings)
        keyring = keyring_from_settings(settings.execution_kek, settings.execution_kek_id)
    except (ConfigError, ValueError) as exc:
        print(f"mevaas-execution-rekey: {exc}", file=sys.stderr)
        sys.exit(2)
    # The service falls back to the ring's last KEK; re-wrapping must not guess the target.
    if keyring.current != settings.execution_kek_id:
        print(
            f"mevaas-execution-rekey: EXECUTION_KEK_ID {settings.execution_kek_id!r} is not in EXECUTION_KEK",
            file=sys.stderr,
        )
        sys.exit(2)
    if not settings.platform_database_url:
        print("mevaas-execution-rekey: PLATFORM_DATABASE_URL is not set", file=sys.stderr)
        sys.exit(2)
    sys.exit(asyncio.run(_run(settings, args.batch_size, args.dry_run)))
