"""Restart acceptance (issue 9) through the fleet (tenancy, strategy, risk, execution over NATS and
gRPC): the execution service restarted in the middle of a flash_arbitrage session never books an
INCLUDED trade that only paid gas.

* On the kept devnet state, the session trades on after the restart on the same executor.
* On a chain where the executor lost its code meanwhile (what a reset devnet looks like to the
  service), the strategy's next opportunity is refused naming the executor and nothing is sent,
  the executor is redeployed and the redeploy recorded, and the session trades on the new one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from mevaas.common.v1 import common_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas_chain import abi
from mevaas_chain.executor import decode_executed
from mevaas_local.devnet import Devnet
from mevaas_sdk import MevaasClient
from tests.fixtures.e2e import (
    FINAL,
    blocks_pass,
    create_strategy,
    default_wallet,
    executor_of,
    new_tenant,
    reservations_released,
    session_executions,
    start_fleet_execution,
    start_running,
    stop_session,
    tenant_client,
)
from tests.fixtures.execution import (
    ExecutionHarness,
    block_production,
    execution_stub,
    fund,
    open_gap,
    wait_for,
)
from tests.fixtures.strategy import strategy_config

pytestmark = pytest.mark.integration

S = common_pb2


@dataclass
class Trading:
    """A tenant's flash_arbitrage session on the fleet, with the execution runtime it talks to."""

    harness: ExecutionHarness
    services: dict[str, Any]  # tenancy, strategy, risk
    owner_key: str
    runtime: Any
    client: MevaasClient
    wallet: str
    session_id: str = ""

    async def restart_execution(self, meanwhile: Callable[[], Awaitable[Any]] | None = None) -> None:
        """Stop the execution service (its session stays RUNNING in the database and at the
        strategy engine), run ``meanwhile``, and start a new one on the same database; the client
        follows it."""
        await self.client.close()
        await self.harness.stop(self.runtime)
        if meanwhile is not None:
            await meanwhile()
        self.runtime = await start_fleet_execution(self.harness)
        self.client = self._client()

    def _client(self) -> MevaasClient:
        return tenant_client(
            self.services["tenancy"],
            self.owner_key,
            strategy=self.services["strategy"],
            risk=self.services["risk"],
            execution=self.runtime,
        )


@pytest_asyncio.fixture(loop_scope="session")
async def trading(
    execution_harness: ExecutionHarness,
    tenancy_service: Any,
    strategy_service: Any,
    risk_service: Any,
    devnet: Devnet,
) -> AsyncIterator[Trading]:
    tenant = await new_tenant(tenancy_service)
    services = {"tenancy": tenancy_service, "strategy": strategy_service, "risk": risk_service}
    runtime = await start_fleet_execution(execution_harness)
    state = Trading(execution_harness, services, tenant.owner_key, runtime, None, "")  # type: ignore[arg-type]
    state.client = state._client()
    try:
        state.wallet = (await default_wallet(state.client)).address
        for chain in devnet.chains:
            await fund(chain, state.wallet)
        chain = devnet.main
        strategy = await create_strategy(
            state.client,
            strategy_config(chain.config, name="restart", type_=S.STRATEGY_TYPE_FLASH_ARBITRAGE),
        )
        async with block_production(*devnet.chains, block_time_s=1.0):
            state.session_id = await start_running(state.client, strategy.strategy_id)
        yield state
    finally:
        if state.session_id:
            # Nothing may keep trading on the shared devnet for later tests.
            await stop_session(state.client, state.session_id)
        await state.client.close()
        await execution_harness.stop(state.runtime)


async def settled(state: Trading, devnet: Devnet, seen: int) -> list[execution_pb2.Execution]:
    """The session's executions once there are more than ``seen``, all final, and no new one
    appeared for 3 blocks."""
    chain = devnet.main
    quiet = {"count": -1, "since": 0}

    async def done() -> list[execution_pb2.Execution] | None:
        executions = await session_executions(state.client, state.session_id)
        head = await chain.client.block_number()
        if len(executions) != quiet["count"] or any(e.status not in FINAL for e in executions):
            quiet.update(count=len(executions), since=head)
            return None
        return executions if len(executions) > seen and head >= quiet["since"] + 3 else None

    executions: list[execution_pb2.Execution] = await wait_for(done, timeout_s=90)
    return executions


async def gap_traded(state: Trading, devnet: Devnet) -> list[execution_pb2.Execution]:
    """Open a price gap and return the executions it produced (all final)."""
    seen = {e.execution_id for e in await session_executions(state.client, state.session_id)}
    await blocks_pass(devnet.main)
    await open_gap(devnet.main, share=15)
    executions = await settled(state, devnet, len(seen))
    return [e for e in executions if e.execution_id not in seen]


