"""Executor liveness (issue 9, item 6): the fleet restarted on a chain where the wallet's recorded
executor has no code (a fresh devnet) or foreign code never books a gas-only trade. The first
decision is refused naming the executor, the executor is redeployed and the redeploy recorded
(ListExecutorDeployments), and the next decision lands on the new executor with its profit; with
redeploys disabled the session fails with a reason naming the executor."""

from __future__ import annotations

from typing import Any

import pytest

from mevaas.common.v1 import common_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas_core.bus import Bus
from mevaas_local.devnet import Devnet
from tests.fixtures.execution import (
    ExecutionHarness,
    approved,
    block_production,
    build_opportunity,
    execution_stub,
    publish_decision,
    wait_for,
)
from tests.integration.execution.helpers import TenantSession, clients, start_running, tenant_with_wallet

pytestmark = pytest.mark.integration

S = common_pb2
FINAL = {
    S.EXECUTION_RESULT_STATUS_INCLUDED,
    S.EXECUTION_RESULT_STATUS_REVERTED,
    S.EXECUTION_RESULT_STATUS_DROPPED,
    S.EXECUTION_RESULT_STATUS_STALE,
    S.EXECUTION_RESULT_STATUS_FAILED,
}


async def final_execution(tenant: TenantSession, opportunity_id: str) -> execution_pb2.Execution:
    async def probe() -> execution_pb2.Execution | None:
        listed = await tenant.stub.ListExecutions(execution_pb2.ListExecutionsRequest())
        for execution in listed.executions:
            if execution.opportunity_id == opportunity_id and execution.status in FINAL:
                return execution
        return None

    found: execution_pb2.Execution = await wait_for(probe, timeout_s=60)
    return found


async def deployments(tenant: TenantSession) -> list[execution_pb2.ExecutorDeployment]:
    reply = await tenant.stub.ListExecutorDeployments(
        execution_pb2.ListExecutorDeploymentsRequest(wallet_address=tenant.wallet)
    )
    return list(reply.deployments)


async def restarted_without_executor(
    harness: ExecutionHarness, tenancy_service: Any, devnet: Devnet, code: str, **settings: Any
) -> tuple[Any, TenantSession, execution_pb2.ExecutionSession, str]:
    """A running session whose executor on the main chain then loses its code (``code``), seen
    by a freshly started execution service."""
    first = await harness.start()
    tenant = await tenant_with_wallet(clients(tenancy_service), first, devnet.main)
    session = await start_running(tenant, devnet.chains)
    (deployed,) = [d for d in await deployments(tenant) if d.chain_id == devnet.main.spec.chain_id]
    await tenant.client.close()
    await harness.stop(first)
    await devnet.main.client.request("anvil_setCode", [deployed.address, code])
    runtime = await harness.start(**settings)
    tenant.client = clients(tenancy_service)(tenant.owner_key, execution=f"127.0.0.1:{runtime.grpc_port}")
    tenant.stub = execution_stub(tenant.client)
    return runtime, tenant, session, deployed.address


async def test_restart_on_a_chain_without_the_executor_redeploys_and_books_no_gas_only_trade(
    execution_harness: ExecutionHarness, tenancy_service: Any, devnet: Devnet, bus: Bus
) -> None:
    runtime, tenant, session, lost = await restarted_without_executor(
        execution_harness, tenancy_service, devnet, "0x"
    )
    try:
        async with block_production(devnet.main, block_time_s=0.3):
            first = await build_opportunity(
                devnet.main, tenant.tenant_id, session.strategy_id, deadline_blocks=30
            )
            await publish_decision(bus, approved(first))
            refused = await final_execution(tenant, first.opportunity_id)
            assert refused.status == S.EXECUTION_RESULT_STATUS_FAILED
            assert lost.lower() in refused.error.lower() and "no code" in refused.error
            assert not refused.tx_hashes

            async def redeployed() -> list[execution_pb2.ExecutorDeployment] | None:
                found = [d for d in await deployments(tenant) if d.replaced_address.lower() == lost.lower()]
                return found or None

            (replacement,) = await wait_for(redeployed, timeout_s=60)
            assert replacement.address.lower() != lost.lower() and "no code" in replacement.reason
            code = await devnet.main.client.request("eth_getCode", [replacement.address, "latest"])
            assert len(code) > 2
            # Paged one at a time, the list is the same, newest (the redeploy) first.
            every = await deployments(tenant)
            paged: list[execution_pb2.ExecutorDeployment] = []
            token = ""
            while True:
                reply = await tenant.stub.ListExecutorDeployments(
                    execution_pb2.ListExecutorDeploymentsRequest(
                        wallet_address=tenant.wallet,
                        page=common_pb2.PageRequest(page_size=1, page_token=token),
                    )
                )
                paged += reply.deployments
                token = reply.page.next_page_token
                if not token:
                    break
            assert len(every) >= 2 and paged == every and every[0].address == replacement.address

            second = await build_opportunity(
                devnet.main, tenant.tenant_id, session.strategy_id, deadline_blocks=30
            )
            await publish_decision(bus, approved(second, common_pb2.RiskLimits(max_slippage_bps=9999)))
            landed = await final_execution(tenant, second.opportunity_id)
        assert landed.status == S.EXECUTION_RESULT_STATUS_INCLUDED, landed.error
        tx = await devnet.main.client.request("eth_getTransactionByHash", [landed.tx_hashes[0]])
        assert tx["to"].lower() == replacement.address.lower()
        assert int(landed.realized_profit) + int(landed.gas_cost) > 0
        listed = await tenant.stub.ListExecutions(
            execution_pb2.ListExecutionsRequest(session_id=session.session_id)
        )
        # No INCLUDED execution of the session only paid gas.
        for execution in listed.executions:
            if execution.status == S.EXECUTION_RESULT_STATUS_INCLUDED:
                assert int(execution.realized_profit) + int(execution.gas_cost) > 0
    finally:
        await tenant.client.close()
        await execution_harness.stop(runtime)


async def test_a_foreign_executor_fails_the_session_when_redeploys_are_disabled(
    execution_harness: ExecutionHarness, tenancy_service: Any, devnet: Devnet, bus: Bus
) -> None:
    runtime, tenant, session, foreign = await restarted_without_executor(
        execution_harness, tenancy_service, devnet, "0x6080604052", redeploy_missing_executors=False
    )
    try:
        opportunity = await build_opportunity(devnet.main, tenant.tenant_id, session.strategy_id)
        await publish_decision(bus, approved(opportunity))
        refused = await final_execution(tenant, opportunity.opportunity_id)
        assert refused.status == S.EXECUTION_RESULT_STATUS_FAILED
        assert foreign.lower() in refused.error.lower() and "foreign code" in refused.error

        async def failed() -> execution_pb2.GetExecutionStatusResponse | None:
            status = await tenant.stub.GetExecutionStatus(
                execution_pb2.GetExecutionStatusRequest(session_id=session.session_id)
            )
            return status if status.session.state == S.EXECUTION_STATE_FAILED else None

        status = await wait_for(failed, timeout_s=30)
        assert foreign.lower() in status.session.state_reason.lower()
        assert "redeploying executors is disabled" in status.session.state_reason
        assert [d for d in await deployments(tenant) if d.replaced_address] == []
    finally:
        await tenant.client.close()
        await execution_harness.stop(runtime)
