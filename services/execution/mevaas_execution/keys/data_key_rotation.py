"""Rotating one tenant's own data key: a new version of it, every wallet of the tenant re-wrapped
under the new version and the old one retired (its key erased), in one transaction as the
platform role, with its audit record in the same transaction (execution's outbox).

One transaction makes a crash harmless: until it commits nothing has changed (the old version
still wraps every wallet and still opens them), so the command is simply run again. Naming the
version to rotate away from (`from_key_id`) makes it idempotent: once that version is retired,
running it again changes nothing and answers the version that replaced it. Only wallet data keys
are re-wrapped: no private key is decrypted and no ciphertext changes.

A wallet sealed while a rotation runs must not end up under the version it retires: sealing locks
the current version FOR SHARE (TenantKeys.tenant_key) and the rotation locks it FOR UPDATE, so one
waits for the other to commit."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from mevaas.events.v1 import events_pb2
from mevaas_chain.keystore import KeyRing, KeystoreError, rotate
from mevaas_core import audit, outbox
from mevaas_core.db import platform_transaction
from mevaas_execution import store as wallet_store
from mevaas_execution.keys import is_tenant_ring, new_tenant_key, store, unwrap_tenant_key, wrap_tenant_key
from mevaas_execution.wallets import record_of

# The audit record's action (the command an SRE runs; there is no RPC behind it).
ROTATE_ACTION = "mevaas-execution-rotate-data-key"
LOCK_TIMEOUT = "15s"


@dataclass(frozen=True)
class DataKeyRotation:
    tenant_id: str
    from_key_id: str
    # The current version after the call (the new one, or the one that had already replaced
    # `from_key_id`).
    key_id: str
    version: int
    # Wallets re-wrapped by this call.
    rewrapped: int
    # `from_key_id` had already been rotated away from: nothing changed.
    already_rotated: bool = False


@dataclass(frozen=True)
class CurrentDataKey:
    key_id: str
    version: int
    wallets: int


async def current(pool: asyncpg.Pool, tenant_id: str) -> CurrentDataKey | None:
    async with platform_transaction(pool, readonly=True) as conn:
        row = await store.get_current_key(conn, tenant_id)
        if row is None:
            return None
        return CurrentDataKey(
            row["key_id"], row["version"], await store.count_wallets_under(conn, tenant_id, row["key_id"])
        )


async def _already_rotated(
    conn: asyncpg.Connection, tenant_id: str, from_key_id: str, now: asyncpg.Record
) -> DataKeyRotation:
    named = await store.get_key_version(conn, tenant_id, from_key_id)
    if named is None or named["retired_at"] is None:
        raise KeystoreError(f"{from_key_id!r} is not a version of tenant {tenant_id}'s data key")
    return DataKeyRotation(tenant_id, from_key_id, now["key_id"], now["version"], 0, already_rotated=True)


def _audit_record(actor: str, rotation: DataKeyRotation) -> events_pb2.AuditRecord:
    call = audit.AuditCall(service="execution", method=ROTATE_ACTION, request_id=str(uuid.uuid4()))
    record = audit.build(
        call,
        tenant_id=rotation.tenant_id,
        target=f"tenant_data_keys/{rotation.key_id}",
        outcome=audit.SUCCEEDED,
        details={
            "from_key_id": rotation.from_key_id,
            "to_key_id": rotation.key_id,
            "version": str(rotation.version),
            "wallets_rewrapped": str(rotation.rewrapped),
        },
    )
    record.actor.CopyFrom(events_pb2.Actor(kind=events_pb2.ACTOR_KIND_PLATFORM_ADMIN, id=actor))
    return record


async def rotate_tenant_key(
    pool: asyncpg.Pool, keyring: KeyRing, tenant_id: str, *, actor: str, from_key_id: str | None = None
) -> DataKeyRotation:
    """Replace the tenant's current data key (or, idempotently, version `from_key_id`) by a new
    version wrapped under ``keyring.current``; KeystoreError if the tenant has no data key, if
    `from_key_id` is none of its versions, or if `keyring` cannot open the current one."""
    if is_tenant_ring(keyring):
        raise KeystoreError("EXECUTION_KEK holds a tenant data key, not the platform's KEKs")
    async with platform_transaction(pool) as conn:
        row = await store.lock_current_key(conn, tenant_id, LOCK_TIMEOUT)
        if row is None:
            raise KeystoreError(f"tenant {tenant_id} has no data key to rotate")
        if from_key_id is not None and row["key_id"] != from_key_id:
            return await _already_rotated(conn, tenant_id, from_key_id, row)
        old = unwrap_tenant_key(tenant_id, row["key_id"], row["kek_id"], bytes(row["wrapped_key"]), keyring)
        fresh, kek = new_tenant_key(), keyring.get(keyring.current)
        await store.retire_key(conn, old.kek_id)
        version = row["version"] + 1
        if not await store.insert_tenant_key(
            conn, tenant_id, fresh.kek_id, kek.kek_id, wrap_tenant_key(tenant_id, fresh, kek), version
        ):
            raise KeystoreError(f"tenant {tenant_id}: data key version {version} already exists")
        both = KeyRing([old, fresh], fresh.kek_id)
        updates = []
        for wallet in await store.lock_wallets_under(conn, tenant_id, old.kek_id):
            moved = rotate(record_of(wallet), both)
            updates.append((wallet["wallet_id"], old.kek_id, fresh.kek_id, moved.wrapped_dek))
        await wallet_store.rewrap_wallets(conn, updates)
        rotation = DataKeyRotation(tenant_id, old.kek_id, fresh.kek_id, version, len(updates))
        entry = _audit_record(actor, rotation)
        await outbox.enqueue(
            conn,
            "execution",
            subject=audit.subject_for(tenant_id),
            message=entry,
            event_id=entry.event_id,
            tenant_id=tenant_id,
        )
    return rotation
