"""Onboarding gates live trading (issue 12): a tenant in discovery or setup cannot start a live
session (FAILED_PRECONDITION naming the phase and the way forward) nor have a rebalance traded
(it fails with the same reason); once advanced to deployment it can, seen by the same execution
process as soon as tenancy's tenant event arrives (its cache held the old phase). With nobody
answering for tenancy the start is UNAVAILABLE, never silently allowed. Real tenancy, NATS,
PostgreSQL and devnet."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2, status_pb2

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas.portfolio.v1 import portfolio_pb2
from mevaas.tenancy.v1 import tenancy_pb2
from mevaas_core.bus import Bus
from mevaas_local.devnet import Devnet
from tests.fixtures.execution import ExecutionHarness, execution_stub, wait_for
from tests.fixtures.platform import BOOTSTRAP_ADMIN_KEY
from tests.integration.execution.helpers import TenantSession, clients, tenant_with_wallet
from tests.integration.tenancy.helpers import advance_onboarding

pytestmark = pytest.mark.integration


def precondition_failures(
    error: grpc.aio.AioRpcError,
) -> list[error_details_pb2.PreconditionFailure.Violation]:
    found = []
    metadata: Any = error.trailing_metadata() or ()
    for key, value in metadata:
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                failure = error_details_pb2.PreconditionFailure()
                if detail.Unpack(failure):
                    found.extend(failure.violations)
    return found


async def start(tenant: TenantSession) -> execution_pb2.StartExecutionResponse:
    response: execution_pb2.StartExecutionResponse = await tenant.stub.StartExecution(
        execution_pb2.StartExecutionRequest(idempotency_key=str(uuid.uuid4()), strategy_id=str(uuid.uuid4()))
    )
    return response


async def refusal(tenant: TenantSession) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await start(tenant)
    return refused.value


async def advance(tenancy_service: Any, tenant: TenantSession, phase: str) -> None:
    async with clients(tenancy_service)(BOOTSTRAP_ADMIN_KEY) as admin:
        got = await admin.tenants.GetTenant(tenancy_pb2.GetTenantRequest(tenant_id=tenant.tenant_id))
        await advance_onboarding(admin, got.tenant, phase)


async def test_discovery_and_setup_are_refused_naming_the_phase_deployment_may_start(
    execution_service: Any, tenancy_service: Any, devnet: Devnet
) -> None:
    tenant = await tenant_with_wallet(
        clients(tenancy_service), execution_service, devnet.main, phase="discovery"
    )
    try:
        # Setting up is allowed in discovery: the wallet was created; a session is not.
        error = await refusal(tenant)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        text = error.details() or ""
        assert "onboarding phase 'discovery'" in text and "live execution sessions" in text
        assert "from phase 'deployment' on" in text and "AdvanceOnboarding" in text
        [violation] = precondition_failures(error)
        assert violation.type == "ONBOARDING" and violation.subject == f"tenants/{tenant.tenant_id}"
        listed = await tenant.stub.ListExecutionSessions(execution_pb2.ListExecutionSessionsRequest())
        assert not listed.sessions  # nothing was recorded

        # The process cached "discovery"; tenancy's tenant event tells it about setup.
        await advance(tenancy_service, tenant, "setup")

        async def names_setup() -> bool:
            return "onboarding phase 'setup'" in ((await refusal(tenant)).details() or "")

        await wait_for(names_setup, timeout_s=30)

        await advance(tenancy_service, tenant, "deployment")

        async def started() -> execution_pb2.StartExecutionResponse | None:
            try:
                return await start(tenant)
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION, exc.details()
                assert "onboarding phase 'setup'" in (exc.details() or "")
                return None

        response: execution_pb2.StartExecutionResponse = await wait_for(started, timeout_s=30)
        assert response.session.state in (
            common_pb2.EXECUTION_STATE_STARTING,
            common_pb2.EXECUTION_STATE_RUNNING,
        )
        await tenant.stub.StopExecution(
            execution_pb2.StopExecutionRequest(session_id=response.session.session_id, reason="done")
        )
    finally:
        await tenant.client.close()


async def test_a_discovery_tenants_rebalance_fails_naming_the_phase(
    execution_service: Any, tenancy_service: Any, devnet: Devnet, bus: Bus
) -> None:
    chain = devnet.main
    tenant = await tenant_with_wallet(clients(tenancy_service), execution_service, chain, phase="discovery")
    try:
        now = Timestamp()
        now.GetCurrentTime()
        token = chain.deployment.token("USDC")
        command = events_pb2.RebalanceCommand(
            event_id=str(uuid.uuid4()),
            tenant_id=tenant.tenant_id,
            occurred_at=now,
            rebalance_id=str(uuid.uuid4()),
            targets=[
                common_pb2.RebalanceTarget(
                    token=common_pb2.Token(
                        chain_id=chain.spec.chain_id, address=token.address, symbol="USDC"
                    ),
                    target_weight_percent=common_pb2.Decimal(value="50"),
                )
            ],
            max_slippage_bps=100,
            wallet_address=tenant.wallet,
        )
        await bus.publish(
            f"exec.{tenant.tenant_id}.rebalance",
            command,
            msg_id=command.rebalance_id,
            tenant_id=tenant.tenant_id,
        )

        async def failed() -> portfolio_pb2.RebalanceResult | None:
            try:
                got = await tenant.stub.GetRebalance(
                    execution_pb2.GetRebalanceRequest(rebalance_id=command.rebalance_id)
                )
            except grpc.aio.AioRpcError:
                return None  # NOT_FOUND until the command is consumed
            return got.result if got.result.status == portfolio_pb2.REBALANCE_STATUS_FAILED else None

        result: portfolio_pb2.RebalanceResult = await wait_for(failed, timeout_s=30)
        assert "onboarding phase 'discovery'" in result.reason and "portfolio rebalances" in result.reason
        assert not result.trades and not result.execution_ids
    finally:
        await tenant.client.close()


async def test_no_answer_from_tenancy_is_unavailable_not_allowed(
    execution_harness: ExecutionHarness, execution_service: Any, tenancy_service: Any, devnet: Devnet
) -> None:
    # A tenant that may trade, created before the process below starts: it has seen no tenant event
    # of it, so it must ask tenancy.
    tenant = await tenant_with_wallet(clients(tenancy_service), execution_service, devnet.main)
    # Nobody serves this subject (the execution identity may request it): as if tenancy were down.
    runtime = await execution_harness.start(tenancy_onboarding_subject="rpc.tenancy.onboarding_state.nobody")
    client = clients(tenancy_service)(tenant.owner_key, execution=f"127.0.0.1:{runtime.grpc_port}")
    try:
        cut_off = TenantSession(
            tenant.tenant_id, tenant.owner_key, client, execution_stub(client), tenant.wallet
        )
        error = await refusal(cut_off)
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert "tenancy" in (error.details() or "")
        listed = await tenant.stub.ListExecutionSessions(execution_pb2.ListExecutionSessionsRequest())
        assert not listed.sessions
        await start(tenant)  # the process that can ask tenancy lets it start
    finally:
        await client.close()
        await tenant.client.close()
        await execution_harness.stop(runtime)
