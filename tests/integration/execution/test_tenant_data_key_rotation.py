"""Rotating one tenant's own data key on a real PostgreSQL with execution's schema
(mevaas_execution.keys.data_key_rotation and its command, mevaas-execution-rotate-data-key): every
wallet of the tenant is re-wrapped under a new version and still signs, the old version is retired
with its key erased so it opens nothing (not even a copy of the old rows), another tenant is
untouched, the rotation is audited, a re-run changes nothing, and a process killed half way through
(its new version written, the old one retired, the wallets not yet moved) leaves everything as it
was for a re-run to finish."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from mevaas.events.v1 import events_pb2
from mevaas_chain.keystore import (
    KeyRing,
    KeystoreError,
    SecretKey,
    WalletRecord,
    decrypt_private_key,
    encrypt_private_key,
)
from mevaas_chain.rawtx import decode_signed
from mevaas_chain.signer import sign_transaction
from mevaas_core.db import create_pool, platform_transaction, provision_service_database, tenant_transaction
from mevaas_core.migrations import apply_migrations
from mevaas_execution import store
from mevaas_execution.keys import TenantKeys, ring_spec
from mevaas_execution.keys.data_key_rotation import ROTATE_ACTION, rotate_tenant_key
from mevaas_execution.keys.rotate import PROG
from mevaas_execution.wallets import WalletKeys, keyring_from_settings
from tests.fixtures.execution import EXECUTION_KEK
from tests.fixtures.platform import service_passwords

pytestmark = pytest.mark.integration

KEK_ID = "kek-1"
ROTATE = Path(sys.executable).parent / PROG


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def dsns(postgres_server: str) -> Any:
    from mevaas_execution.server import SERVICE

    found = await provision_service_database(
        postgres_server, "execution", *service_passwords(postgres_server, "execution")
    )
    assert SERVICE.migrations is not None
    await apply_migrations(found.owner_dsn, "execution", SERVICE.migrations)
    return found


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(dsns: Any) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(dsns.app_dsn, platform_dsn=dsns.platform_dsn, max_size=3)
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
def platform_keys() -> KeyRing:
    return keyring_from_settings(EXECUTION_KEK, KEK_ID)


async def new_wallet(pool: asyncpg.Pool, keys: WalletKeys, tenant_id: str) -> tuple[str, SecretKey]:
    """What CreateWallet does (commands.py): seal under the tenant's ring, store."""
    secret = SecretKey.generate()
    async with tenant_transaction(pool, tenant_id) as conn:
        record = encrypt_private_key(tenant_id, secret, await keys.sealing_ring(conn, tenant_id))
        row = await store.insert_wallet(
            conn,
            wallet_id=str(uuid.uuid4()),
            tenant_id=tenant_id,
            address=record.address,
            label="",
            imported=False,
            make_default=False,
            kek_id=record.kek_id,
            wrapped_dek=record.wrapped_dek,
            ciphertext=record.ciphertext,
        )
    assert row is not None
    return record.address, secret


async def worker_ring(pool: asyncpg.Pool, platform_keys: KeyRing, tenant_id: str) -> KeyRing:
    """A dedicated worker's ring: the tenant's current data key, as delivered to its Secret."""
    async with platform_transaction(pool) as conn:
        spec = ring_spec(await TenantKeys(platform_keys).tenant_key(conn, tenant_id))
    return keyring_from_settings(spec, KEK_ID)


