"""The live view observes real JetStream traffic through core NATS subscriptions, and counts a
republished event (same Nats-Msg-Id, dropped by the stream) once."""

from __future__ import annotations

import uuid

import nats
import pytest

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_core.bus import Bus
from mevaas_local.live_view import LiveView
from tests.fixtures.execution import wait_for
from tests.fixtures.servers import NatsAccess

pytestmark = pytest.mark.integration


async def test_live_view_follows_the_bus(nats_access: NatsAccess, bus: Bus) -> None:
    tenant = str(uuid.uuid4())
    view = LiveView()
    # As `mevaas up` runs it: the read-only console identity.
    nc = await nats.connect(nats_access.url_for("console"), inbox_prefix="_INBOX_console")
    try:
        await view.attach(nc)
        opportunity = events_pb2.Opportunity(tenant_id=tenant, opportunity_id="o1", chain_id=31337)
        for _ in range(2):
            await bus.publish(f"opp.{tenant}.s1", opportunity, msg_id="opp:o1", tenant_id=tenant)
        result = events_pb2.ExecutionResult(
            tenant_id=tenant,
            execution_id="e1",
            status=common_pb2.EXECUTION_RESULT_STATUS_INCLUDED,
            realized_profit="1234",
            profit_token=common_pb2.Token(chain_id=31337, address="0x" + "a1" * 20, symbol="WETH"),
        )
        await bus.publish(f"exec.{tenant}.result", result, msg_id="result:e1", tenant_id=tenant)

        async def booked() -> bool:
            return bool(view.tenants[tenant].booked)

        await wait_for(booked, timeout_s=10)
        assert view.tenants[tenant].opportunities == 1
        assert dict(view.tenants[tenant].pnl) == {"WETH@31337": 1234}
    finally:
        await nc.close()
