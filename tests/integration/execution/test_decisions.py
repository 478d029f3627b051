"""Risk decisions through the execution service on the devnet: a real flash arbitrage lands with
the expected profit to the wei, duplicates send nothing twice, stale / over-gas-price / paused /
killed decisions never execute."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas_core.bus import Bus
from mevaas_core.db import platform_transaction
from mevaas_local.devnet import Devnet
from tests.fixtures.execution import approved, build_opportunity, publish_decision, wait_for
from tests.integration.execution.helpers import TenantSession, clients, start_running, tenant_with_wallet

pytestmark = pytest.mark.integration

S = common_pb2


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def trader(
    execution_service: Any, tenancy_service: Any, devnet: Devnet
) -> AsyncIterator[tuple[TenantSession, execution_pb2.ExecutionSession]]:
    tenant = await tenant_with_wallet(clients(tenancy_service), execution_service, devnet.main)
    session = await start_running(tenant, devnet.chains)
    yield tenant, session
    await tenant.client.close()


async def execution_of(
    tenant: TenantSession, opportunity_id: str, statuses: set[int] | None = None
) -> execution_pb2.Execution | None:
    listed = await tenant.stub.ListExecutions(execution_pb2.ListExecutionsRequest())
    for execution in listed.executions:
        if execution.opportunity_id == opportunity_id and (statuses is None or execution.status in statuses):
            return execution
    return None


async def wait_status(tenant: TenantSession, opportunity_id: str, *statuses: int) -> execution_pb2.Execution:
    async def probe() -> execution_pb2.Execution | None:
        return await execution_of(tenant, opportunity_id, set(statuses))

    execution: execution_pb2.Execution = await wait_for(probe, timeout_s=20)
    return execution


async def nonce_of(devnet: Devnet, address: str) -> int:
    return int(await devnet.main.client.request("eth_getTransactionCount", [address, "latest"]), 16)


async def test_flash_arbitrage_lands_with_expected_profit(
    trader: tuple[TenantSession, execution_pb2.ExecutionSession], devnet: Devnet, bus: Bus
) -> None:
    tenant, session = trader
    results: list[events_pb2.ExecutionResult] = []

    async def collect(msg: Any) -> None:
        results.append(events_pb2.ExecutionResult.FromString(msg.data))

    subscription = await bus.nc.subscribe(f"exec.{tenant.tenant_id}.result", cb=collect)
    opportunity = await build_opportunity(devnet.main, tenant.tenant_id, session.strategy_id)
    decision = approved(opportunity)
    await publish_decision(bus, decision)
    submitted = await wait_status(tenant, opportunity.opportunity_id, S.EXECUTION_RESULT_STATUS_SUBMITTED)
    assert submitted.bundle_hash and len(submitted.tx_hashes) == 1
    assert submitted.submission_mode == S.SUBMISSION_MODE_PRIVATE_BUNDLE
    assert submitted.block_to_submission_ms > 0
    await devnet.main.mine(2)
    included = await wait_status(tenant, opportunity.opportunity_id, S.EXECUTION_RESULT_STATUS_INCLUDED)
    gas_cost = int(included.gas_cost)
    assert gas_cost == included.gas_used * int(included.effective_gas_price) > 0
    # Nothing moved the pools in between: the executor's profit is the expected one to the wei.
    assert int(included.realized_profit) + gas_cost == int(opportunity.expected_profit)
    assert int(included.realized_profit) > 0
    receipt = await devnet.main.client.get_receipt(included.tx_hashes[0])
    assert receipt is not None and int(receipt["blockNumber"], 16) == included.block_number

    async def both_results() -> bool:
        statuses = {r.status for r in results if r.opportunity_id == opportunity.opportunity_id}
        return {S.EXECUTION_RESULT_STATUS_SUBMITTED, S.EXECUTION_RESULT_STATUS_INCLUDED} <= statuses

    await wait_for(both_results, timeout_s=10)
    final = next(r for r in results if r.status == S.EXECUTION_RESULT_STATUS_INCLUDED)
    assert final.reservation_id == decision.reservation_id
    assert final.realized_profit == included.realized_profit
    hops = final.timestamps
    reached = [
        hops.block_seen_at,
        hops.opportunity_detected_at,
        hops.risk_decided_at,
        hops.decision_received_at,
    ]
    reached += [hops.simulated_at, hops.signed_at, hops.submitted_at, hops.included_at]
    times = [t.ToNanoseconds() for t in reached]
    assert all(times) and times[3:] == sorted(times[3:])
    await subscription.unsubscribe()

    status = await tenant.stub.GetExecutionStatus(
        execution_pb2.GetExecutionStatusRequest(session_id=session.session_id)
    )
    assert status.counts.included >= 1 and status.counts.executed >= 1
    assert int(status.realized_profit) >= int(included.realized_profit)
    assert status.profit_token.address == opportunity.profit_token.address


async def test_a_miss_seen_at_the_last_block_is_not_dropped_before_a_later_block_settles_it(
    trader: tuple[TenantSession, execution_pb2.ExecutionSession],
    devnet: Devnet,
    bus: Bus,
    execution_service: Any,
) -> None:
    """The tracker's head and receipt reads can straddle the devnet relay rebuilding a block
    without a failing bundle (the head read on the first build, the receipts while it is rewound):
    the transaction is missing at its target and last block, yet the rebuilt block holds it. Seen
    so, it was dropped (its nonce resynced) and then landed: DROPPED on the books, moved on chain.
    Now a miss is final only once a later block settled it."""
    tenant, session = trader
    chain = devnet.main
    opportunity = await build_opportunity(chain, tenant.tenant_id, session.strategy_id, deadline_blocks=1)
    await publish_decision(bus, approved(opportunity))
    await wait_status(tenant, opportunity.opportunity_id, S.EXECUTION_RESULT_STATUS_SUBMITTED)
    # Blocks are mined on demand: the bundle targets the next block, which is also its deadline.
    target = await chain.client.block_number() + 1
    assert opportunity.deadline_block == target
    # What the straddling reads see: head = the target block, no receipt.
    await execution_service.core.tracker.check_chain(chain.spec.chain_id, target)
    seen = await execution_of(tenant, opportunity.opportunity_id)
    assert seen is not None and seen.status == S.EXECUTION_RESULT_STATUS_SUBMITTED, seen
    await chain.mine(2)
    included = await wait_status(tenant, opportunity.opportunity_id, S.EXECUTION_RESULT_STATUS_INCLUDED)
    assert included.block_number == target and int(included.realized_profit) > 0


async def test_a_receipt_of_a_block_that_is_then_rebuilt_without_it_is_not_booked(
    trader: tuple[TenantSession, execution_pb2.ExecutionSession],
    devnet: Devnet,
    bus: Bus,
    execution_service: Any,
) -> None:
    """The devnet relay mines a block, then rewinds and rebuilds it without a bundle that failed
    (a one-block reorg, in effect); a reader meanwhile sees receipts the chain then loses. Booked
    from such a receipt, an execution was INCLUDED or REVERTED with a transaction no block holds
    (the chaos test's "executions recorded as on chain that are not"). A receipt now counts only
    with ``confirmations`` (1) blocks on top of its block."""
    tenant, session = trader
    chain = devnet.main
    opportunity = await build_opportunity(chain, tenant.tenant_id, session.strategy_id)
    await publish_decision(bus, approved(opportunity))
    submitted = await wait_status(tenant, opportunity.opportunity_id, S.EXECUTION_RESULT_STATUS_SUBMITTED)
    async with platform_transaction(execution_service.core.tracker.pool, readonly=True) as conn:
        raw = await conn.fetchval(
            "SELECT raw_tx FROM execution.executions WHERE execution_id = $1", submitted.execution_id
        )
    # The tentative block, straight on anvil: the transaction mined, then rewound away.
    snapshot = await chain.client.request("evm_snapshot")
    await chain.client.request("eth_sendRawTransaction", ["0x" + bytes(raw).hex()])
    await chain.client.request("evm_mine")
    tentative = await chain.client.block_number()
    assert await chain.client.get_receipt(submitted.tx_hashes[0]) is not None
    await execution_service.core.tracker.check_chain(chain.spec.chain_id, tentative)
    await chain.client.request("anvil_dropAllTransactions")
    await chain.client.request("evm_revert", [snapshot])
    assert await chain.client.get_receipt(submitted.tx_hashes[0]) is None
    seen = await execution_of(tenant, opportunity.opportunity_id)
    assert seen is not None and seen.status == S.EXECUTION_RESULT_STATUS_SUBMITTED, seen
    # The relay's real block holds it; booked once a block sits on top of that one.
    await chain.mine()
    assert (
        await execution_of(tenant, opportunity.opportunity_id)
    ).status == S.EXECUTION_RESULT_STATUS_SUBMITTED  # type: ignore[union-attr]
    await chain.mine()
    included = await wait_status(tenant, opportunity.opportunity_id, S.EXECUTION_RESULT_STATUS_INCLUDED)
    receipt = await chain.client.get_receipt(included.tx_hashes[0])
    assert receipt is not None and int(receipt["blockNumber"], 16) == included.block_number == tentative


async def test_duplicate_decision_sends_nothing_twice(
    trader: tuple[TenantSession, execution_pb2.ExecutionSession], devnet: Devnet, bus: Bus
) -> None:
    tenant, session = trader
    opportunity = await build_opportunity(devnet.main, tenant.tenant_id, session.strategy_id)
    decision = approved(opportunity)
    nonce_before = await nonce_of(devnet, tenant.wallet)
    # Different msg ids defeat JetStream's duplicate window: the service itself must hold the line.
    for copy in range(3):
        await publish_decision(bus, decision, msg_id=f"decision:{opportunity.opportunity_id}:{copy}")
    await wait_status(tenant, opportunity.opportunity_id, S.EXECUTION_RESULT_STATUS_SUBMITTED)
    await devnet.main.mine(2)
    await wait_status(tenant, opportunity.opportunity_id, S.EXECUTION_RESULT_STATUS_INCLUDED)
    await publish_decision(bus, decision, msg_id=f"decision:{opportunity.opportunity_id}:late")
    await devnet.main.mine()
    listed = await tenant.stub.ListExecutions(
        execution_pb2.ListExecutionsRequest(session_id=session.session_id)
    )
    assert [e.opportunity_id for e in listed.executions].count(opportunity.opportunity_id) == 1
    assert await nonce_of(devnet, tenant.wallet) == nonce_before + 1


async def test_stale_and_over_gas_price_decisions_never_execute(
    trader: tuple[TenantSession, execution_pb2.ExecutionSession], devnet: Devnet, bus: Bus
) -> None:
    tenant, session = trader
    nonce_before = await nonce_of(devnet, tenant.wallet)
    expensive = await build_opportunity(devnet.main, tenant.tenant_id, session.strategy_id)
    await publish_decision(bus, approved(expensive, common_pb2.RiskLimits(max_gas_price_wei="1")))
    dropped = await wait_status(tenant, expensive.opportunity_id, S.EXECUTION_RESULT_STATUS_DROPPED)
    assert "max gas price" in dropped.error and not dropped.tx_hashes

    stale = await build_opportunity(devnet.main, tenant.tenant_id, session.strategy_id)
    stale.deadline_block = await devnet.main.client.block_number()
    await publish_decision(bus, approved(stale))
    late = await wait_status(tenant, stale.opportunity_id, S.EXECUTION_RESULT_STATUS_STALE)
    assert "deadline" in late.error and not late.tx_hashes

    rejected = await build_opportunity(devnet.main, tenant.tenant_id, session.strategy_id)
    decision = approved(rejected)
    decision.outcome = events_pb2.RISK_DECISION_OUTCOME_REJECTED
    await publish_decision(bus, decision)

    async def counted() -> execution_pb2.GetExecutionStatusResponse | None:
        status = await tenant.stub.GetExecutionStatus(
            execution_pb2.GetExecutionStatusRequest(session_id=session.session_id)
        )
        return status if status.counts.opportunities_rejected >= 1 else None

    status = await wait_for(counted)
    assert status.counts.stale >= 1 and status.counts.dropped >= 1
    assert await execution_of(tenant, rejected.opportunity_id) is None
    await devnet.main.mine()
    assert await nonce_of(devnet, tenant.wallet) == nonce_before


async def test_pause_drops_new_decisions_and_resume_continues(
    trader: tuple[TenantSession, execution_pb2.ExecutionSession], devnet: Devnet, bus: Bus
) -> None:
    tenant, _ = trader
    session = await start_running(tenant, devnet.chains)
    await tenant.stub.PauseExecution(execution_pb2.PauseExecutionRequest(session_id=session.session_id))
    paused = await build_opportunity(devnet.main, tenant.tenant_id, session.strategy_id)
    await publish_decision(bus, approved(paused))
    dropped = await wait_status(tenant, paused.opportunity_id, S.EXECUTION_RESULT_STATUS_DROPPED)
    assert dropped.error == "session is paused" and not dropped.tx_hashes

    await tenant.stub.ResumeExecution(execution_pb2.ResumeExecutionRequest(session_id=session.session_id))
    resumed = await build_opportunity(devnet.main, tenant.tenant_id, session.strategy_id)
    await publish_decision(bus, approved(resumed))
    await wait_status(tenant, resumed.opportunity_id, S.EXECUTION_RESULT_STATUS_SUBMITTED)
    await devnet.main.mine(2)
    await wait_status(tenant, resumed.opportunity_id, S.EXECUTION_RESULT_STATUS_INCLUDED)


async def test_kill_switch_stops_every_session_of_the_tenant(
    execution_service: Any, tenancy_service: Any, devnet: Devnet, bus: Bus
) -> None:
    tenant = await tenant_with_wallet(clients(tenancy_service), execution_service, devnet.main)
    async with tenant.client:
        sessions = [await start_running(tenant, devnet.chains) for _ in range(2)]
        engaged = events_pb2.KillSwitchChanged(
            event_id=str(uuid.uuid4()), tenant_id=tenant.tenant_id, engaged=True, reason="drawdown"
        )
        engaged.occurred_at.GetCurrentTime()
        await bus.publish(
            f"risk.{tenant.tenant_id}.killswitch",
            engaged,
            msg_id=engaged.event_id,
            tenant_id=tenant.tenant_id,
        )

        async def all_failed() -> bool:
            states = []
            for session in sessions:
                status = await tenant.stub.GetExecutionStatus(
                    execution_pb2.GetExecutionStatusRequest(session_id=session.session_id)
                )
                states.append((status.session.state, status.session.state_reason))
            return all(state == (S.EXECUTION_STATE_FAILED, "kill switch: drawdown") for state in states)

        await wait_for(all_failed)
        opportunity = await build_opportunity(devnet.main, tenant.tenant_id, sessions[0].strategy_id)
        await publish_decision(bus, approved(opportunity))
        dropped = await wait_status(tenant, opportunity.opportunity_id, S.EXECUTION_RESULT_STATUS_DROPPED)
        assert not dropped.tx_hashes
        with pytest.raises(Exception) as refused:
            await tenant.stub.StartExecution(
                execution_pb2.StartExecutionRequest(idempotency_key=str(uuid.uuid4()), strategy_id="s")
            )
        assert "kill switch" in str(refused.value)
        with pytest.raises(Exception) as no_resume:
            await tenant.stub.ResumeExecution(
                execution_pb2.ResumeExecutionRequest(session_id=sessions[0].session_id)
            )
        assert "FAILED_PRECONDITION" in str(no_resume.value)

        released = events_pb2.KillSwitchChanged(
            event_id=str(uuid.uuid4()), tenant_id=tenant.tenant_id, engaged=False, reason="reviewed"
        )
        released.occurred_at.GetCurrentTime()
        await bus.publish(
            f"risk.{tenant.tenant_id}.killswitch",
            released,
            msg_id=released.event_id,
            tenant_id=tenant.tenant_id,
        )

        async def can_start() -> execution_pb2.StartExecutionResponse | None:
            try:
                return await tenant.stub.StartExecution(
                    execution_pb2.StartExecutionRequest(
                        idempotency_key=str(uuid.uuid4()), strategy_id="again"
                    )
                )
            except Exception:
                return None

        started = await wait_for(can_start)
        assert started.session.state == S.EXECUTION_STATE_RUNNING