async def no_gas_only_trade(state: Trading, devnet: Devnet) -> None:
    """Every INCLUDED execution of the session ran the executor's code: its receipt carries the
    executor's Executed event and its gross profit is positive."""
    for e in await session_executions(state.client, state.session_id):
        if e.status != S.EXECUTION_RESULT_STATUS_INCLUDED:
            continue
        receipt = await devnet.main.client.get_receipt(e.tx_hashes[0])
        assert receipt is not None and int(receipt["status"], 16) == 1
        code = await devnet.main.client.request("eth_getCode", [receipt["to"], hex(e.block_number)])
        assert len(code) > 2, e
        executed = decode_executed(receipt, receipt["to"].lower())
        assert executed is not None and executed.profit > 0, e
        assert int(e.realized_profit) + int(e.gas_cost) == executed.profit, e


def landed(executions: list[execution_pb2.Execution]) -> list[execution_pb2.Execution]:
    return [e for e in executions if e.status == S.EXECUTION_RESULT_STATUS_INCLUDED]


async def test_execution_restarted_mid_session_trades_on_the_kept_chain_state(
    trading: Trading, devnet: Devnet
) -> None:
    chain_id = devnet.main.spec.chain_id
    async with block_production(*devnet.chains, block_time_s=1.0):
        before = await gap_traded(trading, devnet)
        assert landed(before), [(S.ExecutionResultStatus.Name(e.status), e.error) for e in before]
        executor = await executor_of(trading.client, trading.wallet, chain_id)
        await trading.restart_execution()
        status = await execution_stub(trading.client).GetExecutionStatus(
            execution_pb2.GetExecutionStatusRequest(session_id=trading.session_id)
        )
        assert status.session.state == S.EXECUTION_STATE_RUNNING, status.last_error
        after = await gap_traded(trading, devnet)
    assert landed(after), [(S.ExecutionResultStatus.Name(e.status), e.error) for e in after]
    # The same executor: the chain kept it, nothing was redeployed.
    assert await executor_of(trading.client, trading.wallet, chain_id) == executor
    for e in landed(after):
        tx = await devnet.main.client.request("eth_getTransactionByHash", [e.tx_hashes[0]])
        assert tx["to"].lower() == executor.lower()
    await no_gas_only_trade(trading, devnet)
    await reservations_released(trading.client, trading.session_id)


async def test_execution_restarted_on_a_chain_without_its_executor_redeploys_and_trades_on(
    trading: Trading, devnet: Devnet
) -> None:
    chain = devnet.main
    chain_id = chain.spec.chain_id
    lost = await executor_of(trading.client, trading.wallet, chain_id)
    async with block_production(*devnet.chains, block_time_s=1.0):
        # While execution is down the chain loses the executor's code, as a reset devnet would.
        await trading.restart_execution(lambda: chain.client.request("anvil_setCode", [lost, "0x"]))
        refused = await gap_traded(trading, devnet)
        assert refused and not landed(refused)
        first = min(refused, key=lambda e: e.created_at.ToNanoseconds())
        assert first.status == S.EXECUTION_RESULT_STATUS_FAILED and not first.tx_hashes, first
        assert lost.lower() in first.error.lower() and "no code" in first.error, first.error

        async def redeployed() -> list[execution_pb2.ExecutorDeployment] | None:
            reply = await execution_stub(trading.client).ListExecutorDeployments(
                execution_pb2.ListExecutorDeploymentsRequest(wallet_address=trading.wallet)
            )
            found = [d for d in reply.deployments if d.replaced_address.lower() == lost.lower()]
            return found or None

        (replacement,) = await wait_for(redeployed, timeout_s=60)
        assert replacement.chain_id == chain_id and "no code" in replacement.reason
        assert replacement.address.lower() != lost.lower()
        assert (await executor_of(trading.client, trading.wallet, chain_id)).lower() == (
            replacement.address.lower()
        )
        after = await gap_traded(trading, devnet)
    assert landed(after), [(S.ExecutionResultStatus.Name(e.status), e.error) for e in after]
    for e in landed(after):
        tx = await chain.client.request("eth_getTransactionByHash", [e.tx_hashes[0]])
        assert tx["to"].lower() == replacement.address.lower()
        # The profit sits in the new executor's WETH.
        assert int(e.realized_profit) > 0
    weth = chain.deployment.weth
    held = abi.decode_uint(await chain.client.call(weth, abi.balance_of(replacement.address)))
    assert held == sum(int(e.realized_profit) + int(e.gas_cost) for e in landed(after))
    await no_gas_only_trade(trading, devnet)
    await reservations_released(trading.client, trading.session_id)
