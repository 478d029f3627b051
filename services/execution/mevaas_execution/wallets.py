"""Tenant wallets: keys generated or imported, stored only as envelope-encrypted records
(mevaas_chain.keystore) under the tenant's data key (mevaas_execution.keys), decrypted in memory
when a transaction must be signed."""

from __future__ import annotations

import base64
import binascii

import asyncpg

from mevaas_chain.keystore import (
    KeyEncryptionKey,
    KeyRing,
    SecretKey,
    WalletRecord,
    decrypt_private_key,
)
from mevaas_core.db import tenant_transaction
from mevaas_execution import store
from mevaas_execution.keys import TenantKeys


def keyring_from_settings(kek: str, kek_id: str) -> KeyRing:
    """``kek`` is one base64 32-byte key (named ``kek_id``), or a ring ``id1:b64,id2:b64`` whose
    last entry (or ``kek_id`` when it names one of them) wraps new wallets."""
    if ":" in kek:
        ring = KeyRing.from_spec(kek)
        return KeyRing.from_spec(kek, kek_id) if kek_id in ring else ring
    try:
        key = base64.b64decode(kek, validate=True)
    except binascii.Error:
        raise ValueError("EXECUTION_KEK must be base64") from None
    return KeyRing([KeyEncryptionKey(kek_id, key)], kek_id)


def record_of(row: asyncpg.Record) -> WalletRecord:
    return WalletRecord(
        tenant_id=row["tenant_id"],
        address=row["address"],
        kek_id=row["kek_id"],
        wrapped_dek=bytes(row["wrapped_dek"]),
        ciphertext=bytes(row["ciphertext"]),
    )


class WalletKeys:
    """Decrypted signing keys, cached per (tenant, address) for the hot path."""

    def __init__(self, pool: asyncpg.Pool, keyring: KeyRing) -> None:
        self._pool = pool
        self.keyring = keyring
        self.tenant_keys = TenantKeys(keyring)
        self._cache: dict[tuple[str, str], SecretKey] = {}

    async def sealing_ring(self, conn: asyncpg.Connection, tenant_id: str) -> KeyRing:
        """What a new wallet of the tenant is wrapped under: its data key (created if none), in the
        caller's transaction, so the key and the wallet are stored together or not at all."""
        return await self.tenant_keys.sealing_ring(conn, tenant_id)

    async def key(self, tenant_id: str, address: str) -> SecretKey:
        cache_key = (tenant_id, address.lower())
        secret = self._cache.get(cache_key)
        if secret is None:
            async with tenant_transaction(self._pool, tenant_id, readonly=True) as conn:
                row = await store.get_wallet(conn, tenant_id, address)
                if row is None:
                    raise LookupError(f"wallet {address} of tenant {tenant_id} not found")
                record = record_of(row)
                ring = await self.tenant_keys.opening_ring(conn, record)
            secret = decrypt_private_key(record, ring)
            self._cache[cache_key] = secret
        return secret
