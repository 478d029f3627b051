"""Fair ordering end to end on the devnet (anvil, relay), with real tenancy, PostgreSQL and NATS:
100 transactions from 10 senders sent through the Protect RPC in fair mode each get a signed
receipt, land in receipt order, and `mevaas verify-ordering` passes on the published log; a block
in which a builder swapped two of them, and an entry tampered with in the database, make it fail
naming the entry. Receipts also come back over gRPC and are published on exec.<tenant>.ordering."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import nats
import pytest
import pytest_asyncio
from eth_account import Account
from eth_utils.crypto import keccak

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas_core.db import platform_transaction
from mevaas_local.devnet import Devnet
from tests.fixtures.execution import ExecutionHarness, block_production, execution_stub, fund, wait_for
from tests.fixtures.platform import BOOTSTRAP_ADMIN_KEY
from tests.integration.execution.helpers import clients
from tests.integration.protection.helpers import call, signed
from tests.integration.tenancy.helpers import create_tenant

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fair(
    execution_harness: ExecutionHarness, tenancy_service: Any, devnet: Devnet
) -> AsyncIterator[dict[str, Any]]:
    runtime = await execution_harness.start(
        http_port=0,
        tenancy_address=f"127.0.0.1:{tenancy_service.grpc_port}",
        protect_max_blocks=25,
        fair_ordering_signing_key="11" * 32,
    )
    async with clients(tenancy_service)(BOOTSTRAP_ADMIN_KEY) as admin:
        tenant = await create_tenant(admin)
    chain_id = devnet.main.spec.chain_id
    host = f"http://127.0.0.1:{runtime.protect_rpc_port}"
    yield {
        "runtime": runtime,
        "url": f"{host}/rpc/{chain_id}/{tenant.owner_key}?mode=fair",
        "log": f"{host}/ordering/{chain_id}",
        "tenant": tenant,
    }
    await execution_harness.stop(runtime)


async def _user(devnet: Devnet) -> Any:
    account = Account.create()
    await fund(devnet.main, account.address)
    return account


async def _statuses(runtime: Any, hashes: list[str]) -> dict[str, Any]:
    async with platform_transaction(runtime.pool, readonly=True) as conn:
        rows = await conn.fetch(
            "SELECT tx_hash, status, block_number, error FROM execution.protected_transactions "
            "WHERE tx_hash = ANY($1::text[])",
            hashes,
        )
    return {row["tx_hash"]: row for row in rows}


async def _all_included(runtime: Any, hashes: list[str]) -> dict[str, Any] | None:
    rows = await _statuses(runtime, hashes)
    if len(rows) == len(hashes) and all(row["status"] == "included" for row in rows.values()):
        return rows
    failed = [
        dict(row) for row in rows.values() if row["status"] not in ("received", "submitted", "included")
    ]
    assert not failed, failed
    return None


async def verify_ordering(*args: str) -> tuple[int, str, str]:
    """`mevaas verify-ordering` as a user runs it (its own process)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from mevaas_sdk.cli import main; main()",
        "verify-ordering",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.asyncio(loop_scope="session")
