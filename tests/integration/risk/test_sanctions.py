"""Risk refuses an action with a sanctioned counterparty before anything is sent: the running
service (with the sanctions list shipped for the devnet) rejects an opportunity whose pool is on
it with RISK_REASON_CODE_SANCTIONED_COUNTERPARTY naming the address, and records the breach."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from mevaas.events.v1 import events_pb2
from mevaas_core.bus import Bus
from mevaas_core.runtime import ServiceRuntime
from mevaas_sdk import MevaasClient
from tests.integration.risk.helpers import (
    Collector,
    RiskTenant,
    opportunity,
    publish_opportunity,
    risk_tenant,
)

pytestmark = pytest.mark.integration

# The devnet demo entry of libs/core/mevaas_core/sanctions/ofac_sdn_sample.csv.
SANCTIONED = "0x916522Fb97DE5b91448051D6BF35181C4E25829E"


@pytest.fixture
async def tenant(
    admin_client: MevaasClient, client_for: Callable[..., MevaasClient], risk_service: ServiceRuntime[Any]
) -> AsyncIterator[RiskTenant]:
    made = await risk_tenant(admin_client, client_for, risk_service)
    yield made
    await made.close()


async def test_a_sanctioned_counterparty_is_refused_with_the_reason(tenant: RiskTenant, bus: Bus) -> None:
    decisions = await Collector.start(
        bus, "RISK", f"risk.{tenant.tenant_id}.decision", events_pb2.RiskDecision
    )
    breaches = await Collector.start(bus, "RISK", f"risk.{tenant.tenant_id}.breach", events_pb2.RiskBreach)
    clean = opportunity(tenant.tenant_id)
    tainted = opportunity(tenant.tenant_id)
    tainted.swap_cycle.hops[1].pool = SANCTIONED
    await publish_opportunity(bus, clean)
    await publish_opportunity(bus, tainted)
    by_id = {d.opportunity_id: d for d in await decisions.wait(2)}
    assert by_id[clean.opportunity_id].outcome == events_pb2.RISK_DECISION_OUTCOME_APPROVED
    refused = by_id[tainted.opportunity_id]
    assert refused.outcome == events_pb2.RISK_DECISION_OUTCOME_REJECTED
    assert refused.reason_code == events_pb2.RISK_REASON_CODE_SANCTIONED_COUNTERPARTY
    assert SANCTIONED.lower() in refused.reason and "OFAC-SDN" in refused.reason
    (breach,) = await breaches.wait(1)
    assert breach.kind == events_pb2.BREACH_KIND_SANCTIONED_COUNTERPARTY
    assert breach.observed_value == SANCTIONED.lower()
