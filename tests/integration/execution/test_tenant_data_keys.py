"""Per-tenant data keys on a real PostgreSQL, with execution's own key code (mevaas_execution.keys,
wallets): every tenant's wallets are wrapped under its own data key and only that key under the
platform KEK; a dedicated worker holding tenant A's data key (and no KEK) signs with A's wallets
and cannot open B's, even with B's rows in hand; wallets wrapped straight under the KEK before
V013 are moved under their tenant's key (ciphertext untouched), and a second run moves nothing."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio

from mevaas_chain.keystore import KeyRing, KeystoreError, SecretKey, decrypt_private_key, encrypt_private_key
from mevaas_chain.signer import address_from_private_key
from mevaas_core.db import create_pool, platform_transaction, provision_service_database, tenant_transaction
from mevaas_core.migrations import apply_migrations
from mevaas_execution import store
from mevaas_execution.keys import TenantKeys, ring_spec
from mevaas_execution.keys.rotation import adopt_legacy_wallets, counts
from mevaas_execution.wallets import WalletKeys, keyring_from_settings, record_of
from tests.fixtures.execution import EXECUTION_KEK
from tests.fixtures.platform import service_passwords

pytestmark = pytest.mark.integration

KEK_ID = "kek-1"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(postgres_server: str) -> AsyncIterator[asyncpg.Pool]:
    from mevaas_execution.server import SERVICE

    dsns = await provision_service_database(
        postgres_server, "execution", *service_passwords(postgres_server, "execution")
    )
    assert SERVICE.migrations is not None
    await apply_migrations(dsns.owner_dsn, "execution", SERVICE.migrations)
    pool = await create_pool(dsns.app_dsn, platform_dsn=dsns.platform_dsn, max_size=2)
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
def platform_keys() -> KeyRing:
    """The platform ring of the session's execution runtimes (they share this database, and a KEK
    rotation test re-wraps every tenant's data key)."""
    return keyring_from_settings(EXECUTION_KEK, KEK_ID)


async def new_wallet(pool: asyncpg.Pool, keys: WalletKeys, tenant_id: str, secret: SecretKey) -> str:
    """What CreateWallet/ImportWallet do (commands.py): seal under the tenant's ring, store."""
    async with tenant_transaction(pool, tenant_id) as conn:
        record = encrypt_private_key(tenant_id, secret, await keys.sealing_ring(conn, tenant_id))
        row = await store.insert_wallet(
            conn,
            wallet_id=str(uuid.uuid4()),
            tenant_id=tenant_id,
            address=record.address,
            label="",
            imported=True,
            make_default=False,
            kek_id=record.kek_id,
            wrapped_dek=record.wrapped_dek,
            ciphertext=record.ciphertext,
        )
    assert row is not None
    return record.address


async def exported_ring(pool: asyncpg.Pool, platform_keys: KeyRing, tenant_id: str) -> KeyRing:
    """The dedicated worker's ring, as `python -m mevaas_execution.keys <tenant>` exports it and
    the worker's settings load it (EXECUTION_KEK from its Secret)."""
    async with platform_transaction(pool) as conn:
        spec = ring_spec(await TenantKeys(platform_keys).tenant_key(conn, tenant_id))
    assert spec.startswith("tdk-") and KEK_ID not in spec
    return keyring_from_settings(spec, KEK_ID)


