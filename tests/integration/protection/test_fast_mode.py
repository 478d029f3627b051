"""Fast mode end to end on the devnet: a chain with three relays (its primary refusing every bundle,
two more taking them, all feeding the one block producer), the execution service serving the
Protect RPC with real tenancy, PostgreSQL and NATS.

A fast transaction (``?fast=true``) goes to every relay at once: the primary's refusal is noted,
not terminal, since the others took it; it lands once and is booked once. The same kind of
transaction without fast mode stays out (the primary alone refuses it). Fast mode with fair
ordering is refused, naming the field."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import nats
import pytest
import pytest_asyncio
from eth_account import Account

from mevaas.events.v1 import events_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas_chain.registry import ChainRegistry, RelayConfig
from mevaas_core.db import platform_transaction
from mevaas_local.devnet import Devnet
from tests.fixtures.execution import ExecutionHarness, execution_stub, fund, wait_for
from tests.fixtures.platform import BOOTSTRAP_ADMIN_KEY
from tests.integration.execution.helpers import clients
from tests.integration.protection.helpers import call, signed
from tests.integration.tenancy.helpers import create_tenant

pytestmark = pytest.mark.integration

REFUSAL = "bundles from this sender are not accepted"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fast(
    execution_harness: ExecutionHarness,
    tenancy_service: Any,
    devnet: Devnet,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[dict[str, Any]]:
    chain = devnet.main
    relays = [
        await chain.add_relay(refuse_bundles=REFUSAL),
        await chain.add_relay(),
        await chain.add_relay(),
    ]
    config = chain.config.model_copy(
        update={
            "relay_url": relays[0].url + "/relay",
            "fast_relays": [
                RelayConfig(name="second", url=relays[1].url + "/relay"),
                RelayConfig(name="third", url=relays[2].url + "/relay"),
            ],
        }
    )
    chains_file = tmp_path_factory.mktemp("fast") / "chains.json"
    ChainRegistry(
        chains=[config if c.chain_id == config.chain_id else c for c in devnet.registry.chains]
    ).write(chains_file)
    runtime = await execution_harness.start(
        http_port=0,
        tenancy_address=f"127.0.0.1:{tenancy_service.grpc_port}",
        protect_max_blocks=25,
        chains_file=str(chains_file),
    )
    async with clients(tenancy_service)(BOOTSTRAP_ADMIN_KEY) as admin:
        tenant = await create_tenant(admin)
    base = f"http://127.0.0.1:{runtime.protect_rpc_port}/rpc/{chain.spec.chain_id}/{tenant.owner_key}"
    try:
        yield {"runtime": runtime, "url": base, "tenant": tenant}
    finally:
        await execution_harness.stop(runtime)
        for relay in relays:
            await relay.stop()
            chain.extra_relays.remove(relay)


async def _status(url: str, tx_hash: str) -> dict[str, Any]:
    body = await call(url, "mevaas_getTransactionStatus", [tx_hash])
    result: dict[str, Any] = body["result"]
    return result


@pytest.mark.asyncio(loop_scope="session")
async def test_a_fast_transaction_lands_through_the_relays_that_took_it_once(
    fast: dict[str, Any], devnet: Devnet, nats_server: str
) -> None:
    chain = devnet.main
    user, other = Account.create(), Account.create()
    await fund(chain, user.address)
    await fund(chain, other.address)
    tenant_id = fast["tenant"].tenant.tenant_id
    events: list[events_pb2.ProtectedTransactionEvent] = []

    async def on_event(message: Any) -> None:
        events.append(events_pb2.ProtectedTransactionEvent.FromString(message.data))

    nc = await nats.connect(nats_server)
    try:
        await nc.subscribe(f"exec.{tenant_id}.protected", cb=on_event)
        raw = await signed(chain, user, nonce=0, to=user.address, value=7, gas=21_000)
        tx_hash = (await call(fast["url"] + "?fast=true", "eth_sendRawTransaction", [raw]))["result"]
        plain_raw = await signed(chain, other, nonce=0, to=other.address, value=7, gas=21_000)
        plain = (await call(fast["url"], "eth_sendRawTransaction", [plain_raw]))["result"]

        status = await _status(fast["url"], tx_hash)
        assert status["status"] == "SUBMITTED" and status["fast"] is True and status["reason"] is None
        by_relay = {o["relay"]: o for o in status["relays"]}
        assert set(by_relay) == {"primary", "second", "third"}
        assert not by_relay["primary"]["accepted"] and REFUSAL in by_relay["primary"]["reason"]
        target = int(status["lastTargetBlock"], 16)
        for name in ("second", "third"):
            assert by_relay[name] == {"relay": name, "accepted": True, "targetBlock": target, "reason": ""}
        # Without fast mode the primary relay is the only one, and it refused: still in flight.
        plain_status = await _status(fast["url"], plain)
        assert plain_status["status"] == "RECEIVED" and REFUSAL in plain_status["reason"]
        assert plain_status["fast"] is False and plain_status["relays"] is None

        # Two relays hold the same bundle: the builder holds it once, and it lands.
        block = await chain.producer.mine_block()
        assert block.number == target and tx_hash in block.transactions
        assert len(block.bundles) == len(set(block.bundles)) and not block.dropped_bundles
        assert plain not in block.transactions

        async def included() -> dict[str, Any] | None:
            await chain.producer.mine_block()  # the receipt is booked one confirmation deep
            found = await _status(fast["url"], tx_hash)
            return found if found["status"] == "INCLUDED" else None

        final = await wait_for(included)
        assert int(final["blockNumber"], 16) == target
        await wait_for(lambda: _included_events(events, tx_hash))
        await chain.producer.mine_block()
        await chain.producer.mine_block()
        async with platform_transaction(fast["runtime"].pool, readonly=True) as conn:
            rows = await conn.fetch(
                "SELECT status, fast FROM execution.protected_transactions WHERE tx_hash = $1", tx_hash
            )
        assert [(r["status"], r["fast"]) for r in rows] == [("included", True)]
        # Booked once: one INCLUDED event (the one analytics bills and reports from).
        assert len(await _included_events(events, tx_hash)) == 1
        assert (await _status(fast["url"], plain))["status"] == "RECEIVED"
    finally:
        await nc.close()


async def _included_events(
    events: list[events_pb2.ProtectedTransactionEvent], tx_hash: str
) -> list[events_pb2.ProtectedTransactionEvent]:
    return [e for e in events if e.tx_hash.lower() == tx_hash.lower() and e.status.lower() == "included"]


@pytest.mark.asyncio(loop_scope="session")
async def test_fast_mode_is_for_private_transactions_only(
    fast: dict[str, Any], devnet: Devnet, tenancy_service: Any
) -> None:
    chain = devnet.main
    user = Account.create()
    await fund(chain, user.address)
    raw = await signed(chain, user, nonce=0, to=user.address, value=1, gas=21_000)
    body = await call(fast["url"] + "?mode=fair&fast=true", "eth_sendRawTransaction", [raw])
    assert body["http_status"] == 400 and "fast is for private transactions" in body["error"]["message"]
    body = await call(fast["url"] + "?fast=maybe", "eth_sendRawTransaction", [raw])
    assert body["http_status"] == 400 and "fast must be true or false" in body["error"]["message"]
    client = clients(tenancy_service)(
        fast["tenant"].owner_key, execution=f"127.0.0.1:{fast['runtime'].grpc_port}"
    )
    async with client:
        stub = execution_stub(client)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.SubmitProtectedTransaction(
                execution_pb2.SubmitProtectedTransactionRequest(
                    idempotency_key=str(uuid.uuid4()),
                    chain_id=chain.spec.chain_id,
                    raw_transaction=raw,
                    mode=execution_pb2.PROTECTION_MODE_FAIR_ORDERING,
                    fast=True,
                )
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "fast" in (refused.value.details() or "")
        # Over gRPC a private transaction may go fast: Submit answers what each relay said.
        response = await stub.SubmitProtectedTransaction(
            execution_pb2.SubmitProtectedTransactionRequest(
                idempotency_key=str(uuid.uuid4()),
                chain_id=chain.spec.chain_id,
                raw_transaction=raw,
                mode=execution_pb2.PROTECTION_MODE_PRIVATE_BUNDLE,
                fast=True,
            )
        )
    sent = response.transaction
    assert sent.fast and sent.status == execution_pb2.PROTECTED_TRANSACTION_STATUS_SUBMITTED
    assert [(o.relay, o.accepted) for o in sent.relay_outcomes] == [
        ("primary", False),
        ("second", True),
        ("third", True),
    ]
