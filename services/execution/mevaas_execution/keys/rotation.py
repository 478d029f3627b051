"""KEK rotation and the move of wallets under their tenant's data key, in batches of one
transaction each, as the platform role (they span tenants). Both are idempotent: a finished run
changes nothing, and an interrupted one resumes where it stopped."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from mevaas_chain.keystore import KeyRing, KeystoreError, rotate
from mevaas_core.db import platform_transaction
from mevaas_execution import store as wallet_store
from mevaas_execution.keys import TenantKeys, is_tenant_ring, store, unwrap_tenant_key, wrap_tenant_key
from mevaas_execution.wallets import record_of

log = logging.getLogger(__name__)

LOCK_TIMEOUT = "15s"


@dataclass(frozen=True)
class KeyCounts:
    # Tenant data keys per KEK id.
    tenant_keys_by_kek: dict[str, int]
    # Wallets not under their tenant's data key, per the key they are wrapped under.
    wallets_off_tenant_key: dict[str, int]


async def counts(pool: asyncpg.Pool) -> KeyCounts:
    async with platform_transaction(pool, readonly=True) as conn:
        return KeyCounts(
            await store.tenant_key_counts_by_kek(conn), await store.count_wallets_off_tenant_key(conn)
        )


async def check_ring(pool: asyncpg.Pool, keyring: KeyRing) -> None:
    """KeystoreError, before anything changes, when a data key or a wallet still to move is
    wrapped under a KEK the ring lacks: it could not be re-wrapped, and would be lost when the
    old KEK is destroyed."""
    if is_tenant_ring(keyring):
        raise KeystoreError("EXECUTION_KEK holds a tenant data key, not the platform's KEKs")
    found = await counts(pool)
    unknown = sorted(
        {k for k in [*found.tenant_keys_by_kek, *found.wallets_off_tenant_key] if k not in keyring}
    )
    if unknown:
        raise KeystoreError(f"keys are wrapped under KEKs missing from EXECUTION_KEK: {unknown}")


async def _rewrap_keys_batch(pool: asyncpg.Pool, keyring: KeyRing, batch_size: int) -> int:
    target = keyring.get(keyring.current)
    async with platform_transaction(pool) as conn:
        rows = await store.lock_tenant_keys_not_under(conn, target.kek_id, batch_size, LOCK_TIMEOUT)
        updates = []
        for row in rows:
            key = unwrap_tenant_key(
                row["tenant_id"], row["key_id"], row["kek_id"], bytes(row["wrapped_key"]), keyring
            )
            updates.append(
                (row["key_id"], row["kek_id"], target.kek_id, wrap_tenant_key(row["tenant_id"], key, target))
            )
        await store.rewrap_tenant_keys(conn, updates)
    return len(rows)


async def rewrap_tenant_keys(pool: asyncpg.Pool, keyring: KeyRing, *, batch_size: int = 500) -> int:
    """Re-wrap every tenant data key not under ``keyring.current`` (a KEK rotation): wallets and
    their ciphertexts do not change."""
    rewrapped = 0
    while count := await _rewrap_keys_batch(pool, keyring, batch_size):
        rewrapped += count
    return rewrapped


async def _adopt_batch(pool: asyncpg.Pool, keyring: KeyRing, batch_size: int) -> int:
    tenant_keys = TenantKeys(keyring)
    async with platform_transaction(pool) as conn:
        rows = await store.lock_wallets_off_tenant_key(conn, batch_size, LOCK_TIMEOUT)
        updates = []
        for row in rows:
            record = record_of(row)
            key = await tenant_keys.tenant_key(conn, record.tenant_id, create=True)
            both = KeyRing([keyring.get(record.kek_id), key], key.kek_id)
            moved = rotate(record, both)
            updates.append((row["wallet_id"], record.kek_id, moved.kek_id, moved.wrapped_dek))
        await wallet_store.rewrap_wallets(conn, updates)
    return len(rows)


async def adopt_legacy_wallets(pool: asyncpg.Pool, keyring: KeyRing, *, batch_size: int = 500) -> int:
    """Move every wallet wrapped straight under a KEK under its tenant's data key (creating the
    key if the tenant has none). Only the wallet's data key is re-wrapped: the private key is
    never decrypted and its ciphertext does not change."""
    moved = 0
    while count := await _adopt_batch(pool, keyring, batch_size):
        moved += count
    if moved:
        log.info("moved %d wallet(s) under their tenant's data key", moved)
    return moved


async def adopt_at_start(pool: asyncpg.Pool, keyring: KeyRing) -> None:
    """The service's start: move what is left under tenant data keys. A wallet under a KEK this
    process lacks, or a row it cannot lock now, is left for mevaas-execution-rekey (which names
    it) rather than keeping the service down; a dedicated worker (no KEK) moves nothing."""
    if is_tenant_ring(keyring):
        return
    try:
        await check_ring(pool, keyring)
        await adopt_legacy_wallets(pool, keyring)
    except (KeystoreError, asyncpg.LockNotAvailableError) as exc:
        log.warning("wallets not moved under their tenant's data key: %s", exc)