async def test_a_dedicated_worker_opens_only_its_tenants_wallets(
    pool: asyncpg.Pool, platform_keys: KeyRing
) -> None:
    tenant_a, tenant_b = f"a-{uuid.uuid4()}", f"b-{uuid.uuid4()}"
    platform = WalletKeys(pool, platform_keys)
    key_a, key_b = SecretKey.generate(), SecretKey.generate()
    address_a = await new_wallet(pool, platform, tenant_a, key_a)
    address_b = await new_wallet(pool, platform, tenant_b, key_b)

    # Each wallet names its tenant's data key; each data key is under the platform KEK.
    async with platform_transaction(pool, readonly=True) as conn:
        rows = {
            r["tenant_id"]: r
            for r in await conn.fetch(
                "SELECT * FROM execution.tenant_data_keys WHERE tenant_id = ANY($1)", [tenant_a, tenant_b]
            )
        }
        wallet_b = await store.get_wallet(conn, tenant_b, address_b)
    assert set(rows) == {tenant_a, tenant_b}
    assert all(r["kek_id"] == KEK_ID for r in rows.values())
    assert rows[tenant_a]["key_id"] != rows[tenant_b]["key_id"]
    assert wallet_b is not None and wallet_b["kek_id"] == rows[tenant_b]["key_id"]
    assert await platform.key(tenant_a, address_a) == key_a
    assert await platform.key(tenant_b, address_b) == key_b

    worker = WalletKeys(pool, await exported_ring(pool, platform_keys, tenant_a))
    assert await worker.key(tenant_a, address_a) == key_a
    # Tenant B's wallet, read by a login that can see it (the platform's: a dedicated worker's
    # database login cannot, tests/integration/operator/test_tenant_db_logins.py): still closed.
    with pytest.raises(KeystoreError):
        await worker.key(tenant_b, address_b)
    with pytest.raises(KeystoreError):
        decrypt_private_key(record_of(wallet_b), worker.keyring)
    # B's wallet relabelled as under A's data key does not open with it either (the key ciphertext
    # is bound to the data key's id and the tenant).
    forged = dataclasses.replace(record_of(wallet_b), kek_id=rows[tenant_a]["key_id"])
    with pytest.raises(KeystoreError):
        decrypt_private_key(forged, worker.keyring)
    # A worker cannot mint a data key (it has no KEK): a new tenant's wallets are not its to seal.
    tenant_c = f"c-{uuid.uuid4()}"
    async with tenant_transaction(pool, tenant_c) as conn:
        with pytest.raises(KeystoreError):
            await worker.sealing_ring(conn, tenant_c)
    # The signing key it opens is the wallet's.
    assert address_from_private_key(await worker.key(tenant_a, address_a)).lower() == address_a.lower()


async def test_data_keys_are_row_level_secured(pool: asyncpg.Pool, platform_keys: KeyRing) -> None:
    tenant_a, tenant_b = f"a-{uuid.uuid4()}", f"b-{uuid.uuid4()}"
    platform = WalletKeys(pool, platform_keys)
    await new_wallet(pool, platform, tenant_a, SecretKey.generate())
    await new_wallet(pool, platform, tenant_b, SecretKey.generate())
    async with tenant_transaction(pool, tenant_a, readonly=True) as conn:
        seen = await conn.fetch("SELECT tenant_id FROM execution.tenant_data_keys")
    assert {r["tenant_id"] for r in seen} == {tenant_a}


async def test_wallets_under_the_kek_are_moved_under_their_tenants_key(
    pool: asyncpg.Pool, platform_keys: KeyRing
) -> None:
    tenant = f"legacy-{uuid.uuid4()}"
    secrets_ = [SecretKey.generate() for _ in range(3)]
    # Rows as execution wrote them before V013: each wallet's data key straight under the KEK.
    legacy = [encrypt_private_key(tenant, s, platform_keys) for s in secrets_]
    async with tenant_transaction(pool, tenant) as conn:
        for record in legacy:
            await store.insert_wallet(
                conn,
                wallet_id=str(uuid.uuid4()),
                tenant_id=tenant,
                address=record.address,
                label="",
                imported=True,
                make_default=False,
                kek_id=record.kek_id,
                wrapped_dek=record.wrapped_dek,
                ciphertext=record.ciphertext,
            )
    assert (await counts(pool)).wallets_off_tenant_key.get(KEK_ID, 0) >= 3
    platform = WalletKeys(pool, platform_keys)
    # The platform still opens them as they are (a service running before the move).
    assert await platform.key(tenant, legacy[0].address) == secrets_[0]

    moved = await adopt_legacy_wallets(pool, platform_keys, batch_size=2)
    assert moved >= 3
    assert KEK_ID not in (await counts(pool)).wallets_off_tenant_key
    worker = WalletKeys(pool, await exported_ring(pool, platform_keys, tenant))
    async with tenant_transaction(pool, tenant, readonly=True) as conn:
        for record in legacy:
            row = await store.get_wallet(conn, tenant, record.address)
            assert row is not None
            assert row["kek_id"] == worker.keyring.current
            assert bytes(row["ciphertext"]) == record.ciphertext  # the private key was never re-encrypted
            assert bytes(row["wrapped_dek"]) != record.wrapped_dek
    for record, secret in zip(legacy, secrets_, strict=True):
        assert await WalletKeys(pool, platform_keys).key(tenant, record.address) == secret
        assert await worker.key(tenant, record.address) == secret
    # Idempotent: a second run (every start of the service runs it) moves nothing.
    assert await adopt_legacy_wallets(pool, platform_keys) == 0