async def test_100_transactions_from_10_senders_land_in_receipt_order_and_verify(
    fair: dict[str, Any], devnet: Devnet, tmp_path: Path
) -> None:
    runtime = fair["runtime"]
    senders = [await _user(devnet) for _ in range(10)]
    receipts: dict[str, dict[str, Any]] = {}

    async def send_all(user: Any) -> None:
        # Each sender sends its transactions one after the other (nonce order); the ten senders
        # send at the same time, so their receipts interleave.
        for nonce in range(10):
            raw = await signed(devnet.main, user, nonce=nonce, to=user.address, value=nonce + 1, gas=21_000)
            body = await call(fair["url"], "eth_sendRawTransaction", [raw])
            assert "result" in body, body
            receipts[body["result"]] = body["mevaas"]["orderingReceipt"]

    await asyncio.gather(*(send_all(user) for user in senders))
    sequences = sorted(r["sequence"] for r in receipts.values())
    assert sequences == list(range(sequences[0], sequences[0] + 100))  # one per transaction, no gap
    assert {r["keyId"] for r in receipts.values()} and all(r["txHash"] in receipts for r in receipts.values())
    # A status by hash carries the same receipt.
    some = next(iter(receipts))
    status = (await call(fair["url"], "mevaas_getTransactionStatus", [some]))["result"]
    assert status["orderingReceipt"] == receipts[some]
    # Nothing is sent before the next head: then all of them go as one bundle, in receipt order.
    hashes = list(receipts)
    async with block_production(devnet.main):
        rows = await wait_for(lambda: _all_included(runtime, hashes), timeout_s=60)
    landed = {}
    for tx_hash in hashes:
        receipt = await devnet.main.client.get_receipt(tx_hash)
        assert receipt is not None and int(receipt["status"], 16) == 1
        landed[tx_hash] = (int(receipt["blockNumber"], 16), int(receipt["transactionIndex"], 16))
        assert landed[tx_hash][0] == rows[tx_hash]["block_number"]
    by_sequence = sorted(hashes, key=lambda h: receipts[h]["sequence"])
    by_inclusion = sorted(hashes, key=lambda h: landed[h])
    assert by_inclusion == by_sequence
    # The published log verifies, with the receipts the client holds and the key pinned.
    saved = tmp_path / "receipts.json"
    saved.write_text(json.dumps(list(receipts.values())))
    log = json.loads(await asyncio.to_thread(_get, fair["log"]))
    code, out, err = await verify_ordering(
        "--log", fair["log"], "--rpc", devnet.main.anvil.http_url, "--receipts", str(saved),
        "--public-key", log["publicKey"],
    )  # fmt: skip
    assert code == 0, out + err
    assert "verify-ordering OK" in out and "100 included in receipt order" in out


