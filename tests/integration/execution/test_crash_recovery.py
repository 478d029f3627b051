"""Killing the execution service (SIGKILL, mid-stream) and starting it again on the same database:
every decision ends in exactly one final execution, and no transaction is sent twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
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
from tests.integration.execution.helpers import clients, start_running, tenant_with_wallet

pytestmark = pytest.mark.integration

DECISIONS = 8
FINAL = {
    common_pb2.EXECUTION_RESULT_STATUS_INCLUDED,
    common_pb2.EXECUTION_RESULT_STATUS_REVERTED,
    common_pb2.EXECUTION_RESULT_STATUS_DROPPED,
    common_pb2.EXECUTION_RESULT_STATUS_STALE,
    common_pb2.EXECUTION_RESULT_STATUS_FAILED,
}


def slices(opportunity: events_pb2.Opportunity, parts: int) -> list[events_pb2.Opportunity]:
    """The opportunity cut into ``parts`` smaller trades on the same gap (each still profitable
    when executed in turn), each its own opportunity."""
    result = []
    for _ in range(parts):
        piece = events_pb2.Opportunity()
        piece.CopyFrom(opportunity)
        piece.opportunity_id = str(uuid.uuid4())
        piece.swap_cycle.amount_in = str(int(opportunity.swap_cycle.amount_in) // parts)
        piece.expected_profit = str(int(opportunity.expected_profit) // parts)
        result.append(piece)
    return result


async def test_sigkill_mid_stream_loses_and_duplicates_nothing(
    execution_harness: ExecutionHarness,
    tenancy_service: Any,
    devnet: Devnet,
    bus: Bus,
    postgres_server: str,
    tmp_path: Path,
) -> None:
    ack_wait = {"decision_ack_wait_seconds": 2.0}
    setup = await execution_harness.start(**ack_wait)
    tenant = await tenant_with_wallet(clients(tenancy_service), setup, devnet.main)
    session = await start_running(tenant, devnet.chains)
    await tenant.client.close()
    await execution_harness.stop(setup)

    # Settings as files in its SECRETS_DIR, as the charts and `mevaas up` deliver them (a NATS URL
    # with the service's credentials is refused in the environment).
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    for name, value in (await execution_harness.settings(**ack_wait)).items():
        (secrets_dir / name).write_text(str(value))
    env = dict(os.environ) | {"SECRETS_DIR": str(secrets_dir)}
    log = (tmp_path / "execution.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "mevaas_execution"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    nonce_before = int(
        await devnet.main.client.request("eth_getTransactionCount", [tenant.wallet, "latest"]), 16
    )
    opportunity = await build_opportunity(
        devnet.main, tenant.tenant_id, session.strategy_id, deadline_blocks=30
    )
    limits = common_pb2.RiskLimits(max_slippage_bps=9999)
    pieces = slices(opportunity, DECISIONS)
    ids = [p.opportunity_id for p in pieces]
    for piece in pieces:
        await publish_decision(bus, approved(piece, limits))

    admin = await asyncpg.connect(postgres_server)
    try:

        async def some_recorded() -> bool:
            count = await admin.fetchval(
                "SELECT count(*) FROM execution.executions WHERE opportunity_id = ANY($1::text[])", ids
            )
            return bool(count and count >= 2)

        await wait_for(some_recorded, timeout_s=60, interval_s=0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        recorded_at_kill = await admin.fetchval(
            "SELECT count(*) FROM execution.executions WHERE opportunity_id = ANY($1::text[])", ids
        )
    finally:
        await admin.close()
        log.close()
    assert recorded_at_kill >= 2  # killed mid-stream, after some intents were written

    restarted = await execution_harness.start(**ack_wait)
    # Stopped however the test ends: a runtime left behind would trade on the shared devnet.
    try:
        async with clients(tenancy_service)(
            tenant.owner_key, execution=f"127.0.0.1:{restarted.grpc_port}"
        ) as client:
            stub = execution_stub(client)

            async def all_final() -> list[execution_pb2.Execution] | None:
                listed = await stub.ListExecutions(
                    execution_pb2.ListExecutionsRequest(
                        session_id=session.session_id, page=common_pb2.PageRequest(page_size=1000)
                    )
                )
                mine = [e for e in listed.executions if e.opportunity_id in ids]
                return mine if len(mine) == DECISIONS and all(e.status in FINAL for e in mine) else None

            async with block_production(devnet.main, block_time_s=0.3):
                executions = await wait_for(all_final, timeout_s=90)
        assert sorted(e.opportunity_id for e in executions) == sorted(ids)
        on_chain = [
            e
            for e in executions
            if e.status
            in (common_pb2.EXECUTION_RESULT_STATUS_INCLUDED, common_pb2.EXECUTION_RESULT_STATUS_REVERTED)
        ]
        # Every slice is profitable in turn, so each one lands exactly once.
        assert len(on_chain) == DECISIONS, [f"{e.status} {e.error}" for e in executions]
        hashes = [e.tx_hashes[0] for e in on_chain]
        assert len(set(hashes)) == len(hashes)
        nonce_after = int(
            await devnet.main.client.request("eth_getTransactionCount", [tenant.wallet, "latest"]), 16
        )
        assert nonce_after - nonce_before == len(on_chain)
    finally:
        await execution_harness.stop(restarted)
