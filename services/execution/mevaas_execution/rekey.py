"""`mevaas-execution-rekey`: re-wrap every wallet's data key under the current KEK (KEK rotation).

Run it with the execution service's own environment while EXECUTION_KEK is a ring holding the old
and the new KEK (`old-id:b64,new-id:b64`) and EXECUTION_KEK_ID names the new one: each wallet not
yet under the new KEK has its data key unwrapped with the old KEK and wrapped with the new one
(mevaas_chain.keystore.rotate). Private keys are never decrypted and their ciphertext is unchanged.

Wallets are re-wrapped in batches, one transaction per batch, each row locked and only updated
while it is still under the KEK it was read with, so the command can be interrupted, re-run (a
second run re-wraps nothing) or run twice at once. Before changing anything it refuses to start
when some wallet is wrapped under a KEK the ring does not hold: that wallet could not be re-wrapped
and would be lost when the old KEK is destroyed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass

import asyncpg

from mevaas_chain.keystore import KeyRing, KeystoreError, rotate
from mevaas_core.config import ConfigError, load_settings
from mevaas_core.db import create_pool, platform_transaction
from mevaas_execution.server import ExecutionSettings
from mevaas_execution.wallets import keyring_from_settings, record_of

DEFAULT_BATCH_SIZE = 500


@dataclass(frozen=True)
class RekeyResult:
    target_kek_id: str
    rewrapped: int
    # Wallets per KEK id after the run (all under the target unless wallets were added meanwhile).
    wallets_by_kek: dict[str, int]


LOCK_TIMEOUT = "15s"


async def wallets_by_kek(pool: asyncpg.Pool) -> dict[str, int]:
    async with platform_transaction(pool, readonly=True) as conn:
        rows = await conn.fetch("SELECT kek_id, count(*) AS n FROM execution.wallets GROUP BY kek_id")
    return {row["kek_id"]: row["n"] for row in rows}


async def _rewrap_batch(pool: asyncpg.Pool, keyring: KeyRing, batch_size: int) -> int:
    target = keyring.current
    async with platform_transaction(pool) as conn:
        # NO KEY UPDATE: the wallet's key columns stay, so sessions and executions that reference it
        # (foreign keys take KEY SHARE) are not blocked; a lock held elsewhere fails the batch
        # loudly instead of hanging the rotation.
        await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        rows = await conn.fetch(
            "SELECT wallet_id, tenant_id, address, kek_id, wrapped_dek, ciphertext "
            "FROM execution.wallets WHERE kek_id <> $1 ORDER BY wallet_id LIMIT $2 FOR NO KEY UPDATE",
            target,
            batch_size,
        )
        updates = []
        for row in rows:
            record = rotate(record_of(row), keyring, target)
            updates.append((row["wallet_id"], row["kek_id"], record.kek_id, record.wrapped_dek))
        await conn.executemany(
            "UPDATE execution.wallets SET kek_id = $3, wrapped_dek = $4 WHERE wallet_id = $1 AND kek_id = $2",
            updates,
        )
    return len(rows)


async def rekey_wallets(
    pool: asyncpg.Pool, keyring: KeyRing, *, batch_size: int = DEFAULT_BATCH_SIZE
) -> RekeyResult:
    """Re-wrap every wallet not under ``keyring.current``; raises KeystoreError, before changing
    anything, when a wallet's KEK is not in the ring."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    unknown = sorted(kek_id for kek_id in await wallets_by_kek(pool) if kek_id not in keyring)
    if unknown:
        raise KeystoreError(f"wallets are wrapped under KEKs missing from EXECUTION_KEK: {unknown}")
    rewrapped = 0
    while count := await _rewrap_batch(pool, keyring, batch_size):
        rewrapped += count
    return RekeyResult(keyring.current, rewrapped, await wallets_by_kek(pool))


async def _run(settings: ExecutionSettings, batch_size: int, dry_run: bool) -> int:
    keyring = keyring_from_settings(settings.execution_kek, settings.execution_kek_id)
    pool = await create_pool(settings.database_url, max_size=1, application_name="mevaas-execution-rekey")
    try:
        if dry_run:
            counts = await wallets_by_kek(pool)
            pending = sum(n for kek_id, n in counts.items() if kek_id != keyring.current)
            print(f"{pending} wallet(s) to re-wrap under KEK {keyring.current!r}; by KEK: {counts}")
            return 0
        try:
            result = await rekey_wallets(pool, keyring, batch_size=batch_size)
        except (KeystoreError, asyncpg.LockNotAvailableError) as exc:
            # Batches committed before the failure stay re-wrapped; a re-run resumes after them.
            print(f"mevaas-execution-rekey: {exc}", file=sys.stderr)
            return 1
    finally:
        await pool.close()
    print(
        f"re-wrapped {result.rewrapped} wallet(s) under KEK {result.target_kek_id!r}; "
        f"by KEK: {result.wallets_by_kek}"
    )
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="mevaas-execution-rekey", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="wallets per transaction")
    parser.add_argument("--dry-run", action="store_true", help="count the wallets to re-wrap; change nothing")
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
    if not settings.database_url:
        print("mevaas-execution-rekey: DATABASE_URL is not set", file=sys.stderr)
        sys.exit(2)
    sys.exit(asyncio.run(_run(settings, args.batch_size, args.dry_run)))
