"""The Protect RPC end to end on the devnet (anvil, relay), with real tenancy (API keys),
PostgreSQL and NATS: web3.py pointed at it sends and sees inclusion; a reverting transaction is
never included and its status gives the revert reason; a refusal by the relay is retried; the
edge refuses malformed, foreign-chain and badly signed transactions with clear JSON-RPC errors;
resending the same raw transaction records and sends nothing twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import rlp  # type: ignore[import-untyped]
from eth_account import Account
from eth_typing import HexStr
from eth_utils.crypto import keccak
from web3 import AsyncHTTPProvider, AsyncWeb3

from mevaas.events.v1 import events_pb2
from mevaas_chain.registry import ChainRegistry
from mevaas_core.db import platform_transaction
from mevaas_local.devnet import Devnet
from tests.fixtures.execution import ExecutionHarness, block_production, fund, wait_for
from tests.fixtures.platform import BOOTSTRAP_ADMIN_KEY
from tests.integration.execution.helpers import clients
from tests.integration.protection.helpers import call, expired_swap, signed
from tests.integration.tenancy.helpers import create_tenant

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def protect(
    execution_harness: ExecutionHarness, tenancy_service: Any, devnet: Devnet
) -> AsyncIterator[dict[str, Any]]:
    runtime = await execution_harness.start(
        http_port=0, tenancy_address=f"127.0.0.1:{tenancy_service.grpc_port}", protect_max_blocks=25
    )
    async with clients(tenancy_service)(BOOTSTRAP_ADMIN_KEY) as admin:
        tenant = await create_tenant(admin)
    chain_id = devnet.main.spec.chain_id
    base = f"http://127.0.0.1:{runtime.protect_rpc_port}/rpc/{chain_id}"
    yield {
        "runtime": runtime,
        "url": f"{base}/{tenant.owner_key}",
        "base": base,
        "key": tenant.owner_key,
        "tenant": tenant.tenant,
    }
    await execution_harness.stop(runtime)


async def _user(devnet: Devnet) -> Any:
    account = Account.create()
    await fund(devnet.main, account.address)
    return account


@pytest.mark.asyncio(loop_scope="session")
async def test_web3_sends_through_the_protect_rpc_and_sees_inclusion(
    protect: dict[str, Any], devnet: Devnet
) -> None:
    user = await _user(devnet)
    w3 = AsyncWeb3(AsyncHTTPProvider(protect["url"]))
    assert await w3.eth.chain_id == devnet.main.spec.chain_id
    nonce = await w3.eth.get_transaction_count(user.address, "pending")
    raw = await signed(devnet.main, user, nonce=nonce, to=user.address, value=12345, gas=21_000)
    sent = await w3.eth.send_raw_transaction(HexStr(raw))
    # A second transaction signed at the nonce the Protect RPC reports as pending (the first is
    # held privately, not in any public pool).
    assert await w3.eth.get_transaction_count(user.address, "pending") == nonce + 1
    async with block_production(devnet.main):
        receipt = await w3.eth.wait_for_transaction_receipt(sent, timeout=30)
    assert receipt["status"] == 1

    async def included() -> dict[str, Any] | None:
        body = await call(protect["url"], "mevaas_getTransactionStatus", ["0x" + sent.hex()])
        return body["result"] if body["result"]["status"] == "INCLUDED" else None

    async with block_production(devnet.main):
        status = await wait_for(included)
    assert int(status["blockNumber"], 16) == receipt["blockNumber"]
    assert status["attempts"] >= 1 and status["reason"] is None
    # Billed at the tenant's plan (professional-standard: 2.00 per protected transaction).
    plan = protect["tenant"].plan
    assert plan.protection_fee_per_transaction.amount == "2.00"
    assert status["protectionFee"] == {
        "amount": "2.00",
        "currency": "USD",
        "protection": "2.00",
        "fairOrdering": "0",
        "plan": "professional-standard",
    }
    # Every exec.<tenant>.protected event carries that recorded fee: analytics bills it, not
    # the plan in force at invoice time.
    async with platform_transaction(protect["runtime"].pool, readonly=True) as conn:
        payloads = await conn.fetch(
            "SELECT o.payload FROM execution.outbox o JOIN execution.protected_transactions p "
            "ON o.event_id LIKE 'protected:' || p.protected_transaction_id || ':%' "
            "WHERE p.tx_hash = $1 ORDER BY o.id",
            "0x" + sent.hex(),
        )
    events = [events_pb2.ProtectedTransactionEvent.FromString(r["payload"]) for r in payloads]
    assert events[0].status == "received" and events[-1].status == "included"
    assert {
        (e.protection_fee.currency_code, e.protection_fee.amount, e.fair_ordering_fee.amount) for e in events
    } == {("USD", "2.00", "0")}


@pytest.mark.asyncio(loop_scope="session")
async def test_a_reverting_transaction_is_never_included_and_says_why(
    protect: dict[str, Any], devnet: Devnet
) -> None:
    user = await _user(devnet)
    router = devnet.main.config.dexes[0].router
    assert router is not None
    raw = await signed(
        devnet.main, user, nonce=0, to=router, data=expired_swap(router, user.address), gas=200_000
    )
    body = await call(protect["url"], "eth_sendRawTransaction", [raw])
    assert body["error"]["code"] == 3
    assert "UniswapV2Router: EXPIRED" in body["error"]["message"]
    assert body["error"]["data"].startswith("0x08c379a0")
    tx_hash = "0x" + keccak(hexstr=raw).hex()
    status = (await call(protect["url"], "mevaas_getTransactionStatus", [tx_hash]))["result"]
    assert status["status"] == "FAILED"
    assert status["revertReason"] == "UniswapV2Router: EXPIRED"
    await devnet.main.mine(2)
    assert await devnet.main.client.get_receipt(tx_hash) is None
    # Resending it answers the same, and nothing is sent.
    again = await call(protect["url"], "eth_sendRawTransaction", [raw])
    assert again["error"]["message"] == body["error"]["message"]


@pytest.mark.asyncio(loop_scope="session")
async def test_a_relay_refusal_is_retried_not_terminal(protect: dict[str, Any], devnet: Devnet) -> None:
    runtime = protect["runtime"]
    user = await _user(devnet)
    raw = await signed(devnet.main, user, nonce=0, to=user.address, value=1, gas=21_000)
    body = await call(protect["url"], "eth_sendRawTransaction", [raw])
    tx_hash = body["result"]
    async with platform_transaction(runtime.pool, readonly=True) as conn:
        row = await conn.fetchrow(
            "SELECT * FROM execution.protected_transactions WHERE tx_hash = $1", tx_hash
        )
    assert row is not None and row["status"] == "submitted"
    head = await devnet.main.client.block_number()
    # An attempt for a block that is already mined (what happens when a block lands between
    # reading the head and the relay's receipt): the relay refuses it "in the past"; the
    # submission re-targets the block after the head at once.
    after = await runtime.core.protection.send(row, head - 1)
    assert after is not None and after["status"] == "submitted"
    assert after["last_target_block"] == head + 1 and after["attempts"] == row["attempts"] + 1
    # Missed blocks (the relay drops a bundle whose block passed): each new head resends it.
    async with block_production(devnet.main):

        async def included() -> Any:
            async with platform_transaction(runtime.pool, readonly=True) as conn:
                current = await conn.fetchrow(
                    "SELECT * FROM execution.protected_transactions WHERE tx_hash = $1", tx_hash
                )
            return current if current is not None and current["status"] == "included" else None

        final = await wait_for(included)
    assert final["block_number"] > 0


@pytest.mark.asyncio(loop_scope="session")
async def test_an_unreachable_relay_keeps_the_transaction_in_flight(
    protect: dict[str, Any], devnet: Devnet
) -> None:
    from mevaas_execution.chains import ChainGateway
    from mevaas_execution.protection.submission import ProtectedSubmission

    runtime = protect["runtime"]
    user = await _user(devnet)
    raw = await signed(devnet.main, user, nonce=0, to=user.address, value=2, gas=21_000)
    tx_hash = (await call(protect["url"], "eth_sendRawTransaction", [raw]))["result"]
    config = devnet.main.config.model_copy(update={"relay_url": "http://127.0.0.1:9/"})
    broken = ChainGateway(ChainRegistry(chains=[config]), timeout_s=1.0)
    try:
        async with platform_transaction(runtime.pool, readonly=True) as conn:
            row = await conn.fetchrow(
                "SELECT * FROM execution.protected_transactions WHERE tx_hash = $1", tx_hash
            )
        assert row is not None
        after = await ProtectedSubmission(runtime.pool, broken).send(
            row, await devnet.main.client.block_number()
        )
    finally:
        await broken.close()
    assert after is not None and after["status"] == "submitted" and "relay unreachable" in after["error"]


@pytest.mark.asyncio(loop_scope="session")
async def test_the_edge_refuses_bad_transactions_with_clear_errors(
    protect: dict[str, Any], devnet: Devnet
) -> None:
    url = protect["url"]
    user = await _user(devnet)
    raw = await signed(devnet.main, user, nonce=0, to=user.address, value=1, gas=21_000)
    cases = {
        "0xzz": "hex",
        "0x" + "c0" * 3: "not a signed transaction",
        "0x02" + "ff" * 10: "not a signed transaction",
    }
    for bad, reason in cases.items():
        body = await call(url, "eth_sendRawTransaction", [bad])
        assert body["error"]["code"] == -32602 and reason in body["error"]["message"], body
    foreign = await signed(devnet.main, user, nonce=0, to=user.address, value=1, gas=21_000, chain_id=1)
    body = await call(url, "eth_sendRawTransaction", [foreign])
    assert body["error"]["code"] == -32602 and "signed for chain 1" in body["error"]["message"]
    # A signature whose s is zero recovers no signer. Re-encoded, not spliced: s is a minimal RLP
    # integer, so one signature in 256 has a 31-byte s and overwriting the last 32 bytes broke the
    # envelope instead ("must have 12 fields").
    assert raw.startswith("0x02")
    fields = rlp.decode(bytes.fromhex(raw[4:]))
    tampered = "0x02" + rlp.encode([*fields[:-1], b""]).hex()
    body = await call(url, "eth_sendRawTransaction", [tampered])
    assert body["error"]["code"] == -32602 and "signature" in body["error"]["message"]
    body = await call(url, "anvil_setBalance", [user.address, "0x1"])
    assert body["error"]["code"] == -32601
    body = await call(url, "eth_sendTransaction", [{"from": user.address}])
    assert body["error"]["code"] == -32601
    body = await call(protect["base"], "eth_chainId", [])
    assert body["http_status"] == 401 and "API key" in body["error"]["message"]
    body = await call(protect["base"] + "/not-a-key", "eth_chainId", [])
    assert body["http_status"] == 401
    body = await call(protect["base"], "eth_chainId", [], headers={"X-API-Key": protect["key"]})
    assert body["result"] == hex(devnet.main.spec.chain_id)


@pytest.mark.asyncio(loop_scope="session")
async def test_a_resent_raw_transaction_is_recorded_and_sent_once(
    protect: dict[str, Any], devnet: Devnet
) -> None:
    runtime = protect["runtime"]
    user = await _user(devnet)
    raw = await signed(devnet.main, user, nonce=0, to=user.address, value=3, gas=21_000)
    first = await call(protect["url"], "eth_sendRawTransaction", [raw])
    second = await call(protect["url"], "eth_sendRawTransaction", [raw])
    assert first["result"] == second["result"]
    async with platform_transaction(runtime.pool, readonly=True) as conn:
        rows = await conn.fetch(
            "SELECT attempts FROM execution.protected_transactions WHERE tx_hash = $1", first["result"]
        )
    assert [r["attempts"] for r in rows] == [1]


@pytest.mark.asyncio(loop_scope="session")
async def test_a_resend_after_inclusion_answers_the_record_not_nonce_too_low(
    protect: dict[str, Any], devnet: Devnet
) -> None:
    # A resend is not looked up before the simulation: once the transaction landed, its nonce is
    # used, and the record must still be what answers.
    user = await _user(devnet)
    raw = await signed(devnet.main, user, nonce=0, to=user.address, value=4, gas=21_000)
    first = await call(protect["url"], "eth_sendRawTransaction", [raw])

    async def included() -> dict[str, Any] | None:
        body = await call(protect["url"], "mevaas_getTransactionStatus", [first["result"]])
        return body["result"] if body["result"]["status"] == "INCLUDED" else None

    async with block_production(devnet.main):
        await wait_for(included)
    again = await call(protect["url"], "eth_sendRawTransaction", [raw])
    assert again == first


@pytest.mark.asyncio(loop_scope="session")
async def test_concurrent_sends_are_each_answered_once_submitted(
    protect: dict[str, Any], devnet: Devnet
) -> None:
    # The "submitted" writes of concurrent sends are committed together (protection/writes.py):
    # each caller is still answered only once its own row says SUBMITTED.
    users = [await _user(devnet) for _ in range(12)]
    raws = [await signed(devnet.main, u, nonce=0, to=u.address, value=5, gas=21_000) for u in users]
    answers = await asyncio.gather(*(call(protect["url"], "eth_sendRawTransaction", [r]) for r in raws))
    hashes = [a["result"] for a in answers]
    assert hashes == ["0x" + keccak(hexstr=r).hex() for r in raws]
    async with platform_transaction(protect["runtime"].pool, readonly=True) as conn:
        rows = await conn.fetch(
            "SELECT tx_hash, attempts, submitted_at, last_target_block FROM execution.protected_transactions "
            "WHERE tx_hash = ANY($1::text[])",
            hashes,
        )
    assert sorted(r["tx_hash"] for r in rows) == sorted(hashes)
    # (The tracker may already have moved them on: the devnet mines while users are funded.)
    assert all(r["submitted_at"] is not None and r["attempts"] >= 1 for r in rows)
    assert all(r["last_target_block"] > 0 for r in rows)


# The devnet demo entry of the shipped sample list (its key is published in docs/protection.md).
SANCTIONED_KEY = "0xac665b474a4107de0d848d98aa00c6fb18da5404b700d4b9788571f807980f38"


async def test_a_sanctioned_sender_or_recipient_is_refused_at_ingress(
    protect: dict[str, Any], devnet: Devnet
) -> None:
    sanctioned = Account.from_key(SANCTIONED_KEY)
    await fund(devnet.main, sanctioned.address)
    raw = await signed(devnet.main, sanctioned, nonce=0, to=sanctioned.address, value=1, gas=21_000)
    body = await call(protect["url"], "eth_sendRawTransaction", [raw])
    assert body["error"]["code"] == -32003
    assert body["error"]["data"] == {"reasonCode": "RISK_REASON_CODE_SANCTIONED_COUNTERPARTY"}
    assert sanctioned.address.lower() in body["error"]["message"]
    tx_hash = "0x" + keccak(hexstr=raw).hex()
    status = (await call(protect["url"], "mevaas_getTransactionStatus", [tx_hash]))["result"]
    assert status["status"] == "FAILED" and "RISK_REASON_CODE_SANCTIONED_COUNTERPARTY" in status["reason"]
    assert status["protectionFee"] is None  # refused at ingress: not billed
    user = await _user(devnet)
    to_listed = await signed(devnet.main, user, nonce=0, to=sanctioned.address, value=1, gas=21_000)
    body = await call(protect["url"], "eth_sendRawTransaction", [to_listed])
    assert body["error"]["code"] == -32003 and sanctioned.address.lower() in body["error"]["message"]
    await devnet.main.mine(1)
    assert await devnet.main.client.get_receipt("0x" + keccak(hexstr=to_listed).hex()) is None
