"""KEK rotation with `mevaas-execution-rekey` on the execution schema: wallets created through the
API are under their tenant's data key, itself under the old KEK; the rotation re-wraps the data
key under the new KEK (the wallets' rows untouched, no plaintext anywhere), a runtime holding only
the new KEK lists them and signs with them (executor deployment), the old KEK alone no longer opens
them, and a second run changes nothing.

The execution database is shared by the session's execution tests, whose runtimes use the old KEK:
the test re-wraps every wallet back under it before it ends."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from mevaas.common.v1 import common_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas_chain.keystore import KeyRing, KeystoreError, SecretKey
from mevaas_core.db import create_pool
from mevaas_execution.keys.rotation import counts
from mevaas_execution.rekey import rekey
from mevaas_execution.wallets import WalletKeys, keyring_from_settings
from mevaas_local.devnet import Devnet
from mevaas_sdk import MevaasClient
from tests.fixtures.execution import EXECUTION_KEK, ExecutionHarness, execution_stub
from tests.integration.execution.helpers import TenantSession, start_running
from tests.integration.tenancy.helpers import TRADING_PHASE, create_tenant

pytestmark = pytest.mark.integration

OLD_ID, NEW_ID = "kek-1", "kek-2"  # the harness's EXECUTION_KEK is a single key named kek-1
NEW_KEK = base64.b64encode(secrets.token_bytes(32)).decode()
BOTH = f"{OLD_ID}:{EXECUTION_KEK},{NEW_ID}:{NEW_KEK}"
IMPORTED_KEY = "0x" + secrets.token_bytes(32).hex()
REKEY = Path(sys.executable).parent / "mevaas-execution-rekey"


@pytest_asyncio.fixture(loop_scope="session")
async def pool(execution_harness: ExecutionHarness) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(
        await execution_harness.database(), platform_dsn=execution_harness.platform_dsn, max_size=2
    )
    yield pool
    # Leave every tenant data key under the KEK the other execution tests' runtimes hold.
    await rekey(pool, KeyRing.from_spec(BOTH, OLD_ID))
    await pool.close()


async def run_rekey(dsn: str, kek: str, kek_id: str, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "PLATFORM_DATABASE_URL": dsn, "EXECUTION_KEK": kek, "EXECUTION_KEK_ID": kek_id}
    proc = await asyncio.create_subprocess_exec(
        str(REKEY), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    except TimeoutError:
        proc.kill()
        raise AssertionError("mevaas-execution-rekey did not finish") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def wallet_rows(postgres_server: str, tenant_id: str) -> dict[str, dict[str, Any]]:
    conn = await asyncpg.connect(postgres_server)
    try:
        rows = await conn.fetch(
            "SELECT address, kek_id, wrapped_dek, ciphertext FROM execution.wallets WHERE tenant_id = $1",
            tenant_id,
        )
        everything = await conn.fetchval("SELECT string_agg(t::text, '\n') FROM execution.wallets t")
    finally:
        await conn.close()
    assert IMPORTED_KEY.removeprefix("0x") not in (everything or "")
    return {row["address"]: dict(row) for row in rows}


async def tenant_key_row(postgres_server: str, tenant_id: str) -> dict[str, Any]:
    conn = await asyncpg.connect(postgres_server)
    try:
        row = await conn.fetchrow("SELECT * FROM execution.tenant_data_keys WHERE tenant_id = $1", tenant_id)
    finally:
        await conn.close()
    assert row is not None
    return dict(row)


async def test_rekey_moves_every_wallet_to_the_new_kek(
    execution_harness: ExecutionHarness,
    pool: asyncpg.Pool,
    admin_client: MevaasClient,
    client_for: Callable[..., MevaasClient],
    postgres_server: str,
    devnet: Devnet,
) -> None:
    old_runtime = await execution_harness.start()
    tenant = await create_tenant(admin_client, phase=TRADING_PHASE)
    tenant_id = tenant.tenant.tenant_id
    async with client_for(tenant.owner_key, execution=f"127.0.0.1:{old_runtime.grpc_port}") as client:
        stub = execution_stub(client)
        generated = (
            await stub.CreateWallet(execution_pb2.CreateWalletRequest(idempotency_key="g", make_default=True))
        ).wallet
        imported = (
            await stub.ImportWallet(
                execution_pb2.ImportWalletRequest(idempotency_key="i", private_key=IMPORTED_KEY)
            )
        ).wallet
    await execution_harness.stop(old_runtime)
    before = await wallet_rows(postgres_server, tenant_id)
    key_before = await tenant_key_row(postgres_server, tenant_id)
    # Both wallets are under the tenant's data key, and only that key is under the KEK.
    assert {r["kek_id"] for r in before.values()} == {key_before["key_id"]}
    assert key_before["kek_id"] == OLD_ID
    await execution_harness.database()
    dsn = execution_harness.platform_dsn

    # A ring without the KEK the wallets are under is refused before anything changes.
    code, _, err = await run_rekey(dsn, f"{NEW_ID}:{NEW_KEK}", NEW_ID)
    assert code == 1 and "missing from EXECUTION_KEK" in err and OLD_ID in err
    # EXECUTION_KEK_ID must name a KEK of the ring: the target is never guessed.
    code, _, err = await run_rekey(dsn, BOTH, "kek-3")
    assert code == 2 and "EXECUTION_KEK_ID" in err
    code, out, _ = await run_rekey(dsn, BOTH, NEW_ID, "--dry-run")
    assert code == 0 and "to re-wrap" in out
    assert await wallet_rows(postgres_server, tenant_id) == before

    code, out, err = await run_rekey(dsn, BOTH, NEW_ID, "--batch-size", "1")
    assert code == 0, err
    assert f"under KEK {NEW_ID!r}" in out
    assert IMPORTED_KEY.removeprefix("0x") not in out + err
    found = await counts(pool)
    assert set(found.tenant_keys_by_kek) == {NEW_ID} and found.wallets_off_tenant_key == {}
    # One row per tenant changed: its data key, re-wrapped; the wallets are exactly as they were.
    assert await wallet_rows(postgres_server, tenant_id) == before
    key_after = await tenant_key_row(postgres_server, tenant_id)
    assert key_after["kek_id"] == NEW_ID and key_after["key_id"] == key_before["key_id"]
    assert key_after["wrapped_key"] != key_before["wrapped_key"]
    # Idempotent: nothing left to re-wrap.
    again = await rekey(pool, keyring_from_settings(BOTH, NEW_ID))
    assert (again.rewrapped, again.moved) == (0, 0) and set(again.counts.tenant_keys_by_kek) == {NEW_ID}

    # The old KEK alone no longer opens the wallets.
    with pytest.raises(KeystoreError):
        await WalletKeys(pool, keyring_from_settings(EXECUTION_KEK, OLD_ID)).key(tenant_id, imported.address)

    new_runtime = await execution_harness.start(execution_kek=NEW_KEK, execution_kek_id=NEW_ID)
    try:
        assert await new_runtime.keys.key(tenant_id, imported.address) == SecretKey.from_hex(IMPORTED_KEY)
        client = client_for(tenant.owner_key, execution=f"127.0.0.1:{new_runtime.grpc_port}")
        async with client:
            stub = execution_stub(client)
            listed = await stub.ListWallets(execution_pb2.ListWalletsRequest())
            assert {w.address for w in listed.wallets} == {generated.address, imported.address}
            # Deploying the session's executors signs transactions with the default wallet's key.
            session = await start_running(
                TenantSession(tenant_id, tenant.owner_key, client, stub, generated.address),
                devnet.chains,
                str(uuid.uuid4()),
            )
            assert session.state == common_pb2.EXECUTION_STATE_RUNNING
            assert session.wallet_address == generated.address
            await stub.StopExecution(execution_pb2.StopExecutionRequest(session_id=session.session_id))
    finally:
        await execution_harness.stop(new_runtime)