async def rows(postgres_server: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(postgres_server)
    try:
        return [dict(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


async def key_versions(postgres_server: str, tenant_id: str) -> list[dict[str, Any]]:
    return await rows(
        postgres_server,
        "SELECT key_id, version, retired_at, wrapped_key FROM execution.tenant_data_keys "
        "WHERE tenant_id = $1 ORDER BY version",
        tenant_id,
    )


async def wallets(postgres_server: str, tenant_id: str) -> dict[str, dict[str, Any]]:
    found = await rows(
        postgres_server,
        "SELECT address, kek_id, wrapped_dek, ciphertext FROM execution.wallets WHERE tenant_id = $1",
        tenant_id,
    )
    return {w["address"]: w for w in found}


def wallet_record(tenant_id: str, row: dict[str, Any]) -> WalletRecord:
    return WalletRecord(
        tenant_id, row["address"], row["kek_id"], bytes(row["wrapped_dek"]), bytes(row["ciphertext"])
    )


async def signs(keys: WalletKeys, tenant_id: str, address: str) -> bool:
    """The wallet signs a transaction its address sent."""
    tx = {
        "chainId": 1,
        "nonce": 0,
        "gas": 21000,
        "gasPrice": 1,
        "to": "0x" + "11" * 20,
        "value": 1,
        "data": b"",
    }
    signed = sign_transaction(tx, await keys.key(tenant_id, address))
    return decode_signed(signed.raw).sender.lower() == address.lower()


async def test_rotation_rewraps_the_tenants_wallets_and_retires_the_old_version(
    pool: asyncpg.Pool, platform_keys: KeyRing, postgres_server: str
) -> None:
    tenant, other = f"rot-{uuid.uuid4()}", f"other-{uuid.uuid4()}"
    platform = WalletKeys(pool, platform_keys)
    mine = [await new_wallet(pool, platform, tenant) for _ in range(3)]
    await new_wallet(pool, platform, other)
    old_ring = await worker_ring(pool, platform_keys, tenant)
    (old,) = [v["key_id"] for v in await key_versions(postgres_server, tenant)]
    before, other_before = await wallets(postgres_server, tenant), await wallets(postgres_server, other)
    other_keys = await key_versions(postgres_server, other)

    result = await rotate_tenant_key(pool, platform_keys, tenant, actor="sre@example", from_key_id=old)

    assert (result.from_key_id, result.version, result.rewrapped, result.already_rotated) == (
        old,
        2,
        3,
        False,
    )
    versions = await key_versions(postgres_server, tenant)
    assert [(v["key_id"], v["version"]) for v in versions] == [(old, 1), (result.key_id, 2)]
    assert versions[0]["retired_at"] is not None and versions[0]["wrapped_key"] is None
    assert versions[1]["retired_at"] is None and versions[1]["wrapped_key"] is not None
    after = await wallets(postgres_server, tenant)
    for address, was in before.items():
        assert (
            after[address]["kek_id"] == result.key_id and after[address]["wrapped_dek"] != was["wrapped_dek"]
        )
        assert after[address]["ciphertext"] == was["ciphertext"]
    assert await wallets(postgres_server, other) == other_before
    assert await key_versions(postgres_server, other) == other_keys

    # Every wallet still signs, for the platform (a fresh process, and this one: nothing stale is
    # cached) and for a dedicated worker holding the new version.
    new_ring = await worker_ring(pool, platform_keys, tenant)
    assert new_ring.current == result.key_id and old not in new_ring
    for keys in (WalletKeys(pool, platform_keys), WalletKeys(pool, new_ring)):
        for address, secret in mine:
            assert await keys.key(tenant, address) == secret
            assert await signs(keys, tenant, address)
    # A wallet made after the rotation is sealed under the new version, even by a TenantKeys that
    # read the old one before.
    address, _ = await new_wallet(pool, platform, tenant)
    assert (await wallets(postgres_server, tenant))[address]["kek_id"] == result.key_id

    # The old version opens nothing: the worker still holding it, or the old rows from a backup.
    with pytest.raises(KeystoreError):
        await WalletKeys(pool, old_ring).key(tenant, mine[0][0])
    for address, was in before.items():
        with pytest.raises(KeystoreError):
            decrypt_private_key(wallet_record(tenant, after[address]), old_ring)
        backup = wallet_record(tenant, was)
        async with platform_transaction(pool, readonly=True) as conn:
            with pytest.raises(KeystoreError, match="not under a live data key"):
                await TenantKeys(platform_keys).opening_ring(conn, backup)

    # Audited, in the rotation's own transaction (execution's outbox).
    (outboxed,) = await rows(
        postgres_server,
        "SELECT subject, payload FROM execution.outbox WHERE tenant_id = $1 AND message_type = $2",
        tenant,
        events_pb2.AuditRecord.DESCRIPTOR.full_name,
    )
    record = events_pb2.AuditRecord.FromString(outboxed["payload"])
    assert outboxed["subject"] == f"audit.{tenant}.record"
    assert (record.action, record.actor.id, record.resource) == (
        ROTATE_ACTION,
        "sre@example",
        f"tenant_data_keys/{result.key_id}",
    )
    assert dict(record.details) == {
        "from_key_id": old,
        "to_key_id": result.key_id,
        "version": "2",
        "wallets_rewrapped": "3",
    }

    # Idempotent: rotating away from the retired version again changes nothing.
    snapshot = (await key_versions(postgres_server, tenant), await wallets(postgres_server, tenant))
    again = await rotate_tenant_key(pool, platform_keys, tenant, actor="sre@example", from_key_id=old)
    assert (again.already_rotated, again.key_id, again.version, again.rewrapped) == (
        True,
        result.key_id,
        2,
        0,
    )
    assert (await key_versions(postgres_server, tenant), await wallets(postgres_server, tenant)) == snapshot
    with pytest.raises(KeystoreError, match="not a version"):
        await rotate_tenant_key(pool, platform_keys, tenant, actor="sre", from_key_id="tdk-0000000000000000")
    with pytest.raises(KeystoreError, match="no data key"):
        await rotate_tenant_key(pool, platform_keys, f"none-{uuid.uuid4()}", actor="sre")


async def run_rotate(dsn: str, *args: str) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "PLATFORM_DATABASE_URL": dsn,
        "EXECUTION_KEK": EXECUTION_KEK,
        "EXECUTION_KEK_ID": KEK_ID,
    }
    return await asyncio.create_subprocess_exec(
        str(ROTATE), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )


async def finished(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


async def until(check: Any, what: str) -> None:
    for _ in range(600):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never: {what}")


async def test_a_rotation_killed_half_way_changes_nothing_and_a_rerun_finishes(
    pool: asyncpg.Pool, platform_keys: KeyRing, postgres_server: str, dsns: Any
) -> None:
    tenant = f"crash-{uuid.uuid4()}"
    platform = WalletKeys(pool, platform_keys)
    mine = [await new_wallet(pool, platform, tenant) for _ in range(2)]
    old_ring = await worker_ring(pool, platform_keys, tenant)
    before_keys, before_wallets = (
        await key_versions(postgres_server, tenant),
        await wallets(postgres_server, tenant),
    )

    # Someone holds one of the tenant's wallets, so the rotation stops after writing its new
    # version and retiring the old one, waiting to lock the wallets; it is killed there.
    holder = await asyncpg.connect(postgres_server)
    try:
        async with holder.transaction():
            await holder.execute(
                "SELECT 1 FROM execution.wallets WHERE tenant_id = $1 AND address = $2 FOR UPDATE",
                tenant,
                mine[0][0],
            )
            proc = await run_rotate(dsns.platform_dsn, tenant, "--actor", "sre@example")

            async def waiting() -> bool:
                found = await rows(
                    postgres_server,
                    "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
                    PROG,
                )
                return bool(found) or proc.returncode is not None

            await until(waiting, "the rotation waits for the wallet lock")
            assert proc.returncode is None
            proc.send_signal(signal.SIGKILL)
            code, _ = await finished(proc)
            assert code == -signal.SIGKILL

            async def gone() -> bool:
                return not await rows(
                    postgres_server, "SELECT pid FROM pg_stat_activity WHERE application_name = $1", PROG
                )

            await until(gone, "the killed rotation's session ends")
    finally:
        await holder.close()

    assert await key_versions(postgres_server, tenant) == before_keys
    assert await wallets(postgres_server, tenant) == before_wallets
    for keys in (WalletKeys(pool, platform_keys), WalletKeys(pool, old_ring)):
        for address, secret in mine:
            assert await keys.key(tenant, address) == secret
    old = before_keys[0]["key_id"]

    code, out = await finished(await run_rotate(dsns.platform_dsn, tenant, "--from", old, "--actor", "sre"))
    assert code == 0, out
    versions = await key_versions(postgres_server, tenant)
    assert [v["version"] for v in versions] == [1, 2] and versions[0]["retired_at"] is not None
    new = versions[1]["key_id"]
    assert f"{old} -> {new} (version 2); re-wrapped 2 wallet(s)" in out
    assert {w["kek_id"] for w in (await wallets(postgres_server, tenant)).values()} == {new}
    for address, secret in mine:
        assert await WalletKeys(pool, platform_keys).key(tenant, address) == secret

    code, out = await finished(await run_rotate(dsns.platform_dsn, tenant, "--from", old))
    assert code == 0 and f"{old} is already retired; {new} (version 2) is current" in out, out
    code, out = await finished(await run_rotate(dsns.platform_dsn, tenant, "--dry-run"))
    assert code == 0 and f"{new} (version 2) wraps 2 wallet(s)" in out, out
