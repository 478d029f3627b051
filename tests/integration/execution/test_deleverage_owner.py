"""A deleverage is owned by the wallet it protects (owners.WalletOwnership), not by a session: a
paused session of that wallet drops it unless it is an emergency, which goes on to the executor
(here refused at planning, naming the field, since its pool is not the chain's Aave pool)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from eth_utils.address import to_checksum_address

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas_core.bus import Bus
from mevaas_local.devnet import Devnet
from tests.fixtures.execution import approved, publish_decision, wait_for
from tests.integration.execution.helpers import TenantSession, clients, start_running, tenant_with_wallet

pytestmark = pytest.mark.integration

S = common_pb2
NOT_THE_POOL = "0x" + "11" * 20


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def paused_wallet(
    execution_service: Any, tenancy_service: Any, devnet: Devnet
) -> AsyncIterator[TenantSession]:
    tenant = await tenant_with_wallet(clients(tenancy_service), execution_service, devnet.main)
    session = await start_running(tenant, devnet.chains)
    await tenant.stub.PauseExecution(execution_pb2.PauseExecutionRequest(session_id=session.session_id))
    yield tenant
    await tenant.client.close()


def deleverage(tenant: TenantSession, chain_id: int, head: int, *, emergency: bool) -> events_pb2.Opportunity:
    opportunity_id = str(uuid.uuid4())
    weth = common_pb2.Token(chain_id=chain_id, address="0x" + "22" * 20, symbol="WETH", decimals=18)
    usdc = common_pb2.Token(chain_id=chain_id, address="0x" + "33" * 20, symbol="USDC", decimals=6)
    return events_pb2.Opportunity(
        event_id=opportunity_id,
        tenant_id=tenant.tenant_id,
        opportunity_id=opportunity_id,
        strategy_id=str(uuid.uuid4()),
        chain_id=chain_id,
        chain_ids=[chain_id],
        expected_profit="0",
        expected_profit_net_of_gas="-1",
        profit_token=usdc,
        gas_estimate=900_000,
        gas_price="1000000000",
        detected_block=head,
        deadline_block=head + 50,
        submission_mode=S.SUBMISSION_MODE_PUBLIC_MEMPOOL,
        deleverage=events_pb2.DeleverageAction(
            protocol="aave_v3",
            pool=NOT_THE_POOL,
            account=tenant.wallet,
            collateral_asset=weth,
            debt_asset=usdc,
            collateral_amount="1000000000000000000",
            repay_amount="1000000000",
            health_factor="1050000000000000000",
            target_health_factor="1500000000000000000",
            emergency=emergency,
            collateral_a_token="0x" + "44" * 20,
        ),
    )


async def final_execution(tenant: TenantSession, opportunity_id: str) -> execution_pb2.Execution:
    async def probe() -> execution_pb2.Execution | None:
        listed = await tenant.stub.ListExecutions(execution_pb2.ListExecutionsRequest())
        for execution in listed.executions:
            if execution.opportunity_id == opportunity_id:
                return execution
        return None

    found: execution_pb2.Execution = await wait_for(probe, timeout_s=30)
    return found


async def test_paused_wallet_drops_a_deleverage_unless_emergency(
    paused_wallet: TenantSession, devnet: Devnet, bus: Bus
) -> None:
    tenant = paused_wallet
    head = int(await devnet.main.client.request("eth_blockNumber", []), 16)
    chain_id = devnet.main.spec.chain_id
    nonce = await devnet.main.client.request("eth_getTransactionCount", [tenant.wallet, "latest"])

    ordinary = deleverage(tenant, chain_id, head, emergency=False)
    await publish_decision(bus, approved(ordinary))
    dropped = await final_execution(tenant, ordinary.opportunity_id)
    assert dropped.status == S.EXECUTION_RESULT_STATUS_DROPPED
    assert dropped.error == "the wallet's sessions are paused (not an emergency)"
    assert not dropped.tx_hashes and not dropped.session_id

    urgent = deleverage(tenant, chain_id, head, emergency=True)
    await publish_decision(bus, approved(urgent))
    failed = await final_execution(tenant, urgent.opportunity_id)
    # Past the owner: the executor refuses the action itself, naming the field.
    assert failed.status == S.EXECUTION_RESULT_STATUS_FAILED
    assert failed.error.startswith(f"deleverage.pool {to_checksum_address(NOT_THE_POOL)} is not"), (
        failed.error
    )
    assert failed.wallet_address.lower() == tenant.wallet.lower()
    # Nothing was signed or sent for either.
    assert await devnet.main.client.request("eth_getTransactionCount", [tenant.wallet, "latest"]) == nonce
