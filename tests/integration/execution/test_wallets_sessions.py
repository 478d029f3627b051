"""Wallets (keys never leave the service) and session lifecycle through the gRPC API, persisted
across a restart of the service on the same database."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import grpc
import pytest

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas_core.bus import Bus
from mevaas_local.devnet import Devnet
from mevaas_sdk import MevaasClient
from tests.fixtures.execution import ExecutionHarness, execution_stub, wait_for
from tests.integration.execution.helpers import start_running, tenant_with_wallet
from tests.integration.tenancy.helpers import create_tenant, field_violations

pytestmark = pytest.mark.integration

# A well-formed key nobody uses: what must never appear in the database or the logs.
IMPORTED_KEY = "0x" + "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"


async def dump_schema(postgres_server: str) -> str:
    """Every row of every execution table, as text (bytea as hex)."""
    conn = await asyncpg.connect(postgres_server)
    try:
        tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'execution'")
        parts: list[str] = []
        for table in tables:
            rows = await conn.fetch(f"SELECT t::text AS row FROM execution.{table['tablename']} t")
            parts.extend(r["row"] for r in rows)
        return "\n".join(parts)
    finally:
        await conn.close()


async def test_wallets_never_expose_keys(
    execution_service: Any,
    admin_client: MevaasClient,
    client_for: Callable[..., MevaasClient],
    postgres_server: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    tenant = await create_tenant(admin_client)
    async with client_for(tenant.owner_key, execution=f"127.0.0.1:{execution_service.grpc_port}") as client:
        stub = execution_stub(client)
        created = await stub.CreateWallet(
            execution_pb2.CreateWalletRequest(idempotency_key="w1", label="generated")
        )
        replay = await stub.CreateWallet(
            execution_pb2.CreateWalletRequest(idempotency_key="w1", label="generated")
        )
        assert replay.wallet == created.wallet
        assert created.wallet.is_default and not created.wallet.imported
        imported = await stub.ImportWallet(
            execution_pb2.ImportWalletRequest(
                idempotency_key="w2", private_key=IMPORTED_KEY, label="imported", make_default=True
            )
        )
        assert imported.wallet.imported and imported.wallet.is_default
        with pytest.raises(grpc.aio.AioRpcError) as duplicate:
            await stub.ImportWallet(
                execution_pb2.ImportWalletRequest(idempotency_key="w3", private_key=IMPORTED_KEY)
            )
        assert duplicate.value.code() == grpc.StatusCode.ALREADY_EXISTS
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.ImportWallet(execution_pb2.ImportWalletRequest(idempotency_key="", private_key="0x00"))
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert set(field_violations(bad.value)) == {"idempotency_key", "private_key"}
        with pytest.raises(grpc.aio.AioRpcError) as zero:
            await stub.ImportWallet(
                execution_pb2.ImportWalletRequest(idempotency_key="w4", private_key="0x" + "0" * 64)
            )
        assert field_violations(zero.value) == ["private_key"]
        listed = await stub.ListWallets(execution_pb2.ListWalletsRequest())
        assert [w.address for w in listed.wallets] == [created.wallet.address, imported.wallet.address]
        assert [w.is_default for w in listed.wallets] == [False, True]
        paged = await stub.ListWallets(
            execution_pb2.ListWalletsRequest(page=common_pb2.PageRequest(page_size=1))
        )
        assert len(paged.wallets) == 1 and paged.page.next_page_token

    other = await create_tenant(admin_client)
    async with client_for(other.owner_key, execution=f"127.0.0.1:{execution_service.grpc_port}") as client:
        assert not (await execution_stub(client).ListWallets(execution_pb2.ListWalletsRequest())).wallets

    secret = IMPORTED_KEY[2:]
    dump = await dump_schema(postgres_server)
    assert imported.wallet.address.lower()[2:] in dump.lower()
    assert secret not in dump.lower()
    assert secret not in caplog.text.lower()


async def test_session_lifecycle_survives_restart(
    execution_harness: ExecutionHarness,
    admin_client: MevaasClient,
    client_for: Callable[..., MevaasClient],
    devnet: Devnet,
    bus: Bus,
) -> None:
    first = await execution_harness.start()
    tenant = await tenant_with_wallet(client_for, first, devnet.main)
    events: list[events_pb2.ExecutionSessionEvent] = []

    async def collect(msg: Any) -> None:
        events.append(events_pb2.ExecutionSessionEvent.FromString(msg.data))

    subscription = await bus.nc.subscribe(f"exec.{tenant.tenant_id}.session", cb=collect)
    strategy_id = str(uuid.uuid4())
    session = await start_running(tenant, devnet.chains, strategy_id)
    assert session.wallet_address == tenant.wallet
    assert sorted(session.chain_ids) == sorted(c.spec.chain_id for c in devnet.chains)
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await tenant.stub.StartExecution(
            execution_pb2.StartExecutionRequest(idempotency_key="other", strategy_id=strategy_id)
        )
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    paused = await tenant.stub.PauseExecution(
        execution_pb2.PauseExecutionRequest(session_id=session.session_id, reason="lunch")
    )
    assert paused.session.state == common_pb2.EXECUTION_STATE_PAUSED
    await tenant.client.close()
    await execution_harness.stop(first)

    second = await execution_harness.start()
    client = client_for_endpoint(client_for, tenant, second)
    async with client:
        stub = execution_stub(client)
        status = await stub.GetExecutionStatus(
            execution_pb2.GetExecutionStatusRequest(session_id=session.session_id)
        )
        assert status.session.state == common_pb2.EXECUTION_STATE_PAUSED
        assert status.session.state_reason == "lunch"
        resumed = await stub.ResumeExecution(
            execution_pb2.ResumeExecutionRequest(session_id=session.session_id)
        )
        assert resumed.session.state == common_pb2.EXECUTION_STATE_RUNNING
        stopped = await stub.StopExecution(execution_pb2.StopExecutionRequest(session_id=session.session_id))
        assert stopped.session.state == common_pb2.EXECUTION_STATE_STOPPED
        assert stopped.session.HasField("stopped_at")
        again_stopped = await stub.StopExecution(
            execution_pb2.StopExecutionRequest(session_id=session.session_id)
        )
        assert again_stopped.session.state == common_pb2.EXECUTION_STATE_STOPPED
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.PauseExecution(execution_pb2.PauseExecutionRequest(session_id=session.session_id))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.GetExecutionStatus(execution_pb2.GetExecutionStatusRequest(session_id="nope"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await stub.StartExecution(execution_pb2.StartExecutionRequest())
        assert set(field_violations(invalid.value)) == {"idempotency_key", "strategy_id"}
        # A new session of the same strategy may start once the old one stopped; executors are reused.
        restarted = await stub.StartExecution(
            execution_pb2.StartExecutionRequest(idempotency_key=str(uuid.uuid4()), strategy_id=strategy_id)
        )
        assert restarted.session.state == common_pb2.EXECUTION_STATE_RUNNING
        listed = await stub.ListExecutionSessions(
            execution_pb2.ListExecutionSessionsRequest(strategy_id=strategy_id)
        )
        assert [s.session_id for s in listed.sessions] == [restarted.session.session_id, session.session_id]

    # Core NATS subscribers also see an outbox re-publish that JetStream deduplicated: key by sequence.
    def by_sequence() -> dict[int, str]:
        return {
            e.sequence: common_pb2.ExecutionState.Name(e.state)
            for e in events
            if e.session_id == session.session_id
        }

    async def all_events() -> bool:
        return len(by_sequence()) >= 5

    await wait_for(all_events, timeout_s=10)
    states = [state for _, state in sorted(by_sequence().items())]
    assert states == [
        "EXECUTION_STATE_STARTING",
        "EXECUTION_STATE_RUNNING",
        "EXECUTION_STATE_PAUSED",
        "EXECUTION_STATE_RUNNING",
        "EXECUTION_STATE_STOPPED",
    ]
    await subscription.unsubscribe()
    await execution_harness.stop(second)


def client_for_endpoint(client_for: Callable[..., MevaasClient], tenant: Any, runtime: Any) -> MevaasClient:
    return client_for(tenant.owner_key, execution=f"127.0.0.1:{runtime.grpc_port}")
