"""Per-tenant data keys: the middle layer of the wallet envelope (issue 11).

    platform KEK  --wraps-->  tenant data key (one per tenant, execution.tenant_data_keys)
                  --wraps-->  wallet data key (one per wallet, execution.wallets.wrapped_dek)
                  --encrypts-->  private key

A wallet's `kek_id` names its tenant's data key (`tdk-<hex>`), which is a `KeyEncryptionKey` to
mevaas_chain.keystore: the keystore's crypto is unchanged, only the key that wraps wallet data
keys is now the tenant's own. The platform's execution holds the KEK ring and unwraps a tenant's
data key when it needs it. A dedicated tenant's execution worker holds its tenant's data key as
its whole ring (`EXECUTION_KEK=tdk-<hex>:<base64>`, from the tenant Secret; `python -m
mevaas_execution.keys <tenant>` prints it) and never the KEK: it opens that tenant's wallets and
no one else's, since another tenant's wallets are under another data key, itself under the KEK.
Rotating the KEK re-wraps the data keys only (mevaas-execution-rekey); rotating a tenant's data key
adds a version and re-wraps that tenant's wallets under it (mevaas-execution-rotate-data-key,
keys.data_key_rotation). Wallets wrapped straight
under a KEK (before V013) stay readable by the platform and are moved under their tenant's data
key by `keys.rotation.adopt_legacy_wallets` (at the service's start, and by the rekey command).
"""

from __future__ import annotations

import base64
import os
import secrets

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mevaas_chain.keystore import KeyEncryptionKey, KeyRing, KeystoreError, WalletRecord
from mevaas_execution.keys import store

TENANT_KEY_PREFIX = "tdk-"
_FORMAT = b"mevaas-tenant-key-v1"
_NONCE_BYTES = 12


def is_tenant_key(key_id: str) -> bool:
    return key_id.startswith(TENANT_KEY_PREFIX)


def is_tenant_ring(keyring: KeyRing) -> bool:
    """A dedicated worker's ring: its tenant's data key, no KEK."""
    return is_tenant_key(keyring.current)


def new_tenant_key() -> KeyEncryptionKey:
    return KeyEncryptionKey.generate(TENANT_KEY_PREFIX + secrets.token_hex(8))


def ring_spec(key: KeyEncryptionKey) -> str:
    """What a dedicated worker's EXECUTION_KEK holds (the Secret `mevaas-tenant-data-key`)."""
    return f"{key.kek_id}:{base64.b64encode(key.key).decode()}"


def _aad(tenant_id: str, key_id: str, kek_id: str) -> bytes:
    # Bound to the tenant: a data key row copied to another tenant does not open.
    return b"|".join((_FORMAT, tenant_id.encode(), key_id.encode(), kek_id.encode()))


def wrap_tenant_key(tenant_id: str, key: KeyEncryptionKey, kek: KeyEncryptionKey) -> bytes:
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(kek.key).encrypt(nonce, key.key, _aad(tenant_id, key.kek_id, kek.kek_id))


def unwrap_tenant_key(
    tenant_id: str, key_id: str, kek_id: str, wrapped: bytes, keyring: KeyRing
) -> KeyEncryptionKey:
    kek = keyring.get(kek_id)
    try:
        raw = AESGCM(kek.key).decrypt(
            wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], _aad(tenant_id, key_id, kek_id)
        )
    except InvalidTag:
        raise KeystoreError(f"tenant data key {key_id!r}: wrong KEK or tampered record") from None
    return KeyEncryptionKey(key_id, raw)


class TenantKeys:
    """Which key wraps, and which ring opens, a tenant's wallets, for a process holding `keyring`
    (the platform's KEKs, or a dedicated worker's tenant data key)."""

    def __init__(self, keyring: KeyRing) -> None:
        self.keyring = keyring
        # By version (key id), and only keys read from committed rows: a key created in a
        # transaction that rolls back must never wrap anything later. Which version is current is
        # read from the database every time: a rotation elsewhere changes it.
        self._cache: dict[str, KeyEncryptionKey] = {}

    async def tenant_key(
        self, conn: asyncpg.Connection, tenant_id: str, *, create: bool = False
    ) -> KeyEncryptionKey:
        """The tenant's current data key (created with `create` if it has none), locked FOR SHARE
        until the caller's transaction ends, so a rotation waits for what is sealed under it."""
        row = await store.get_current_key(conn, tenant_id, share=True)
        if row is None:
            if not create or is_tenant_ring(self.keyring):
                raise KeystoreError(f"tenant {tenant_id} has no data key this process can use")
            fresh = new_tenant_key()
            kek = self.keyring.get(self.keyring.current)
            await store.insert_tenant_key(
                conn, tenant_id, fresh.kek_id, kek.kek_id, wrap_tenant_key(tenant_id, fresh, kek)
            )
            # Ours, or a concurrent first key (or a rotation's new version) committed before us.
            row = await store.get_current_key(conn, tenant_id, share=True)
            if row is None:
                raise KeystoreError(f"tenant {tenant_id}: its data key changed while it was read; retry")
            return self._open(row)
        return self._cached(row)

    def _cached(self, row: asyncpg.Record) -> KeyEncryptionKey:
        key = self._cache.get(row["key_id"])
        if key is None:
            key = self._cache[row["key_id"]] = self._open(row)
        return key

    def _open(self, row: asyncpg.Record) -> KeyEncryptionKey:
        if is_tenant_ring(self.keyring):
            # A dedicated worker holds the data key itself; another tenant's is not in its ring.
            return self.keyring.get(row["key_id"])
        return unwrap_tenant_key(
            row["tenant_id"], row["key_id"], row["kek_id"], bytes(row["wrapped_key"]), self.keyring
        )

    async def sealing_ring(self, conn: asyncpg.Connection, tenant_id: str) -> KeyRing:
        """The ring a new wallet of the tenant is wrapped with (its data key, created if none)."""
        key = await self.tenant_key(conn, tenant_id, create=True)
        return KeyRing([key], key.kek_id)

    async def opening_ring(self, conn: asyncpg.Connection, record: WalletRecord) -> KeyRing:
        """The ring that opens `record`: the version of its tenant's data key it names (never a
        retired one), or for a wallet still wrapped straight under a KEK (before V013), the
        process's own ring."""
        if not is_tenant_key(record.kek_id):
            return self.keyring
        row = await store.get_live_key(conn, record.tenant_id, record.kek_id)
        if row is None:
            raise KeystoreError(f"wallet {record.address} is not under a live data key of its tenant")
        key = self._cached(row)
        return KeyRing([key], key.kek_id)
