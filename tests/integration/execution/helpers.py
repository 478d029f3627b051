"""Helpers for the execution tests: a tenant with a funded wallet and a running session."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mevaas.common.v1 import common_pb2
from mevaas.execution.v1 import execution_pb2, execution_pb2_grpc
from mevaas_local.devnet import DevnetChain
from mevaas_sdk import ClientConfig, MevaasClient
from tests.fixtures.execution import block_production, execution_stub, fund, wait_for
from tests.fixtures.platform import BOOTSTRAP_ADMIN_KEY
from tests.integration.tenancy.helpers import TRADING_PHASE, create_tenant


@dataclass
class TenantSession:
    tenant_id: str
    owner_key: str
    client: MevaasClient
    stub: execution_pb2_grpc.ExecutionServiceAsyncStub
    wallet: str


def clients(tenancy: Any) -> Callable[..., MevaasClient]:
    """``client_for`` without the function scope: usable from module-scoped fixtures."""

    def make(api_key: str, **endpoints: str) -> MevaasClient:
        return MevaasClient(
            ClientConfig(
                endpoints={"default": f"127.0.0.1:{tenancy.grpc_port}", **endpoints}, api_key=api_key
            )
        )

    return make


async def tenant_with_wallet(
    client_for: Callable[..., MevaasClient], runtime: Any, chain: DevnetChain, *, phase: str = TRADING_PHASE
) -> TenantSession:
    """A new tenant (in an onboarding phase that may trade, unless ``phase`` says otherwise) with a
    funded default wallet."""
    async with client_for(BOOTSTRAP_ADMIN_KEY) as admin:
        tenant = await create_tenant(admin, phase=phase)
    client = client_for(tenant.owner_key, execution=f"127.0.0.1:{runtime.grpc_port}")
    stub = execution_stub(client)
    created = await stub.CreateWallet(
        execution_pb2.CreateWalletRequest(idempotency_key=str(uuid.uuid4()), label="hot", make_default=True)
    )
    await fund(chain, created.wallet.address)
    return TenantSession(tenant.tenant.tenant_id, tenant.owner_key, client, stub, created.wallet.address)


async def start_running(
    tenant: TenantSession, chains: list[DevnetChain], strategy_id: str | None = None
) -> execution_pb2.ExecutionSession:
    """Start a session and wait until its executors are deployed (blocks produced meanwhile)."""
    for chain in chains:
        await fund(chain, tenant.wallet)
    started = await tenant.stub.StartExecution(
        execution_pb2.StartExecutionRequest(
            idempotency_key=str(uuid.uuid4()), strategy_id=strategy_id or str(uuid.uuid4())
        )
    )
    session_id = started.session.session_id

    async def running() -> execution_pb2.ExecutionSession | None:
        status = await tenant.stub.GetExecutionStatus(
            execution_pb2.GetExecutionStatusRequest(session_id=session_id)
        )
        assert status.session.state != common_pb2.EXECUTION_STATE_FAILED, status.last_error
        return status.session if status.session.state == common_pb2.EXECUTION_STATE_RUNNING else None

    if started.session.state == common_pb2.EXECUTION_STATE_RUNNING:
        return started.session
    async with block_production(*chains):
        session: execution_pb2.ExecutionSession = await wait_for(running, timeout_s=60)
    return session