def _get(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
        return body


@pytest.mark.asyncio(loop_scope="session")
async def test_a_reordered_block_fails_verification(fair: dict[str, Any], devnet: Devnet) -> None:
    runtime = fair["runtime"]
    first, second = await _user(devnet), await _user(devnet)
    raw_first = await signed(devnet.main, first, nonce=0, to=first.address, value=1, gas=21_000)
    raw_second = await signed(devnet.main, second, nonce=0, to=second.address, value=1, gas=21_000)
    a = await call(fair["url"], "eth_sendRawTransaction", [raw_first])
    b = await call(fair["url"], "eth_sendRawTransaction", [raw_second])
    seq_a, seq_b = a["mevaas"]["orderingReceipt"]["sequence"], b["mevaas"]["orderingReceipt"]["sequence"]
    assert seq_b == seq_a + 1
    # A builder that does not honour the receipts: both straight into anvil's pool (FIFO), the
    # later one first, and mined before the platform's bundle.
    await devnet.main.client.request("eth_sendRawTransaction", [raw_second])
    await devnet.main.client.request("eth_sendRawTransaction", [raw_first])
    await devnet.main.client.request("evm_mine", [])
    await devnet.main.client.request("evm_mine", [])  # one on top: receipts book with 1 confirmation
    await wait_for(lambda: _all_included(runtime, [a["result"], b["result"]]))
    code, out, err = await verify_ordering(
        "--log", fair["log"], "--rpc", devnet.main.anvil.http_url,
        "--from-sequence", str(seq_a), "--to-sequence", str(seq_b),
    )  # fmt: skip
    assert code == 1, out + err
    assert f"FAIL swap: entry {seq_b} (tx {b['result']})" in err
    assert f"before entry {seq_a}" in err and "verify-ordering FAILED: 1 problem(s)" in err


@pytest.mark.asyncio(loop_scope="session")
async def test_a_tampered_entry_fails_verification_and_the_service_cannot_rewrite_one(
    fair: dict[str, Any], devnet: Devnet, postgres_server: str
) -> None:
    runtime = fair["runtime"]
    chain_id = devnet.main.spec.chain_id
    user = await _user(devnet)
    raw = await signed(devnet.main, user, nonce=0, to=user.address, value=1, gas=21_000)
    body = await call(fair["url"], "eth_sendRawTransaction", [raw])
    sequence = body["mevaas"]["orderingReceipt"]["sequence"]
    async with block_production(devnet.main):
        await wait_for(lambda: _all_included(runtime, [body["result"]]))
    # The service's own roles cannot rewrite the log.
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with platform_transaction(runtime.pool) as conn:
            await conn.execute(
                "UPDATE execution.ordering_log SET tx_hash = tx_hash WHERE sequence = $1", sequence
            )
    admin = await asyncpg.connect(postgres_server)
    try:
        await admin.execute(
            "UPDATE execution.ordering_log SET received_at_unix_nanos = received_at_unix_nanos - 1 "
            "WHERE chain_id = $1 AND sequence = $2",
            chain_id,
            sequence,
        )
        try:
            code, out, err = await verify_ordering(
                "--log", fair["log"], "--rpc", devnet.main.anvil.http_url, "--from-sequence", str(sequence)
            )
        finally:
            await admin.execute(
                "UPDATE execution.ordering_log SET received_at_unix_nanos = received_at_unix_nanos + 1 "
                "WHERE chain_id = $1 AND sequence = $2",
                chain_id,
                sequence,
            )
    finally:
        await admin.close()
    assert code == 1, out + err
    assert f"FAIL tampered: entry {sequence}'s hash does not match its contents" in err
    assert f"FAIL bad signature: entry {sequence}" in err


@pytest.mark.asyncio(loop_scope="session")
async def test_grpc_submission_returns_the_receipt_and_it_is_published(
    fair: dict[str, Any], devnet: Devnet, tenancy_service: Any, nats_server: str
) -> None:
    runtime = fair["runtime"]
    user = await _user(devnet)
    raw = await signed(devnet.main, user, nonce=0, to=user.address, value=1, gas=21_000)
    tenant_id = fair["tenant"].tenant.tenant_id
    received: list[events_pb2.OrderingEntryAppended] = []

    async def on_message(message: Any) -> None:
        received.append(events_pb2.OrderingEntryAppended.FromString(message.data))

    nc = await nats.connect(nats_server)
    try:
        await nc.subscribe(f"exec.{tenant_id}.ordering", cb=on_message)
        client = clients(tenancy_service)(
            fair["tenant"].owner_key, execution=f"127.0.0.1:{runtime.grpc_port}"
        )
        async with client:
            stub = execution_stub(client)
            response = await stub.SubmitProtectedTransaction(
                execution_pb2.SubmitProtectedTransactionRequest(
                    idempotency_key=str(uuid.uuid4()),
                    chain_id=devnet.main.spec.chain_id,
                    raw_transaction=raw,
                    mode=execution_pb2.PROTECTION_MODE_FAIR_ORDERING,
                )
            )
            receipt = response.transaction.ordering_receipt
            assert receipt.sequence > 0 and receipt.tx_hash == response.transaction.tx_hash.lower()
            assert len(receipt.signature) == 128 and len(receipt.entry_hash) == 64
            got = await stub.GetProtectedTransaction(
                execution_pb2.GetProtectedTransactionRequest(tx_hash=response.transaction.tx_hash)
            )
            assert got.transaction.ordering_receipt == receipt
            # Billed: the professional plan's 2.00 per protected transaction plus, as it sets no
            # fair-ordering fee, the tier's standard 1.00 (mevaas_core.protection_fees).
            assert fair["tenant"].tenant.plan.protection_fee_per_transaction.amount == "2.00"
            assert response.transaction.protection_fee == common_pb2.Money(currency_code="USD", amount="3.00")
            assert got.transaction.protection_fee == response.transaction.protection_fee
        # Out of turn: the sender's nonce 2 before its nonce 1 is refused and nothing recorded.
        skipped = await signed(devnet.main, user, nonce=2, to=user.address, value=1, gas=21_000)
        body = await call(fair["url"], "eth_sendRawTransaction", [skipped])
        assert "out of turn" in body["error"]["message"], body
        assert "the next is 1" in body["error"]["message"]
        assert (
            await call(fair["url"], "mevaas_getTransactionStatus", ["0x" + keccak(hexstr=skipped).hex()])
        )["error"]

        async def published_receipt() -> list[events_pb2.OrderingEntryAppended]:
            return [e for e in received if e.receipt.sequence == receipt.sequence]

        published = await wait_for(published_receipt)
        assert published[0].receipt == receipt
    finally:
        await nc.close()
    async with block_production(devnet.main):
        await wait_for(lambda: _all_included(runtime, [response.transaction.tx_hash]))
